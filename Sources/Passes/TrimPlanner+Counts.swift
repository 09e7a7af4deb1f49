import ModelGraph

/// What differs between axes is how a request turns into counts, and what the output
/// cannot represent. Everything else (scoring, slicing, config) is the same for all.
extension TrimPlanner {
    /// The count each pruned axis keeps, resolved from the request: GQA's rule for heads,
    /// an FFN fraction spread over every FFN of the model, the router's top-k for experts.
    func counts(for request: TrimRequest, explicit: TrimPlan, surviving: [Int]) throws(TrimError) -> [Axis: Int] {
        var counts: [Axis: Int] = [:]
        let attentionLists = explicit.keep.keys.contains { $0.axis == .kvHeads || $0.axis == .group }
        if request.count(.kvHeads) != nil || request.count(.heads) != nil || attentionLists {
            try checkHeadPruning()
        }
        if request.count(.kvHeads) != nil || request.count(.heads) != nil {
            let (kv, perGroup) = try attentionCounts(request)
            counts[.kvHeads] = kv
            counts[.group] = perGroup
        }
        if request.count(.experts) != nil || !explicit.layers(selecting: .experts).isEmpty {
            guard let experts = binding.size(.experts) else {
                throw .notSupported(family: family, request: "--experts", reason: "it has no routed experts")
            }
            if let keep = request.count(.experts) {
                guard keep >= 1, keep <= experts else { throw .countOutOfRange(what: "experts", requested: keep, available: experts) }
                try checkCount(.experts, keep)
                counts[.experts] = keep
            }
        }
        for (axis, size) in try ffnSizes(request, surviving: surviving) {
            guard let current = binding.size(axis) else { continue }
            let keep = size.resolve(from: current)
            guard keep >= 1, keep <= current else {
                throw .countOutOfRange(what: "\(axis.rawValue.replacing("_", with: "-")) channels", requested: keep, available: current)
            }
            counts[axis] = keep
        }
        if let size = request.sizes[.hidden] {
            guard let current = binding.size(.hidden) else {
                throw .notSupported(family: family, request: "--hidden", reason: "its descriptor has no hidden axis")
            }
            let keep = size.resolve(from: current)
            guard keep >= 1, keep <= current else { throw .countOutOfRange(what: "hidden channels", requested: keep, available: current) }
            counts[.hidden] = keep
        }
        return counts
    }

    /// A count an axis may not go below: the router picks `experts_per_token` experts.
    func checkCount(_ axis: Axis, _ count: Int) throws(TrimError) {
        let topK = binding.size(.expertsPerToken) ?? 1
        if axis == .experts, count < topK {
            throw .topKExceedsExperts(topK: topK, experts: count)
        }
    }

    /// Refuses what no output could hold, before any weight is read: a statistic (a norm
    /// over the full width) across a pruned axis, different selections inside each index
    /// of an axis that another dimension stacks, and sizes the config cannot express.
    func checkRepresentable(_ counts: [Axis: Int], explicit: TrimPlan) throws(TrimError) {
        let pruned = Axis.prunable.filter { axis in
            (counts[axis].map { $0 < binding.size(axis) ?? 0 } ?? false) || explicit.keep.keys.contains { $0.axis == axis }
        }
        for axis in pruned {
            let request = axis == .kvHeads || axis == .group ? "head pruning" : axis.option
            if let node = graph.nodes.first(where: { graph.descriptor.tensors[$0.template].statisticOver.contains(axis) }) {
                let over = graph.descriptor.tensors[node.template].statisticOver.map(\.rawValue).joined(separator: ", ")
                throw .notSupported(family: family, request: request,
                                    reason: "'\(node.name)' computes one statistic across \(over) together (a norm over its full width), so removing \(axis.noun) would change what it computes")
            }
            if let outer = axis.within, let stacked = graph.descriptor.tensors.first(where: { spec in
                let dims = spec.shape.map(\.axes)
                return dims.indices.contains { i in dims[i].contains(outer) && dims.indices.contains { j in j != i && dims[j].contains(axis) } }
            }) {
                throw .notSupported(family: family, request: request,
                                    reason: "'\(stacked.name)' stacks all \(outer.noun) in one tensor, and each would keep different \(axis.noun)")
            }
        }
        var changed = binding.sizes
        for (axis, count) in counts { changed[axis] = count }
        _ = try TrimmedModel.solveSizes(changed, graph: graph, pruned: Set(counts.keys))
    }

    /// Head pruning needs the attention written per kv group, and a head size the config
    /// states rather than derives.
    private func checkHeadPruning() throws(TrimError) {
        let descriptor = graph.descriptor
        if let derived = descriptor.axes[.headDim]?.value, derived.axes.contains(.heads) {
            throw .notSupported(family: family, request: "head pruning",
                                reason: "its class derives head_dim = \(derived) and reads no head_dim from config.json, so fewer heads would change the size of every head, which the config cannot express")
        }
        if descriptor.tensors.contains(where: { $0.shape.contains { d in AxisSegment.segments(of: d, binding).contains { $0.axes?.contains(.heads) == true } } }) {
            throw .notSupported(family: family, request: "head pruning", reason: "its descriptor writes attention dimensions with the 'heads' axis; describe them as kv_heads*group*head_dim so heads can be selected per kv group")
        }
        guard binding.size(.heads) != nil, binding.size(.kvHeads) != nil, binding.size(.group) != nil else {
            throw .notSupported(family: family, request: "head pruning", reason: "its descriptor has no kv_heads/group axes (its attention is not described per kv group)")
        }
    }

    /// GQA's rule: query head h belongs to kv head h / group, and every group keeps the
    /// same number of query heads (the config holds one num_key_value_heads).
    private func attentionCounts(_ request: TrimRequest) throws(TrimError) -> (kvHeads: Int, perGroup: Int) {
        let heads = binding.size(.heads) ?? 0, kv = binding.size(.kvHeads) ?? 0, group = binding.size(.group) ?? 0
        var keepKV = request.count(.kvHeads) ?? kv
        var perGroup = group
        guard keepKV >= 1, keepKV <= kv else { throw .countOutOfRange(what: "kv heads", requested: keepKV, available: kv) }
        if let wanted = request.count(.heads) {
            guard wanted >= 1, wanted <= heads else { throw .countOutOfRange(what: "query heads", requested: wanted, available: heads) }
            if group == 1 && request.count(.kvHeads) == nil {
                keepKV = wanted  // no GQA: every head is its own group
            } else {
                guard wanted % keepKV == 0, wanted / keepKV <= group, wanted >= keepKV else {
                    throw .headsNotDivisible(heads: wanted, kvHeads: keepKV, group: group)
                }
                perGroup = wanted / keepKV
            }
        }
        guard keepKV * perGroup <= heads else { throw .countOutOfRange(what: "query heads", requested: keepKV * perGroup, available: heads) }
        return (keepKV, perGroup)
    }

    /// The FFN sizes a request sets: a fraction on `--ffn` applies to every FFN axis the
    /// model has, and a count on `--ffn` to the experts' FFN of a model with no dense one
    /// (Mixtral, whose intermediate_size is the experts').
    private func ffnSizes(_ request: TrimRequest, surviving: [Int]) throws(TrimError) -> [(Axis, TrimRequest.Size)] {
        let ratio = request.sizes[.ffn]?.isRatio ?? false
        let entries: [(axis: Axis, size: TrimRequest.Size?, named: Bool)] = [
            (.ffn, request.sizes[.ffn], !ratio || binding.size(.expertFFN) == nil),
            (.expertFFN, request.sizes[.expertFFN] ?? (ratio || binding.size(.ffn) == nil ? request.sizes[.ffn] : nil), request.sizes[.expertFFN] != nil),
            (.sharedExpertFFN, request.sizes[.sharedExpertFFN] ?? (ratio ? request.sizes[.ffn] : nil), request.sizes[.sharedExpertFFN] != nil),
        ]
        var result: [(Axis, TrimRequest.Size)] = []
        for (axis, size, named) in entries {
            guard let size else { continue }
            if named, binding.size(axis) != nil, !surviving.contains(where: { graph.layer($0, carries: axis) }) {
                throw .notSupported(family: family, request: axis.option, reason: "no surviving layer has a \(axis) FFN (every one is an MoE layer); use --expert-ffn or --shared-expert-ffn")
            }
            guard binding.size(axis) != nil else {
                // Mixtral: --ffn counts go to the experts' FFN, handled as expert_ffn.
                if !named || (axis == .ffn && binding.size(.expertFFN) != nil) { continue }
                throw .notSupported(family: family, request: axis.option, reason: "the model has no \(axis) axis")
            }
            result.append((axis, size))
        }
        return result
    }
}
