import ModelFolder
import ModelGraph

/// Resolves a `TrimRequest` against a model into an explicit `TrimPlan`, choosing indices by
/// group magnitude, and refusing what the output could not represent.
///
/// Every axis goes through the same steps: the request gives a count (`TrimPlanner+Counts`),
/// the descriptor says which tensors carry the axis, and a structure's score adds up the
/// slices of all of them. Only what the axes mean differs, and that is data on `Axis`: its
/// scope (per layer, or `hidden` for the model), and the axis it is chosen inside (query
/// heads inside each kv group, channels inside each kept expert).
public struct TrimPlanner {
    public let graph: ModelGraph
    /// When false (a dry run), no weights are read and the first indices stand in for the
    /// ones scoring would choose; counts, shapes and sizes are the same.
    public let scores: Bool
    private var marginalCache: [String: [[Double]]] = [:]
    private var cachedLayer: Int?
    /// Merges already planned: scores of a merged layer are taken on its merged weights.
    var mergePlan: [TrimPlan.Merge] = []
    /// Scores from data (calibration statistics) for the axes they cover; magnitude for
    /// the rest. A merged layer is scored by its first layer's statistics.
    public let selectionScores: SelectionScores?

    public init(graph: ModelGraph, scores: Bool = true, selectionScores: SelectionScores? = nil) {
        self.graph = graph
        self.scores = scores
        self.selectionScores = selectionScores
    }

    var family: String { graph.descriptor.family }
    var binding: AxisBinding { graph.binding }

    /// The resolved plan. Reads the weights of the layers it scores (only when a width
    /// prune asks for magnitude selection).
    ///
    /// With `only`, indices are chosen for those layers alone (the rest of the plan is the
    /// same as for the whole model): a writer can score each layer just before writing it.
    public mutating func plan(_ request: TrimRequest, explicit: TrimPlan = TrimPlan(), only: Set<Int>? = nil) throws(TrimError) -> TrimPlan {
        // A checkpoint that disagrees with its config cannot be sliced by its config.
        if let problem = graph.problems.first(where: { !$0.isUnexpectedTensor }) {
            throw .graph(problem)
        }
        var plan = try planLayers(request, explicit: explicit)
        mergePlan = plan.merges
        let removed = plan.removedLayers
        let surviving = (0..<binding.layerCount).filter { !removed.contains($0) }
        let scored = only.map { wanted in surviving.filter(wanted.contains) } ?? surviving

        try checkExplicit(explicit, removed: removed)
        let counts = try self.counts(for: request, explicit: explicit, surviving: surviving)
        try checkRepresentable(counts, explicit: explicit)
        for axis in Axis.prunable where counts[axis] != nil || explicit.keep.keys.contains(where: { $0.axis == axis }) {
            switch axis.scope {
            case .model:
                // One selection for the whole model, scored on every surviving layer.
                try select(axis, layer: nil, count: counts[axis], explicit: explicit, surviving: surviving, into: &plan)
            case .layer:
                for layer in scored where graph.layer(layer, carries: axis) {
                    try select(axis, layer: layer, count: counts[axis], explicit: explicit, surviving: surviving, into: &plan)
                }
            }
        }
        return plan
    }

    // MARK: Layers

    /// Drops and merges, checked.
    private func planLayers(_ request: TrimRequest, explicit: TrimPlan) throws(TrimError) -> TrimPlan {
        var plan = TrimPlan()
        let layers = binding.layerCount
        for layer in request.dropLayers where layer < 0 || layer >= layers {
            throw .layerOutOfRange(layer: layer, layers: layers)
        }
        plan.dropLayers = Array(Set(request.dropLayers)).sorted()
        var merged = Set<Int>()
        for run in request.merges {
            guard run.count >= 2, zip(run, run.dropFirst()).allSatisfy({ $1 == $0 + 1 }) else {
                throw .badMerge(layers: run, reason: "a merge takes two or more consecutive layers, such as 20-23")
            }
            for layer in run where layer < 0 || layer >= layers { throw .layerOutOfRange(layer: layer, layers: layers) }
            guard merged.isDisjoint(with: run) else { throw .badMerge(layers: run, reason: "it overlaps another merge") }
            if let dropped = run.first(where: { plan.dropLayers.contains($0) }) {
                throw .badMerge(layers: run, reason: "layer \(dropped) is also dropped; a layer is either merged or dropped")
            }
            // The formula needs the same tensors in every layer of the run.
            func structure(_ layer: Int) -> Set<String> {
                Set((graph.nodesByLayer[layer] ?? []).map { "\($0.template)/\($0.expert ?? -1)/\($0.source.info.dtype.name)/\($0.source.info.shape)" })
            }
            let first = structure(run[0])
            if let odd = run.dropFirst().first(where: { structure($0) != first }) {
                throw .badMerge(layers: run, reason: "layer \(odd) does not have the same tensors as layer \(run[0]) (e.g. one is a dense layer and the other an MoE layer)")
            }
            if let fixed = (graph.nodesByLayer[run[0]] ?? []).first(where: {
                !$0.source.info.dtype.isCastable && graph.descriptor.tensors[$0.template].role != .buffer
            }) {
                throw .badMerge(layers: run, reason: "tensor '\(fixed.name)' is \(fixed.source.info.dtype.name); LaCo merges float weights only (dequantize first)")
            }
            merged.formUnion(run)
            let norms = explicit.merges.first { $0.layers == run }?.norms ?? request.mergeNorms
            plan.merges.append(.init(layers: run, norms: norms))
        }
        plan.merges.sort { $0.layers[0] < $1.layers[0] }
        guard plan.removedLayers.count < layers else { throw .allLayersDropped(layers: layers) }
        return plan
    }

    // MARK: Explicit keep lists

    /// Keep lists of a recipe must name surviving layers that carry their axis, and a
    /// list chosen inside another axis must come once for each index that axis keeps.
    private func checkExplicit(_ explicit: TrimPlan, removed: Set<Int>) throws(TrimError) {
        let layers = binding.layerCount
        let named = Set(explicit.keep.keys.compactMap(\.layer))
        if let layer = named.sorted().first(where: { $0 >= layers || removed.contains($0) }) {
            throw .badKeepList(what: "layer \(layer)", reason: layer >= layers ? "the model has \(layers) layers" : "that layer is dropped or merged away")
        }
        for axis in Axis.prunable {
            if let layer = explicit.layers(selecting: axis).sorted().first(where: { !graph.layer($0, carries: axis) }) {
                throw .badKeepList(what: "layer \(layer)", reason: "it has no \(axis) axis (e.g. a dense layer given an expert list, or an MoE layer given an FFN list)")
            }
            guard let outer = axis.within else { continue }
            for layer in explicit.layers(selecting: axis).sorted() {
                let kept = explicit.outerIndices(of: axis, layer: layer, binding: binding).compactMap { $0 }
                let listed = explicit.keep.keys.filter { $0.axis == axis && $0.layer == layer }.compactMap(\.within)
                guard Set(listed) == Set(kept), listed.count == kept.count else {
                    throw .badKeepList(what: "\(axis.noun) of layer \(layer)", reason: "there must be one list for each of the \(outer.noun) the layer keeps (\(kept.map(String.init).joined(separator: ", ")))")
                }
            }
        }
    }

    /// A keep list must be non-empty, strictly increasing and in range.
    func check(_ kept: [Int], below size: Int, _ what: String) throws(TrimError) {
        guard !kept.isEmpty else { throw .badKeepList(what: what, reason: "it keeps nothing") }
        guard zip(kept, kept.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw .badKeepList(what: what, reason: "indices must be strictly increasing (pare keeps the original order)")
        }
        guard let last = kept.last, let first = kept.first, first >= 0, last < size else {
            throw .badKeepList(what: what, reason: "indices must be in 0..<\(size)")
        }
    }

    // MARK: Selection

    /// Chooses the kept indices of `axis` in `layer` (nil: the whole model), inside each
    /// kept index of the axis it is chosen within: from the recipe's lists for the layer
    /// if it has any, else the `count` highest scores.
    private mutating func select(
        _ axis: Axis, layer: Int?, count: Int?, explicit: TrimPlan, surviving: [Int], into plan: inout TrimPlan
    ) throws(TrimError) {
        let size = binding.size(axis) ?? 0
        let outer = plan.outerIndices(of: axis, layer: layer, binding: binding)
        let given = explicit.keep.keys.contains { $0.axis == axis && $0.layer == layer }
        if given {
            var counts = Set<Int>()
            for w in outer {
                guard let kept = explicit.kept(axis, layer: layer, within: w) else { continue }
                try check(kept, below: size, what(axis, layer: layer, within: w))
                try checkCount(axis, kept.count)
                plan.keep[.init(axis, layer: layer, within: w)] = kept
                counts.insert(kept.count)
            }
            if axis == .group, counts.count > 1, let kv = plan.kept(.kvHeads, layer: layer) {
                let total = kv.reduce(0) { $0 + (plan.kept(.group, layer: layer, within: $1)?.count ?? 0) }
                throw .headsNotDivisible(heads: total, kvHeads: kv.count, group: size)
            }
            return
        }
        guard let count else { return }
        if count == size {
            for w in outer { plan.keep[.init(axis, layer: layer, within: w)] = Array(0..<size) }
            return
        }
        let nodes = layer.map { graph.nodesByLayer[$0] ?? [] } ?? graph.nodes.filter { $0.layer.map(surviving.contains) ?? true }
        for w in outer {
            var scores: [Double]
            if let served = try selectionScores?.scores(axis, layer: layer, within: w) {
                scores = served
            } else {
                scores = [Double](repeating: 0, count: size)
                try accumulate(axis, nodes: nodes, within: w.map { (axis.within!, $0) }, into: &scores)
            }
            plan.keep[.init(axis, layer: layer, within: w)] = GroupMagnitude.top(count, of: scores)
        }
    }

    /// How a keep list is named in messages: "FFN channels of expert 3 in layer 0".
    private func what(_ axis: Axis, layer: Int?, within: Int?) -> String {
        guard let layer else { return axis.noun }
        if axis == .expertFFN, let within { return "FFN channels of expert \(within) in layer \(layer)" }
        return "\(axis.noun) of layer \(layer)"
    }

    // MARK: Scores

    private mutating func marginals(_ node: ModelGraph.Node) throws(TrimError) -> [[Double]] {
        if !scores {
            // Equal scores everywhere: ties keep the lowest indices.
            return node.source.info.shape.map { [Double](repeating: 0, count: Int($0)) }
        }
        if let cached = marginalCache[node.name] { return cached }
        if let layer = node.layer, layer != cachedLayer {
            // Keep one layer's marginals: memory stays flat on models with many experts.
            marginalCache.removeAll(keepingCapacity: true)
            cachedLayer = layer
        }
        let sources = TrimmedModel.mergeSources(of: node, merges: mergePlan, graph: graph)
        let m = try GroupMagnitude.marginals(node, mergedWith: sources, in: graph.model)
        marginalCache[node.name] = m
        return m
    }

    /// Adds to `scores[i]` the sum of squares of every slice at index `i` of `axis`, in
    /// every tensor of `nodes` that carries the axis; with `within`, only the slices that
    /// belong to that index of the outer axis. A tensor of one `{expert}` instance belongs
    /// to that expert whole: for `experts` it counts in full, before any slice.
    private mutating func accumulate(
        _ axis: Axis, nodes: [ModelGraph.Node], within: (axis: Axis, index: Int)?, into scores: inout [Double]
    ) throws(TrimError) {
        if axis == .experts {
            for node in nodes {
                guard let expert = node.expert else { continue }
                scores[expert] += try marginals(node).first?.reduce(0, +) ?? 0
            }
        }
        for node in nodes {
            if let within, within.axis == .experts, node.expert != within.index { continue }
            let spec = graph.descriptor.tensors[node.template]
            for (d, dimension) in spec.shape.enumerated() {
                let segments = AxisSegment.segments(of: dimension, binding)
                guard segments.contains(where: { $0.axes?.contains(axis) == true }) else { continue }
                let m = try marginals(node)
                for segment in segments where segment.axes?.contains(axis) == true {
                    for p in 0..<segment.length {
                        let indices = segment.decompose(p)
                        if let within, let outer = indices[within.axis], outer != within.index { continue }
                        scores[indices[axis]!] += m[d][segment.offset + p]
                    }
                }
            }
        }
    }
}

extension ModelGraph {
    /// Whether any tensor of `layer` carries `axis` (e.g. whether a layer is an MoE layer).
    func layer(_ layer: Int, carries axis: Axis) -> Bool {
        (nodesByLayer[layer] ?? []).contains { node in
            descriptor.tensors[node.template].shape.contains { dimension in
                AxisSegment.segments(of: dimension, binding).contains { $0.axes?.contains(axis) == true }
            }
        }
    }
}
