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
    public internal(set) var items: [OutputItem]
    /// The graph node each item comes from (`nil` for tensors kept as unknown, and for
    /// biases a compensation creates).
    public internal(set) var itemNodes: [ModelGraph.Node?]
    public internal(set) var config: ModelConfig
    /// Axis sizes after the trim.
    public let sizes: [Axis: Int]
    /// Axes whose size the trim changes (what `keptIndices` must find selected).
    public let changedAxes: Set<Axis>
    /// Config entries that change: key, before, after.
    public internal(set) var configChanges: [(key: String, before: JSONValue?, after: JSONValue)]
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

        // New axis sizes, checked uniform across layers: every surviving layer that carries
        // an axis counts, at its full size where the plan leaves it alone, so a keep list
        // for some layers only cannot shrink the config for all.
        var sizes = binding.sizes
        sizes[.layers] = surviving.count
        let selected = Set(plan.keep.keys.map(\.axis))
        for axis in Axis.prunable where selected.contains(axis) {
            var counts: [(layer: Int, count: Int)] = []
            let scopes: [Int?] = axis.scope == .model ? [nil] : surviving.filter { graph.layer($0, carries: axis) }
            for layer in scopes {
                for w in plan.outerIndices(of: axis, layer: layer, binding: binding) { counts.append((layer ?? 0, plan.kept(axis, layer: layer, within: w)?.count ?? binding.size(axis) ?? 0)) }
            }
            guard let count = counts.first?.count else { continue }
            guard counts.allSatisfy({ $0.count == count }) else {
                let what = axis.within.map { "\(axis.noun) in each of the \($0.noun)" } ?? axis.noun
                throw .unevenCounts(what: what, configKey: Self.configKey(axis, graph: graph), counts: counts)
            }
            sizes[axis] = count
        }
        sizes = try Self.solveSizes(sizes, graph: graph, pruned: selected)
        self.sizes = sizes
        let changed = Set(sizes.keys.filter { sizes[$0] != binding.sizes[$0] })
        changedAxes = changed

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
                    if let kept = plan.kept(.experts, layer: layer) {
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
                selections.append(try Self.keptIndices(dimension, node: node, plan: plan, changed: changed, binding: binding, family: graph.descriptor.family))
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
        if let ffn = sizes[.expertFFN], ffn != binding.size(.expertFFN),
            let element = graph.nodes.first(where: { $0.expert != nil })?.source.info.dtype.bitWidth, (ffn * element / 8) % 16 != 0
        {
            let multiple = 16 / gcd(16, element / 8)
            warnings.append("experts keep \(ffn) FFN channels: transformers' default grouped_mm needs rows of a multiple of 16 bytes (a multiple of \(multiple) channels here), so load with experts_implementation=\"eager\" or choose a multiple of \(multiple)")
        }
        self.warnings = warnings
    }

    /// The kept flat indices of one dimension of `node`, or `nil` to keep it whole.
    ///
    /// Every axis goes the same way: walk the dimension's product of axes outermost first,
    /// keeping at each level the plan's list for that axis (chosen inside the outer index
    /// the walk is in, or the tensor's `{expert}`), or every index. `changed` holds the axes
    /// whose size the trim changes: a dimension that names one in an expression that is
    /// not a product (`4*hidden`) cannot be sliced, and is refused.
    static func keptIndices(
        _ dimension: ArchitectureDescriptor.Dimension, node: ModelGraph.Node, plan: TrimPlan, changed: Set<Axis>,
        binding: AxisBinding, family: String
    ) throws(TrimError) -> [Int]? {
        let active = plan.axes(in: node.layer).filter { $0.scope == .model || node.layer != nil }
        let affected = active.union(changed)
        let segments = AxisSegment.segments(of: dimension, binding)
        // Most dimensions carry no axis this trim selects on: keep them whole without
        // enumerating their indices.
        guard segments.contains(where: { $0.names.contains(where: affected.contains) }) else { return nil }
        func kept(_ axis: Axis, outer: [Axis: Int]) -> [Int]? {
            guard active.contains(axis) else { return nil }
            var within: Int?
            if let w = axis.within {
                guard let index = outer[w] ?? (w == .experts ? node.expert : nil) else { return nil }
                within = index
            }
            return plan.kept(axis, layer: axis.scope == .model ? nil : node.layer, within: within)
        }
        var result: [Int] = []
        var sliced = false
        var unsliced: Axis?
        for segment in segments {
            guard let axes = segment.axes else {
                // An opaque expression (e.g. hidden / heads) may only stay whole.
                if segment.names.contains(where: affected.contains) {
                    throw .notSupported(family: family, request: "this trim", reason: "dimension '\(segment.expression)' of \(node.name) cannot be sliced")
                }
                result += (segment.offset..<(segment.offset + segment.length))
                continue
            }
            var flat: [Int] = []
            func walk(_ level: Int, _ base: Int, _ outer: [Axis: Int]) {
                if level == axes.count {
                    flat.append(base)
                    return
                }
                let axis = axes[level]
                let size = segment.sizes[level]
                let indices = kept(axis, outer: outer)
                if indices != nil { sliced = true } else if changed.contains(axis) { unsliced = axis }
                for i in indices ?? Array(0..<size) {
                    var next = outer
                    next[axis] = i
                    walk(level + 1, base * size + i, next)
                }
            }
            walk(0, 0, [:])
            result += flat.map { $0 + segment.offset }
        }
        if let unsliced {
            throw .notSupported(family: family, request: "this trim",
                                reason: "dimension '\(segment(of: unsliced, in: segments))' of \(node.name) carries \(unsliced), whose size changes, but nothing selects its indices there")
        }
        return sliced ? result : nil
    }

    private static func segment(of axis: Axis, in segments: [AxisSegment]) -> String {
        segments.first { $0.names.contains(axis) }?.expression ?? axis.rawValue
    }

    /// Sizes of computed axes after a trim. A computed axis that a tensor carries keeps
    /// its size unless pruned, so its expression must still hold: where it does not, a
    /// config count no tensor carries is turned around to make it hold (`group = heads /
    /// kv_heads` gives `heads` after kv heads or query heads are pruned); where nothing
    /// can, the config cannot express the trim, and it is refused.
    static func solveSizes(_ sizes: [Axis: Int], graph: ModelGraph, pruned: Set<Axis>) throws(TrimError) -> [Axis: Int] {
        let descriptor = graph.descriptor
        var sizes = sizes
        let carried = Set(descriptor.tensors.flatMap { $0.shape.flatMap(\.axes) })
        let computed = descriptor.axes.compactMap { axis, spec in spec.value.map { (axis, $0) } }.sorted { $0.0 < $1.0 }
        for (axis, value) in computed where pruned.contains(axis) {
            guard let target = sizes[axis], (try? value.evaluate({ sizes[$0] })) != target else { continue }
            let free = value.axes.filter { !carried.contains($0) && !pruned.contains($0) && descriptor.axes[$0]?.value == nil }
            if let axisToSolve = free.first, let solved = value.solve(for: axisToSolve, toEqual: target, { sizes[$0] }) {
                sizes[axisToSolve] = solved
            }
        }
        for (axis, value) in computed {
            let now = (try? value.evaluate { sizes[$0] }) ?? -1
            guard let target = sizes[axis], now != target else { continue }
            throw .derivedAxisChanges(family: descriptor.family, axis: axis.rawValue, expression: value.text, from: graph.binding.size(axis) ?? target, to: now)
        }
        // Only quotients whose axes the trim changes: an input that already breaks one is
        // the input's matter, not the trim's.
        for quotient in descriptor.divisible where quotient.axes.contains(where: { sizes[$0] != graph.binding.size($0) }) {
            do { _ = try quotient.evaluate { sizes[$0] } } catch {
                guard case .inexactDivision(let dividend, let divisor) = error else { continue }
                throw .indivisible(family: descriptor.family, expression: quotient.text, dividend: dividend, divisor: divisor)
            }
        }
        return sizes
    }

    /// The config key that holds an axis's size (for a computed axis, the key of the axis
    /// its expression starts from: `num_attention_heads` for the query heads per group).
    static func configKey(_ axis: Axis, graph: ModelGraph) -> String {
        if let source = graph.binding.sources[axis] { return source }
        guard let spec = graph.descriptor.axes[axis] else { return axis.rawValue }
        if let key = spec.keys.first { return key }
        if let first = spec.value?.axes.first, first != axis { return configKey(first, graph: graph) }
        return axis.rawValue
    }

    /// The tensors merged into `node` by a LaCo merge: the same tensor (template and expert)
    /// of the later layers of the run that starts at node's layer. Norms join only with
    /// `norms: merge`; tensors that are not floats never merge.
    static func mergeSources(of node: ModelGraph.Node, merges: [TrimPlan.Merge], graph: ModelGraph) -> [ModelFolder.Tensor] {
        guard let layer = node.layer, let merge = merges.first(where: { $0.layers.first == layer }) else { return [] }
        let spec = graph.descriptor.tensors[node.template]
        if spec.role == .norm && merge.norms == .first { return [] }
        guard node.source.info.dtype.isCastable else { return [] }
        return merge.layers.dropFirst().compactMap { other in
            graph.node(template: node.template, layer: other, expert: node.expert)?.source
        }
    }
}

private func gcd(_ a: Int, _ b: Int) -> Int { b == 0 ? a : gcd(b, a % b) }
