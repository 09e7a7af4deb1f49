import ModelFolder
import ModelGraph
import OrderedJSON
import Tensors

/// The plan of a trim in numbers: what each step does, per-layer sizes, parameters, bytes
/// and KV-cache bytes before and after, and the config diff. Computed from shapes alone.
public struct TrimSummary: Sendable {
    public let trimmed: TrimmedModel
    /// Whether kept indices are final (explicit, or scored) or stand-ins for a dry run.
    public let indicesAreFinal: Bool

    public init(_ trimmed: TrimmedModel, indicesAreFinal: Bool) {
        self.trimmed = trimmed
        self.indicesAreFinal = indicesAreFinal
    }

    public var parametersBefore: UInt64 { trimmed.graph.model.parameterCount }
    public var bytesBefore: UInt64 { trimmed.graph.model.tensorBytes }
    public var parametersAfter: UInt64 { trimmed.items.reduce(0) { $0 + (Shape.elementCount($1.entry.shape) ?? 0) } }
    public var bytesAfter: UInt64 { trimmed.items.reduce(0) { $0 + UInt64($1.entry.byteCount) } }

    /// Bytes of K and V cached per token: 2 × layers × kv heads × head_dim × element size;
    /// `nil` for an encoder, which caches nothing.
    public func kvCacheBytesPerToken(_ sizes: [Axis: Int]) -> Int? {
        guard trimmed.graph.descriptor.causal else { return nil }
        guard let layers = sizes[.layers], let kv = sizes[.kvHeads] ?? sizes[.heads], let headDim = sizes[.headDim] else { return nil }
        let element = trimmed.graph.model.tensors.first.map { $0.info.dtype.bitWidth / 8 } ?? 2
        return 2 * layers * kv * headDim * element
    }

    /// Per layer: original index, new index (nil when dropped), and the kept counts.
    public var layers: [(original: Int, new: Int?, heads: Int?, kvHeads: Int?, ffn: Int?, experts: Int?)] {
        let binding = trimmed.graph.binding
        let plan = trimmed.plan
        var next = 0
        return (0..<binding.layerCount).map { layer in
            if plan.removedLayers.contains(layer) { return (layer, nil, nil, nil, nil, nil) }
            defer { next += 1 }
            let attention = plan.attention[layer]
            let heads = attention.map { $0.queryHeads.reduce(0) { $0 + $1.count } } ?? binding.size(.heads)
            let kv = attention?.kvHeads.count ?? binding.size(.kvHeads)
            let graph = trimmed.graph
            let ffn = plan.ffn[layer]?.count ?? plan.expertFFN[layer]?.values.first?.count
                ?? (graph.layer(layer, carries: .ffn) ? binding.size(.ffn) : binding.size(.expertFFN))
            let experts = graph.layer(layer, carries: .experts) ? (plan.experts[layer]?.count ?? binding.size(.experts)) : nil
            return (layer, next, heads, kv, ffn, experts)
        }
    }

    /// One line per operation, in the order they apply.
    public var steps: [String] {
        let plan = trimmed.plan
        let before = trimmed.graph.binding.sizes, after = trimmed.sizes
        var steps: [String] = []
        for merge in plan.merges {
            steps.append("merge layers \(merge.layers.first!)-\(merge.layers.last!) into \(merge.layers.first!) (LaCo, norms: \(merge.norms.rawValue))")
        }
        if !plan.dropLayers.isEmpty {
            steps.append("drop layers \(plan.dropLayers.map(String.init).joined(separator: ", "))")
        }
        let phrases: [(Axis, String)] = [
            (.kvHeads, "kv heads (whole GQA groups) per layer"), (.group, "query heads in every kv group"), (.ffn, "FFN channels"),
            (.expertFFN, "FFN channels in every expert"), (.sharedExpertFFN, "shared-expert FFN channels"),
            (.experts, "routed experts per MoE layer"), (.hidden, "hidden channels (embeddings, norms, every projection's hidden side)"),
        ]
        for (axis, what) in phrases {
            if let b = before[axis], let a = after[axis], a != b { steps.append("keep \(a) of \(b) \(what)") }
        }
        return steps
    }

    public var json: JSONValue {
        let before = trimmed.graph.binding.sizes, after = trimmed.sizes
        func optional(_ v: Int?) -> JSONValue { v.map { .integer($0) } ?? .null }
        return .object([
            ("family", .string(trimmed.graph.descriptor.family)),
            ("indices_final", .bool(indicesAreFinal)),
            ("steps", .array(steps.map { .string($0) })),
            ("parameters", .object([("before", .integer(parametersBefore)), ("after", .integer(parametersAfter))])),
            ("bytes", .object([("before", .integer(bytesBefore)), ("after", .integer(bytesAfter))])),
            ("kv_cache_bytes_per_token", .object([("before", optional(kvCacheBytesPerToken(before))), ("after", optional(kvCacheBytesPerToken(after)))])),
            ("axes", .object(before.keys.sorted().map { key in
                (key.rawValue, .object([("before", .integer(before[key]!)), ("after", optional(after[key]))]))
            })),
            ("layers", .array(layers.map { l in
                .object([("layer", .integer(l.original)), ("new", optional(l.new)), ("heads", optional(l.heads)),
                         ("kv_heads", optional(l.kvHeads)), ("ffn", optional(l.ffn)), ("experts", optional(l.experts))])
            })),
            ("config_changes", .array(trimmed.configChanges.map { change in
                .object([("key", .string(change.key)), ("before", change.before ?? .null), ("after", change.after)])
            })),
            ("plan", indicesAreFinal ? trimmed.plan.json : .null),
        ])
    }

    public var text: String {
        var lines: [String] = []
        let before = trimmed.graph.binding.sizes, after = trimmed.sizes
        lines.append("\(trimmed.graph.model.path) (\(trimmed.graph.descriptor.family))")
        for step in steps { lines.append("  - " + step) }
        for axis: Axis in [.layers, .hidden, .heads, .kvHeads, .headDim, .ffn, .expertFFN, .sharedExpertFFN, .experts] {
            guard let b = before[axis], let a = after[axis] else { continue }
            lines.append("  " + axis.rawValue.padded(to: 20) + (a == b ? "\(b)" : "\(b) → \(a)"))
        }
        lines.append("  " + "parameters".padded(to: 20) + "\(Count.short(parametersBefore)) → \(Count.short(parametersAfter)) (\(percent(parametersAfter, parametersBefore)))")
        lines.append("  " + "tensor bytes".padded(to: 20) + "\(ByteSize.describe(bytesBefore)) → \(ByteSize.describe(bytesAfter))")
        if let b = kvCacheBytesPerToken(before), let a = kvCacheBytesPerToken(after) {
            lines.append("  " + "KV cache per token".padded(to: 20) + "\(ByteSize.describe(b)) → \(ByteSize.describe(a))")
        }
        lines.append("")
        lines.append("  layer  new   heads  kv  ffn     experts")
        for l in layers {
            func f(_ v: Int?) -> String { v.map(String.init) ?? "—" }
            if l.new == nil {
                let into = trimmed.plan.merges.first { $0.layers.dropFirst().contains(l.original) }?.layers.first
                lines.append("  " + String(l.original).padded(to: 7) + (into.map { "merged into \($0)" } ?? "dropped"))
            } else {
                lines.append("  " + String(l.original).padded(to: 7) + f(l.new).padded(to: 6) + f(l.heads).padded(to: 7) + f(l.kvHeads).padded(to: 4) + f(l.ffn).padded(to: 8) + f(l.experts))
            }
        }
        if !trimmed.configChanges.isEmpty {
            lines.append("")
            lines.append("  config.json")
            for change in trimmed.configChanges {
                lines.append("    \(change.key): \(change.before?.serialized() ?? "(absent)") → \(change.after.serialized())")
            }
        }
        if !indicesAreFinal {
            lines.append("")
            lines.append("  (dry run: which heads/channels/experts are kept is chosen when the trim runs)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    private func percent(_ a: UInt64, _ b: UInt64) -> String {
        guard b > 0 else { return "—" }
        let p = (Double(a) / Double(b) * 1000).rounded() / 10
        return "\(p)%"
    }
}
