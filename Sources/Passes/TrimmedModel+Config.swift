import ModelFolder
import ModelGraph
import OrderedJSON

extension TrimmedModel {
    /// Rewrites config.json for the new sizes: every axis that changed is written to the key
    /// it was read from (or its first key), an axis that was left to its default is written
    /// explicitly when the default would now say something else (e.g. `head_dim` after head
    /// pruning), and per-layer config values follow the kept layers.
    static func rewrite(
        _ config: inout ModelConfig, graph: ModelGraph, sizes: [Axis: Int], surviving: [Int],
        changes: inout [(key: String, before: JSONValue?, after: JSONValue)]
    ) throws(TrimError) {
        let descriptor = graph.descriptor
        let binding = graph.binding
        let family = descriptor.family
        var json = config.json
        func set(_ key: String, _ value: JSONValue) {
            let before = json[key]
            guard before != value else { return }
            json.set(key, to: value, appendIfMissing: true)
            changes.append((key, before, value))
        }

        for (axis, spec) in descriptor.axes.sorted(by: { $0.key < $1.key }) {
            // Computed axes are consistent by now (TrimmedModel.solveSizes).
            guard let old = binding.sizes[axis], let new = sizes[axis], spec.value == nil else { continue }
            var needsWrite = new != old
            if binding.sources[axis] == nil, let fallback = spec.default {
                let value = (try? fallback.evaluate { sizes[$0] }) ?? -1
                if value != new { needsWrite = true }
            }
            guard needsWrite else { continue }
            guard let key = binding.sources[axis] ?? spec.keys.first else {
                throw .axisNotWritable(family: family, axis: axis.rawValue)
            }
            set(key, .integer(new))
        }

        let layers = binding.layerCount
        if surviving.count != layers {
            var newIndex: [Int: Int] = [:]
            for (i, layer) in surviving.enumerated() { newIndex[layer] = i }
            let layerConfig = descriptor.layerConfig
            for key in layerConfig.slice {
                guard let items = json[key]?.arrayValue else { continue }
                guard items.count == layers else { throw .layerListLength(key: key, count: items.count, layers: layers) }
                set(key, .array(surviving.map { items[$0] }))
            }
            for key in layerConfig.remap {
                guard let items = json[key]?.arrayValue else { continue }
                let remapped = items.compactMap { $0.intValue }.compactMap { newIndex[$0] }.sorted()
                set(key, .array(remapped.map { .integer($0) }))
            }
            for key in layerConfig.countBelow {
                // A count at or past the last layer covers every layer before and after.
                guard let value = json[key]?.intValue, value < layers else { continue }
                set(key, .integer(surviving.filter { $0 < value }.count))
            }
            // Layer kinds (e.g. Qwen2-MoE's sparse layers) must stay what they were.
            for (kind, spec) in descriptor.layerKinds.sorted(by: { $0.key < $1.key }) {
                let wanted = surviving.map { binding.layer($0, isOfKind: kind) }
                func isKind(_ i: Int) -> Bool {
                    if let list = spec.excludeList, json[list]?.arrayValue?.contains(where: { $0.intValue == i }) == true { return false }
                    if let step = spec.step, let n = json[step]?.intValue, n > 0, (i + 1) % n != 0 { return false }
                    if let axis = spec.requires, (sizes[axis] ?? 0) <= 0 { return false }
                    return true
                }
                if wanted.indices.allSatisfy({ isKind($0) == wanted[$0] }) { continue }
                guard let step = spec.step, let list = spec.excludeList else {
                    throw .layerPatternUnrepresentable(kind: kind)
                }
                // Every layer a candidate, and the others listed by index.
                set(step, .integer(1))
                set(list, .array(wanted.indices.filter { !wanted[$0] }.map { .integer($0) }))
                guard wanted.indices.allSatisfy({ isKind($0) == wanted[$0] }) else {
                    throw .layerPatternUnrepresentable(kind: kind)
                }
            }
        }
        config.edit { $0 = json }
    }
}
