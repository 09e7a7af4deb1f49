import Emit
import ModelFolder
import ModelGraph
import OrderedJSON
import SafeTensors
import Tensors

/// The output of a trim as a plan for the writer: every kept tensor with its new name and
/// the indices to keep per dimension, and the config rewritten to match.
///
/// Nothing is read here: selections are index lists that the writer evaluates tensor by
/// tensor, straight from the input mapping into the output file.
public struct TrimmedModel: Sendable {
    public let graph: ModelGraph
    public let plan: TrimPlan
    public let items: [OutputItem]
    /// The graph node each item comes from (`nil` for tensors kept as unknown).
    public let itemNodes: [ModelGraph.Node?]
    public let config: ModelConfig
    /// Axis sizes after the trim.
    public let sizes: [String: Int]
    /// Config entries that change: key, before, after.
    public let configChanges: [(key: String, before: JSONValue?, after: JSONValue)]
    /// Things that will load but may not run everywhere, each one sentence.
    public let warnings: [String]

    /// `keepUnknown` copies tensors no descriptor template describes through unchanged (the
    /// user vouches they are unaffected by the trim).
    public init(graph: ModelGraph, plan: TrimPlan, keepUnknown: Bool = false) throws(TrimError) {
        self.graph = graph
        self.plan = plan
        let binding = graph.binding
        let layers = binding.layerCount
        let surviving = (0..<layers).filter { !plan.removedLayers.contains($0) }
        var newIndex: [Int: Int] = [:]
        for (i, layer) in surviving.enumerated() { newIndex[layer] = i }

        // New axis sizes, checked uniform across layers.
        var sizes = binding.sizes
        sizes["layers"] = surviving.count
        // Every surviving layer that carries an axis counts, at its full size when the plan
        // leaves it alone: a keep list for some layers only must not shrink the config for all.
        func carriers(_ axis: String) -> [Int] { surviving.filter { binding.layer($0, hasAxis: axis, in: graph) } }
        func uniform(_ what: String, key: String, _ counts: [(layer: Int, count: Int)]) throws(TrimError) -> Int? {
            guard !counts.isEmpty else { return nil }
            guard Set(counts.map(\.count)).count <= 1 else { throw .unevenCounts(what: what, configKey: key, counts: counts) }
            return counts[0].count
        }
        func key(_ axis: String) -> String { binding.sources[axis] ?? graph.descriptor.axes[axis]?.keys?.first ?? axis }
        let attentionLayers = plan.attention.isEmpty ? [] : carriers("kv_heads")
        if let kv = try uniform("kv heads", key: key("kv_heads"), attentionLayers.map { ($0, plan.attention[$0]?.kvHeads.count ?? binding.size("kv_heads") ?? 0) }) {
            sizes["kv_heads"] = kv
        }
        if let perGroup = try uniform("query heads per kv group", key: key("heads"), attentionLayers.flatMap { layer in
            plan.attention[layer].map { $0.queryHeads.map { (layer, $0.count) } } ?? [(layer, binding.size("group") ?? 0)]
        }) {
            sizes["group"] = perGroup
            sizes["heads"] = (sizes["kv_heads"] ?? 0) * perGroup
        }
        if !plan.ffn.isEmpty, let ffn = try uniform("FFN channels", key: key("ffn"), carriers("ffn").map { ($0, plan.ffn[$0]?.count ?? binding.size("ffn") ?? 0) }) {
            sizes["ffn"] = ffn
        }
        if !plan.sharedExpertFFN.isEmpty, let ffn = try uniform("shared expert FFN channels", key: key("shared_expert_ffn"), carriers("shared_expert_ffn").map { ($0, plan.sharedExpertFFN[$0]?.count ?? binding.size("shared_expert_ffn") ?? 0) }) {
            sizes["shared_expert_ffn"] = ffn
        }
        if !plan.experts.isEmpty, let experts = try uniform("experts", key: key("experts"), carriers("experts").map { ($0, plan.experts[$0]?.count ?? binding.size("experts") ?? 0) }) {
            sizes["experts"] = experts
        }
        if !plan.expertFFN.isEmpty {
            var counts: [(layer: Int, count: Int)] = []
            for layer in carriers("experts") {
                let kept = plan.experts[layer] ?? Array(0..<(binding.size("experts") ?? 0))
                for expert in kept { counts.append((layer, plan.expertFFN[layer]?[expert]?.count ?? binding.size("expert_ffn") ?? 0)) }
            }
            if let ffn = try uniform("expert FFN channels", key: key("expert_ffn"), counts) { sizes["expert_ffn"] = ffn }
        }
        self.sizes = sizes

        // Output tensors, in input order.
        let templates = graph.descriptor.tensors.map { TensorTemplate($0.name) }
        var items: [OutputItem] = []
        var itemNodes: [ModelGraph.Node?] = []
        for node in graph.nodes {
            var layerOut: Int?
            var expertOut: Int?
            if let layer = node.layer {
                guard let index = newIndex[layer] else { continue }
                layerOut = index
                if let expert = node.expert {
                    if let kept = plan.experts[layer] {
                        guard let position = kept.firstIndex(of: expert) else { continue }
                        expertOut = position
                    } else {
                        expertOut = expert
                    }
                }
            }
            let spec = graph.descriptor.tensors[node.template]
            var selections: [[Int]?] = []
            for dimension in spec.shape {
                selections.append(try Self.keptIndices(dimension, node: node, plan: plan, binding: binding, family: graph.descriptor.family))
            }
            let shape = zip(node.source.info.shape, selections).map { size, kept in kept.map { UInt64($0.count) } ?? size }
            let name = templates[node.template].name(layer: layerOut, expert: expertOut)
            items.append(OutputItem(
                source: node.source,
                entry: .init(name: name, dtype: node.source.info.dtype, shape: shape),
                selections: selections.contains { $0 != nil } ? selections : nil,
                mergeSources: Self.mergeSources(of: node, merges: plan.merges, graph: graph)))
            itemNodes.append(node)
        }
        if keepUnknown {
            itemNodes += graph.unknownTensors.map { _ in nil }
            items += graph.unknownTensors.map { tensor in
                OutputItem(source: tensor, entry: .init(name: tensor.info.name, dtype: tensor.info.dtype, shape: tensor.info.shape))
            }
        }
        self.items = items
        self.itemNodes = itemNodes

        var config = graph.model.config!
        var changes: [(key: String, before: JSONValue?, after: JSONValue)] = []
        try Self.rewrite(&config, graph: graph, sizes: sizes, surviving: surviving, changes: &changes)
        self.config = config
        self.configChanges = changes

        // transformers runs MoE experts through grouped_mm on CPU by default, which needs
        // every expert row to be a multiple of 16 bytes.
        var warnings: [String] = []
        if let ffn = sizes["expert_ffn"], ffn != binding.size("expert_ffn"),
            let element = graph.nodes.first(where: { $0.expert != nil })?.source.info.dtype.bitWidth, (ffn * element / 8) % 16 != 0
        {
            let multiple = 16 / gcd(16, element / 8)
            warnings.append("experts keep \(ffn) FFN channels: transformers' default grouped_mm needs rows of a multiple of 16 bytes (a multiple of \(multiple) channels here), so load with experts_implementation=\"eager\" or choose a multiple of \(multiple)")
        }
        self.warnings = warnings
    }

    /// The kept flat indices of one dimension of `node`, or `nil` to keep it whole.
    static func keptIndices(
        _ dimension: ArchitectureDescriptor.Dimension, node: ModelGraph.Node, plan: TrimPlan,
        binding: AxisBinding, family: String
    ) throws(TrimError) -> [Int]? {
        guard let layer = node.layer else { return nil }
        let attention = plan.attention[layer]
        func kept(_ axis: String, outer: [String: Int]) -> [Int]? {
            switch axis {
            case "kv_heads": return attention?.kvHeads
            case "group":
                guard let attention, let k = outer["kv_heads"], let position = attention.kvHeads.firstIndex(of: k) else { return nil }
                return attention.queryHeads[position]
            case "ffn": return plan.ffn[layer]
            case "shared_expert_ffn": return plan.sharedExpertFFN[layer]
            case "experts": return plan.experts[layer]
            case "expert_ffn":
                guard let expert = node.expert ?? outer["experts"] else { return nil }
                return plan.expertFFN[layer]?[expert]
            default: return nil
            }
        }
        let segments = AxisSegment.segments(of: dimension, binding)
        // Most dimensions carry no axis this layer selects on: keep them whole without
        // enumerating their indices.
        var active: Set<String> = []
        if attention != nil { active.formUnion(["kv_heads", "group", "heads"]) }
        if plan.ffn[layer] != nil { active.insert("ffn") }
        if plan.sharedExpertFFN[layer] != nil { active.insert("shared_expert_ffn") }
        if plan.experts[layer] != nil { active.insert("experts") }
        if plan.expertFFN[layer] != nil { active.insert("expert_ffn") }
        if !segments.contains(where: { $0.names.contains(where: active.contains) }) { return nil }
        var result: [Int] = []
        var changed = false
        for segment in segments {
            guard let axes = segment.axes else {
                // An opaque expression (e.g. hidden / heads) may only stay whole.
                if segment.names.contains(where: active.contains) {
                    throw .notSupported(family: family, request: "this trim", reason: "dimension '\(segment.expression)' of \(node.name) cannot be sliced")
                }
                result += (segment.offset..<(segment.offset + segment.length))
                continue
            }
            var flat: [Int] = []
            func walk(_ level: Int, _ base: Int, _ outer: [String: Int]) {
                if level == axes.count {
                    flat.append(base)
                    return
                }
                let axis = axes[level]
                let size = segment.sizes[level]
                let indices = kept(axis, outer: outer)
                if indices != nil { changed = true }
                for i in indices ?? Array(0..<size) {
                    var next = outer
                    next[axis] = i
                    walk(level + 1, base * size + i, next)
                }
            }
            walk(0, 0, [:])
            result += flat.map { $0 + segment.offset }
        }
        return changed ? result : nil
    }

    /// The tensors merged into `node` by a LaCo merge: the same tensor (template and expert)
    /// of the later layers of the run that starts at node's layer. Norms join only with
    /// `norms: merge`; tensors that are not floats never merge.
    static func mergeSources(of node: ModelGraph.Node, merges: [TrimPlan.Merge], graph: ModelGraph) -> [ModelFolder.Tensor] {
        guard let layer = node.layer, let merge = merges.first(where: { $0.layers.first == layer }) else { return [] }
        let spec = graph.descriptor.tensors[node.template]
        if spec.role == "norm" && merge.norms == .first { return [] }
        guard node.source.info.dtype.isCastable else { return [] }
        return merge.layers.dropFirst().compactMap { other in
            graph.node(template: node.template, layer: other, expert: node.expert)?.source
        }
    }
}

private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
