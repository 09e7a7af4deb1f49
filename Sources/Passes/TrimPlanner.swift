import ModelFolder
import ModelGraph

/// Resolves a `TrimRequest` against a model into an explicit `TrimPlan`, choosing indices by
/// group magnitude, and refusing what the output could not represent.
public struct TrimPlanner {
    public let graph: ModelGraph
    /// When false (a dry run), no weights are read and the first indices stand in for the
    /// ones scoring would choose; counts, shapes and sizes are the same.
    public let scores: Bool
    private var marginalCache: [String: [[Double]]] = [:]
    private var cachedLayer: Int?
    /// Merges already planned: scores of a merged layer are taken on its merged weights.
    private var mergePlan: [TrimPlan.Merge] = []
    /// Keep lists given in a recipe; they win over scoring for the layers they name.
    private var explicit = TrimPlan()

    public init(graph: ModelGraph, scores: Bool = true) {
        self.graph = graph
        self.scores = scores
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
        if let problem = graph.problems.first(where: { $0.rule != "unexpected-tensor" }) { throw .graph(problem) }
        self.explicit = explicit
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
                !$0.source.info.dtype.isCastable && graph.descriptor.tensors[$0.template].role != "buffer"
            }) {
                throw .badMerge(layers: run, reason: "tensor '\(fixed.name)' is \(fixed.source.info.dtype.name); LaCo merges float weights only (dequantize first)")
            }
            merged.formUnion(run)
            let norms = explicit.merges.first { $0.layers == run }?.norms ?? request.mergeNorms
            plan.merges.append(.init(layers: run, norms: norms))
        }
        plan.merges.sort { $0.layers[0] < $1.layers[0] }
        mergePlan = plan.merges
        guard plan.removedLayers.count < layers else { throw .allLayersDropped(layers: layers) }
        let surviving = (0..<layers).filter { !plan.removedLayers.contains($0) }
        let scored = only.map { wanted in surviving.filter(wanted.contains) } ?? surviving

        let removed = plan.removedLayers
        let named = Set(explicit.attention.keys).union(explicit.ffn.keys).union(explicit.expertFFN.keys)
            .union(explicit.sharedExpertFFN.keys).union(explicit.experts.keys)
        if let layer = named.sorted().first(where: { $0 >= layers || removed.contains($0) }) {
            throw .badKeepList(what: "layer \(layer)", reason: layer >= layers ? "the model has \(layers) layers" : "that layer is dropped or merged away")
        }
        let listed: [(String, [Int])] = [
            ("ffn", Array(explicit.ffn.keys)), ("shared_expert_ffn", Array(explicit.sharedExpertFFN.keys)),
            ("experts", Array(explicit.experts.keys)), ("experts", Array(explicit.expertFFN.keys)), ("kv_heads", Array(explicit.attention.keys)),
        ]
        for (axis, layers) in listed {
            if let layer = layers.sorted().first(where: { !binding.layer($0, hasAxis: axis, in: graph) }) {
                throw .badKeepList(what: "layer \(layer)", reason: "it has no \(axis) axis (e.g. a dense layer given an expert list, or an MoE layer given an FFN list)")
            }
        }
        for (layer, byExpert) in explicit.expertFFN {
            let kept = Set(explicit.experts[layer] ?? Array(0..<(binding.size("experts") ?? 0)))
            guard Set(byExpert.keys) == kept else {
                throw .badKeepList(what: "expert FFN of layer \(layer)", reason: "it must list exactly the experts the layer keeps (\(kept.sorted().map(String.init).joined(separator: ", ")))")
            }
        }
        if request.kvHeads != nil || request.heads != nil || !explicit.attention.isEmpty {
            if graph.descriptor.tensors.contains(where: { $0.shape.contains { d in AxisSegment.segments(of: d, binding).contains { $0.axes?.contains("heads") == true } } }) {
                throw .notSupported(family: family, request: "head pruning", reason: "its descriptor writes attention dimensions with the 'heads' axis; describe them as kv_heads*group*head_dim so heads can be selected per kv group")
            }
            try planAttention(request, scored, &plan)
        }
        if request.expertFFN != nil || !explicit.expertFFN.isEmpty || (isRatio(request.ffn) && binding.size("expert_ffn") != nil) {
            // One keep list per expert cannot slice a tensor that stacks all experts.
            if let stacked = graph.descriptor.tensors.first(where: { $0.shape.contains { d in AxisSegment.segments(of: d, binding).contains { $0.axes?.contains("experts") == true } } && $0.shape.contains { d in AxisSegment.segments(of: d, binding).contains { $0.axes?.contains("expert_ffn") == true } } }) {
                throw .notSupported(family: family, request: "pruning each expert's FFN", reason: "'\(stacked.name)' stacks all experts in one tensor, and each expert would keep different channels")
            }
        }
        if request.experts != nil || !explicit.experts.isEmpty {
            try planExperts(request.experts, scored, &plan)
        }
        for (layer, kept) in explicit.ffn where surviving.contains(layer) {
            try check(kept, below: binding.size("ffn") ?? 0, "FFN channels of layer \(layer)")
            plan.ffn[layer] = kept
        }
        for (layer, kept) in explicit.sharedExpertFFN where surviving.contains(layer) {
            try check(kept, below: binding.size("shared_expert_ffn") ?? 0, "shared expert FFN channels of layer \(layer)")
            plan.sharedExpertFFN[layer] = kept
        }
        for (layer, byExpert) in explicit.expertFFN where surviving.contains(layer) {
            for (expert, kept) in byExpert {
                try check(kept, below: binding.size("expert_ffn") ?? 0, "FFN channels of expert \(expert) in layer \(layer)")
            }
            plan.expertFFN[layer] = byExpert
        }
        // FFN sizes: a ratio on --ffn applies to every FFN axis the model has.
        // (axis, size, asked for by name): a ratio on --ffn also applies to every other FFN
        // axis the model has; a count on --ffn applies to the experts' FFN of a model with
        // no dense one (Mixtral).
        let ffnAxes: [(axis: String, size: TrimRequest.Size?, explicit: Bool)] = [
            ("ffn", request.ffn, !isRatio(request.ffn) || binding.size("expert_ffn") == nil),
            ("expert_ffn", request.expertFFN ?? (isRatio(request.ffn) || binding.size("ffn") == nil ? request.ffn : nil), request.expertFFN != nil),
            ("shared_expert_ffn", request.sharedExpertFFN ?? (isRatio(request.ffn) ? request.ffn : nil), request.sharedExpertFFN != nil),
        ]
        for (axis, size, explicit) in ffnAxes {
            guard let size else { continue }
            if explicit, binding.size(axis) != nil, !surviving.contains(where: { binding.layer($0, hasAxis: axis, in: graph) }) {
                throw .notSupported(family: family, request: "--\(axis.replacingUnderscores())", reason: "no surviving layer has a \(axis) FFN (every one is an MoE layer); use --expert-ffn or --shared-expert-ffn")
            }
            guard let current = binding.size(axis) else {
                // Mixtral: --ffn counts go to the experts' FFN, handled as expert_ffn.
                if !explicit || (axis == "ffn" && binding.size("expert_ffn") != nil) { continue }
                throw .notSupported(family: family, request: "--\(axis.replacingUnderscores())", reason: "the model has no \(axis) axis")
            }
            try planFFN(axis: axis, keep: size.resolve(from: current), current: current, scored, &plan)
        }
        return plan
    }

    private func isRatio(_ size: TrimRequest.Size?) -> Bool {
        if case .ratio = size { return true }
        return false
    }

    // MARK: Attention

    private mutating func planAttention(_ request: TrimRequest, _ surviving: [Int], _ plan: inout TrimPlan) throws(TrimError) {
        if let derived = graph.descriptor.axes["head_dim"]?.value {
            throw .notSupported(family: family, request: "head pruning",
                                reason: "its config has no head_dim key (the model derives head_dim = \(derived)), so fewer heads would change the head size")
        }
        guard let heads = binding.size("heads"), let kv = binding.size("kv_heads"), let group = binding.size("group") else {
            throw .notSupported(family: family, request: "head pruning", reason: "its descriptor has no kv_heads/group axes (its attention is not described per kv group)")
        }
        var keepKV = request.kvHeads ?? kv
        var perGroup = group
        guard keepKV >= 1, keepKV <= kv else { throw .countOutOfRange(what: "kv heads", requested: keepKV, available: kv) }
        if let wanted = request.heads, wanted < 1 || wanted > heads {
            throw .countOutOfRange(what: "query heads", requested: wanted, available: heads)
        }
        if let wanted = request.heads {
            if group == 1 && request.kvHeads == nil {
                keepKV = wanted  // no GQA: every head is its own group
            } else {
                guard wanted % keepKV == 0, wanted / keepKV <= group, wanted >= keepKV else {
                    throw .headsNotDivisible(heads: wanted, kvHeads: keepKV, group: group)
                }
                perGroup = wanted / keepKV
            }
        }
        guard keepKV >= 1, keepKV <= kv else { throw .countOutOfRange(what: "kv heads", requested: keepKV, available: kv) }
        guard keepKV * perGroup <= heads else { throw .countOutOfRange(what: "query heads", requested: keepKV * perGroup, available: heads) }
        let asked = request.kvHeads != nil || request.heads != nil
        for layer in surviving {
            if let given = explicit.attention[layer] {
                try check(given.kvHeads, below: kv, "kv heads of layer \(layer)")
                guard given.queryHeads.count == given.kvHeads.count else {
                    throw .badKeepList(what: "query heads of layer \(layer)", reason: "there must be one list per kept kv head (\(given.kvHeads.count))")
                }
                for group in given.queryHeads { try check(group, below: binding.size("group") ?? 0, "query heads of layer \(layer)") }
                guard Set(given.queryHeads.map(\.count)).count == 1 else {
                    throw .headsNotDivisible(heads: given.queryHeads.reduce(0) { $0 + $1.count }, kvHeads: given.kvHeads.count, group: group)
                }
                plan.attention[layer] = given
                continue
            }
            guard asked else { continue }
            var kvScores = [Double](repeating: 0, count: kv)
            try accumulate(axis: "kv_heads", layer: layer, into: &kvScores) { $0["kv_heads"] }
            let keptKV = keepKV == kv ? Array(0..<kv) : GroupMagnitude.top(keepKV, of: kvScores)
            var query: [[Int]] = []
            if perGroup == group {
                query = keptKV.map { _ in Array(0..<group) }
            } else {
                var headScores = [Double](repeating: 0, count: kv * group)
                try accumulate(axis: "group", layer: layer, into: &headScores) { indices in
                    guard let k = indices["kv_heads"], let g = indices["group"] else { return nil }
                    return k * group + g
                }
                query = keptKV.map { k in GroupMagnitude.top(perGroup, of: Array(headScores[(k * group)..<((k + 1) * group)])) }
            }
            plan.attention[layer] = .init(kvHeads: keptKV, queryHeads: query)
        }
    }

    // MARK: FFN

    private mutating func planFFN(axis: String, keep: Int, current: Int, _ surviving: [Int], _ plan: inout TrimPlan) throws(TrimError) {
        guard keep >= 1, keep <= current else {
            throw .countOutOfRange(what: "\(axis.replacingUnderscores()) channels", requested: keep, available: current)
        }
        for layer in surviving {
            let perExpert = axis == "expert_ffn"
            if (axis == "ffn" && explicit.ffn[layer] != nil) || (axis == "shared_expert_ffn" && explicit.sharedExpertFFN[layer] != nil)
                || (perExpert && explicit.expertFFN[layer] != nil)
            {
                continue
            }
            if perExpert {
                guard binding.layer(layer, hasAxis: "experts", in: graph) else { continue }
                let experts = plan.experts[layer] ?? Array(0..<(binding.size("experts") ?? 0))
                var byExpert: [Int: [Int]] = [:]
                for expert in experts {
                    var scores = [Double](repeating: 0, count: current)
                    try accumulate(axis: axis, layer: layer, expert: expert, into: &scores) { $0[axis] }
                    byExpert[expert] = keep == current ? Array(0..<current) : GroupMagnitude.top(keep, of: scores)
                }
                plan.expertFFN[layer] = byExpert
            } else {
                guard binding.layer(layer, hasAxis: axis, in: graph) else { continue }
                var scores = [Double](repeating: 0, count: current)
                try accumulate(axis: axis, layer: layer, into: &scores) { $0[axis] }
                let kept = keep == current ? Array(0..<current) : GroupMagnitude.top(keep, of: scores)
                if axis == "ffn" { plan.ffn[layer] = kept } else { plan.sharedExpertFFN[layer] = kept }
            }
        }
    }

    // MARK: Experts

    private mutating func planExperts(_ wanted: Int?, _ surviving: [Int], _ plan: inout TrimPlan) throws(TrimError) {
        guard let experts = binding.size("experts") else {
            throw .notSupported(family: family, request: "--experts", reason: "it has no routed experts")
        }
        let topK = binding.size("experts_per_token") ?? 1
        for (layer, kept) in explicit.experts where surviving.contains(layer) {
            try check(kept, below: experts, "experts of layer \(layer)")
            guard kept.count >= topK else { throw .topKExceedsExperts(topK: topK, experts: kept.count) }
            plan.experts[layer] = kept
        }
        guard let keep = wanted else { return }
        guard keep >= 1, keep <= experts else { throw .countOutOfRange(what: "experts", requested: keep, available: experts) }
        if topK > keep {
            throw .topKExceedsExperts(topK: topK, experts: keep)
        }
        for layer in surviving where binding.layer(layer, hasAxis: "experts", in: graph) && explicit.experts[layer] == nil {
            var scores = [Double](repeating: 0, count: experts)
            // Every tensor of an expert goes with it, plus its router row.
            for node in graph.nodesByLayer[layer] ?? [] {
                guard let expert = node.expert else { continue }
                let m = try marginals(node)
                scores[expert] += m.first?.reduce(0, +) ?? 0
            }
            try accumulate(axis: "experts", layer: layer, into: &scores) { $0["experts"] }
            plan.experts[layer] = keep == experts ? Array(0..<experts) : GroupMagnitude.top(keep, of: scores)
        }
    }

    /// A keep list must be non-empty, strictly increasing and in range.
    private func check(_ kept: [Int], below size: Int, _ what: String) throws(TrimError) {
        guard !kept.isEmpty else { throw .badKeepList(what: what, reason: "it keeps nothing") }
        guard zip(kept, kept.dropFirst()).allSatisfy({ $0 < $1 }) else {
            throw .badKeepList(what: what, reason: "indices must be strictly increasing (pare keeps the original order)")
        }
        guard let last = kept.last, let first = kept.first, first >= 0, last < size else {
            throw .badKeepList(what: what, reason: "indices must be in 0..<\(size)")
        }
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

    /// Adds, for every tensor of `layer` (and `expert`, if given) with `axis` in a dimension,
    /// the sum of squares of each slice to the score of the structure `key` maps it to.
    private mutating func accumulate(
        axis: String, layer: Int, expert: Int? = nil, into scores: inout [Double], key: ([String: Int]) -> Int?
    ) throws(TrimError) {
        for node in graph.nodesByLayer[layer] ?? [] where expert == nil || node.expert == expert {
            let spec = graph.descriptor.tensors[node.template]
            for (d, dimension) in spec.shape.enumerated() {
                let segments = AxisSegment.segments(of: dimension, binding)
                guard segments.contains(where: { $0.axes?.contains(axis) == true }) else { continue }
                let m = try marginals(node)
                for segment in segments where segment.axes?.contains(axis) == true {
                    for p in 0..<segment.length {
                        if let id = key(segment.decompose(p)) { scores[id] += m[d][segment.offset + p] }
                    }
                }
            }
        }
    }
}

extension AxisBinding {
    /// Whether any tensor of `layer` carries `axis` (e.g. whether a layer is an MoE layer).
    func layer(_ layer: Int, hasAxis axis: String, in graph: ModelGraph) -> Bool {
        (graph.nodesByLayer[layer] ?? []).contains { node in
            graph.descriptor.tensors[node.template].shape.contains { dimension in
                AxisSegment.segments(of: dimension, self).contains { $0.axes?.contains(axis) == true }
            }
        }
    }
}

extension String {
    func replacingUnderscores() -> String { String(map { $0 == "_" ? "-" : $0 }) }
}
