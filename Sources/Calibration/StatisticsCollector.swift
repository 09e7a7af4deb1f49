import ModelGraph
import Runtime

/// Accumulates calibration statistics while the executor runs, from its observation points.
///
/// Names follow the statistics file's contract (issue 11, `formats/stats.md` to come):
/// `<W>.input_norm` per linear weight (Wanda), Minitron activation importance for heads,
/// FFN channels (dense, per expert, shared expert) and hidden channels, ShortGPT's block
/// influence per layer, and per MoE layer the routing counts, summed weights, NAEE's β and
/// each expert's output norm. "Minitron aggregation" of an activation X[b, t, c] is
/// imp[c] = sqrt(Σ_b (mean_t |X[b, t, c]|)²); sums are kept in f64.
public final class StatisticsCollector: ExecutionObserver {
    public let plan: ForwardPlan
    public let batch: TokenBatch
    public var points: ObservationPoints { [.layerInput, .layerOutput, .linearInputs, .ffnActivations, .router, .expertOutputs] }

    /// Σ x² per input channel, by weight name.
    private var inputSquares: [String: [Double]] = [:]
    /// Σ_b (mean_t |x|)² per channel, by statistic name.
    private var minitron: [String: [Double]] = [:]
    /// Σ_b (mean_t |x|)² of each branch input (a pre-attention or pre-MLP norm's output),
    /// by layer and branch; `hidden` sums their square roots.
    private var hiddenByBranch: [String: [Double]] = [:]
    private var layerInputs: [Int: [Float]] = [:]
    private var influence: [Int: Double] = [:]
    private var routerTokens: [Int: [Double]] = [:]
    private var routerWeight: [Int: [Double]] = [:]
    private var routerRatios: [Int: [Double]] = [:]
    private var expertSquares: [Int: [Double]] = [:]
    private let sequenceOfToken: [Int]
    /// Layer and role of each tensor, by name.
    private let tensorRoles: [String: (layer: Int?, role: Role)]

    public init(plan: ForwardPlan, batch: TokenBatch) {
        self.plan = plan
        self.batch = batch
        var owner = [Int](repeating: 0, count: batch.tokenCount)
        for s in 0..<batch.sequenceCount { for t in batch.range(of: s) { owner[t] = s } }
        sequenceOfToken = owner
        var roles: [String: (layer: Int?, role: Role)] = [:]
        for node in plan.graph.nodes { roles[node.name] = (node.layer, plan.graph.descriptor.tensors[node.template].role) }
        tensorRoles = roles
    }

    public func observe(_ observation: Observation) {
        switch observation {
        case let .layerInput(layer, hidden):
            layerInputs[layer] = (0..<hidden.rows).flatMap { Array(hidden.row($0)) }
        case let .layerOutput(layer, hidden):
            guard let before = layerInputs.removeValue(forKey: layer) else { return }
            var total = 0.0
            for t in 0..<hidden.rows {
                var dot = 0.0, aa = 0.0, bb = 0.0
                let row = hidden.row(t)
                for c in 0..<hidden.columns {
                    let a = Double(before[t * hidden.columns + c]), b = Double(row[c])
                    dot += a * b
                    aa += a * a
                    bb += b * b
                }
                total += aa > 0 && bb > 0 ? dot / (aa * bb).squareRoot() : 0
            }
            influence[layer] = 1 - total / Double(max(1, hidden.rows))
        case let .linearInput(tensor, tokens, values):
            var sums = inputSquares[tensor] ?? [Double](repeating: 0, count: values.columns)
            for r in 0..<values.rows {
                let row = values.row(r)
                for c in 0..<values.columns { sums[c] += Double(row[c]) * Double(row[c]) }
            }
            inputSquares[tensor] = sums
            guard let (layer, role) = tensorRoles[tensor].flatMap({ entry in entry.layer.map { ($0, entry.role) } }) else { return }
            switch role {
            case .output:
                accumulate("layers.\(layer).attention.o_proj_input", values, tokens: tokens)
            case .query, .qkv:
                accumulateHidden("\(layer).attention", values)
            case .router, .up, .gateUp:
                accumulateHidden("\(layer).mlp", values)
            default:
                break
            }
        case let .ffnActivations(layer, expert, shared, tokens, values):
            let name: String
            if shared {
                name = "layers.\(layer).shared_expert.channels"
            } else if let expert {
                name = "layers.\(layer).experts.\(expert).channels"
            } else {
                name = "layers.\(layer).mlp.channels"
            }
            accumulate(name, values, tokens: tokens)
        case let .router(layer, _, choices, weights, topK):
            let e = plan.experts
            var count = routerTokens[layer] ?? [Double](repeating: 0, count: e)
            var weight = routerWeight[layer] ?? [Double](repeating: 0, count: e)
            var ratios = routerRatios[layer] ?? []
            for t in 0..<choices.count / max(1, topK) {
                for i in 0..<topK {
                    count[Int(choices[t * topK + i])] += 1
                    weight[Int(choices[t * topK + i])] += Double(weights[t * topK + i])
                }
                if topK >= 2, weights[t * topK] > 0 { ratios.append(Double(weights[t * topK + 1] / weights[t * topK])) }
            }
            routerTokens[layer] = count
            routerWeight[layer] = weight
            routerRatios[layer] = ratios
        case let .expertOutput(layer, expert, _, values):
            var squares = expertSquares[layer] ?? [Double](repeating: 0, count: plan.experts)
            for r in 0..<values.rows {
                for v in values.row(r) { squares[expert] += Double(v) * Double(v) }
            }
            expertSquares[layer] = squares
        case .headOutputs:
            break
        }
    }

    /// Adds Σ_b (mean_t |x|)² per channel; `tokens` maps rows to batch tokens (a subset).
    private func accumulate(_ name: String, _ values: Matrix, tokens: [Int32]?) {
        var sums = minitron[name] ?? [Double](repeating: 0, count: values.columns)
        add(meanSquares(values, tokens: tokens), to: &sums)
        minitron[name] = sums
    }

    private func accumulateHidden(_ branch: String, _ values: Matrix) {
        var sums = hiddenByBranch[branch] ?? [Double](repeating: 0, count: values.columns)
        add(meanSquares(values, tokens: nil), to: &sums)
        hiddenByBranch[branch] = sums
    }

    private func add(_ x: [Double], to sums: inout [Double]) {
        for c in sums.indices { sums[c] += x[c] }
    }

    /// Σ over sequences of (mean over the sequence's rows of |x|)², per channel.
    private func meanSquares(_ values: Matrix, tokens: [Int32]?) -> [Double] {
        var perSequence = [Int: (sum: [Double], count: Int)]()
        for r in 0..<values.rows {
            let s = sequenceOfToken[tokens.map { Int($0[r]) } ?? r]
            var entry = perSequence[s] ?? ([Double](repeating: 0, count: values.columns), 0)
            let row = values.row(r)
            for c in 0..<values.columns { entry.sum[c] += Double(abs(row[c])) }
            entry.count += 1
            perSequence[s] = entry
        }
        var out = [Double](repeating: 0, count: values.columns)
        for (_, entry) in perSequence {
            for c in out.indices {
                let mean = entry.sum[c] / Double(entry.count)
                out[c] += mean * mean
            }
        }
        return out
    }

    /// The statistics, by name, as f32 vectors (scalars have one value).
    public func results() -> [(name: String, values: [Float])] {
        var out: [(String, [Float])] = []
        for (name, sums) in inputSquares { out.append(("\(name).input_norm", sums.map { Float($0.squareRoot()) })) }
        for (name, sums) in minitron {
            let importance = sums.map { $0.squareRoot() }
            if name.hasSuffix(".attention.o_proj_input") {
                let layer = name.dropLast(".attention.o_proj_input".count)
                let hd = plan.headDim
                let heads = importance.count / hd
                let perHead = (0..<heads).map { h in Float(importance[h * hd..<(h + 1) * hd].reduce(0) { $0 + $1 * $1 }.squareRoot()) }
                out.append(("\(layer).attention.heads", perHead))
            } else {
                out.append((name, importance.map(Float.init)))
            }
        }
        if !hiddenByBranch.isEmpty {
            var hidden = [Double](repeating: 0, count: plan.hidden)
            for key in hiddenByBranch.keys.sorted() { for c in hidden.indices { hidden[c] += hiddenByBranch[key]![c].squareRoot() } }
            out.append(("hidden", hidden.map(Float.init)))
        }
        for (layer, value) in influence { out.append(("layers.\(layer).block_influence", [Float(value)])) }
        for (layer, counts) in routerTokens { out.append(("layers.\(layer).router.tokens", counts.map(Float.init))) }
        for (layer, weights) in routerWeight { out.append(("layers.\(layer).router.weight", weights.map(Float.init))) }
        for (layer, ratios) in routerRatios where !ratios.isEmpty {
            out.append(("layers.\(layer).router.beta", [Float(Self.median(ratios))]))
        }
        for (layer, squares) in expertSquares { out.append(("layers.\(layer).experts.output_norm", squares.map { Float($0.squareRoot()) })) }
        return out.sorted { $0.0 < $1.0 }
    }

    static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
