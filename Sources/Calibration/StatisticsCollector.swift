import ModelGraph
import Runtime

/// Accumulates calibration statistics while the executor runs, from its observation points.
///
/// Names follow the statistics file's contract (`formats/stats.md`): `<W>.input_norm` per
/// linear weight (Wanda), Minitron activation importance for heads, FFN channels (dense,
/// per expert, shared expert) and hidden channels, ShortGPT's block influence per layer,
/// and per MoE layer the routing counts, summed weights, NAEE's β and each expert's output
/// norm. "Minitron aggregation" of an activation X[b, t, c] is
/// imp[c] = sqrt(Σ_b (mean_t |X[b, t, c]|)²). Sums are kept in f64, in buffers made once
/// per statistic, so the cost per token is a few passes over each activation.
public final class StatisticsCollector: ExecutionObserver {
    public let plan: ForwardPlan
    public let batch: TokenBatch
    public var points: ObservationPoints { [.layerInput, .layerOutput, .linearInputs, .ffnActivations, .router, .expertOutputs] }

    /// Σ x² and Σ x per input channel, and the rows summed, by weight name.
    private var inputSquares: [String: [Double]] = [:]
    private var inputSums: [String: [Double]] = [:]
    private var inputRows: [String: Int] = [:]
    /// Σ_b (mean_t |x|)² per channel, by statistic name.
    private var minitron: [String: [Double]] = [:]
    /// Σ_b (mean_t |x|)² of each branch input, by layer and branch; `hidden` adds up their
    /// square roots.
    private var hiddenByBranch: [String: [Double]] = [:]
    /// Σ_b (mean_t |x|)² of each output projection's input, by layer.
    private var headInputs: [Int: [Double]] = [:]
    private var layerInput: [Float] = []
    private var influence: [Int: Double] = [:]
    private var routerTokens: [Int: [Double]] = [:]
    private var routerWeight: [Int: [Double]] = [:]
    private var routerRatios: [Int: [Double]] = [:]
    private var expertSquares: [Int: [Double]] = [:]
    private let sequenceOfToken: [Int32]
    /// Layer and role of each tensor, by name.
    private let tensorRoles: [String: (layer: Int?, role: Role)]
    /// The last linear input seen and its Σ x²: q, k and v (and gate and up) read the same
    /// rows, so the sums are made once. Any other observation forgets it, since the
    /// executor reuses buffers between steps.
    private var lastInput: (base: UnsafePointer<Float>, rows: Int, columns: Int, tokens: [Int32]?, squares: [Double], sums: [Double])?
    private var scratch: [Double] = []

    public init(plan: ForwardPlan, batch: TokenBatch) {
        self.plan = plan
        self.batch = batch
        var owner = [Int32](repeating: 0, count: batch.tokenCount)
        for s in 0..<batch.sequenceCount { for t in batch.range(of: s) { owner[t] = Int32(s) } }
        sequenceOfToken = owner
        var roles: [String: (layer: Int?, role: Role)] = [:]
        for node in plan.graph.nodes { roles[node.name] = (node.layer, plan.graph.descriptor.tensors[node.template].role) }
        tensorRoles = roles
    }

    public func observe(_ observation: Observation) {
        if case .linearInput = observation {} else { lastInput = nil }
        switch observation {
        case let .layerInput(_, hidden):
            layerInput.removeAll(keepingCapacity: true)
            for r in 0..<hidden.rows { layerInput.append(contentsOf: hidden.row(r)) }
        case let .layerOutput(layer, hidden):
            influence[layer] = 1 - meanCosine(hidden)
        case let .linearInput(tensor, tokens, values):
            observeLinearInput(tensor, tokens: tokens, values)
        case let .ffnActivations(layer, expert, shared, tokens, values):
            let name: String
            if shared {
                name = StatisticName.sharedExpertChannels(layer: layer)
            } else if let expert {
                name = StatisticName.expertChannels(layer: layer, expert: expert)
            } else {
                name = StatisticName.mlpChannels(layer: layer)
            }
            accumulateMinitron(values, tokens: tokens, into: &minitron[name, default: []])
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
            var total = 0.0
            for r in 0..<values.rows {
                for v in values.row(r) { total += Double(v) * Double(v) }
            }
            expertSquares[layer, default: [Double](repeating: 0, count: plan.experts)][expert] += total
        case .headOutputs, .expertCandidate:
            break
        }
    }

    private func observeLinearInput(_ tensor: String, tokens: [Int32]?, _ values: Matrix) {
        let squares: [Double], plain: [Double]
        if let last = lastInput, last.base == values.base, last.rows == values.rows, last.columns == values.columns, last.tokens == tokens {
            (squares, plain) = (last.squares, last.sums)
        } else {
            var sq = [Double](repeating: 0, count: values.columns), su = sq
            sq.withUnsafeMutableBufferPointer { sq in
                su.withUnsafeMutableBufferPointer { su in
                    for r in 0..<values.rows {
                        let row = values.row(r)
                        for c in 0..<values.columns {
                            let x = Double(row[c])
                            sq[c] += x * x
                            su[c] += x
                        }
                    }
                }
            }
            (squares, plain) = (sq, su)
            lastInput = (values.base, values.rows, values.columns, tokens, sq, su)
        }
        inputSquares[tensor, default: [Double](repeating: 0, count: squares.count)].withUnsafeMutableBufferPointer { sums in
            for c in 0..<squares.count { sums[c] += squares[c] }
        }
        inputSums[tensor, default: [Double](repeating: 0, count: plain.count)].withUnsafeMutableBufferPointer { sums in
            for c in 0..<plain.count { sums[c] += plain[c] }
        }
        inputRows[tensor, default: 0] += values.rows
        guard let entry = tensorRoles[tensor], let layer = entry.layer else { return }
        if entry.role == .output {
            accumulateMinitron(values, tokens: tokens, into: &headInputs[layer, default: []])
        }
        // A branch's input is the input of its first projection, counted once per layer:
        // q, k and v (and the router, the experts and the shared expert) read the same rows.
        guard tokens == nil, let branch = Self.branch(of: entry.role) else { return }
        let key = "\(layer).\(branch)"
        if hiddenByBranch[key] == nil { accumulateMinitron(values, tokens: nil, into: &hiddenByBranch[key, default: []]) }
    }

    /// The branch whose input a projection reads: the attention, or the MLP (or MoE) block.
    static func branch(of role: Role) -> String? {
        switch role {
        case .query, .key, .value, .qkv: return "attention"
        case .gate, .up, .gateUp, .router, .sharedExpertGate, .sharedExpertUp, .sharedExpertRouter: return "mlp"
        default: return nil
        }
    }

    /// 1 − block influence: the mean over tokens of cos(layer input, layer output).
    private func meanCosine(_ output: Matrix) -> Double {
        guard layerInput.count == output.rows * output.columns, output.rows > 0 else { return 1 }
        var total = 0.0
        layerInput.withUnsafeBufferPointer { before in
            for t in 0..<output.rows {
                var dot = 0.0, aa = 0.0, bb = 0.0
                let row = output.row(t), base = t * output.columns
                for c in 0..<output.columns {
                    let a = Double(before[base + c]), b = Double(row[c])
                    dot += a * b
                    aa += a * a
                    bb += b * b
                }
                total += aa > 0 && bb > 0 ? dot / (aa * bb).squareRoot() : 0
            }
        }
        return total / Double(output.rows)
    }

    /// Adds Σ over sequences of (mean over the sequence's rows of |x|)², per channel.
    /// `tokens` maps rows to batch tokens (an expert's subset); rows come in token order,
    /// so each sequence's rows are contiguous.
    private func accumulateMinitron(_ values: Matrix, tokens: [Int32]?, into sums: inout [Double]) {
        let columns = values.columns
        if sums.isEmpty { sums = [Double](repeating: 0, count: columns) }
        if scratch.count != columns { scratch = [Double](repeating: 0, count: columns) }
        let owner = sequenceOfToken
        scratch.withUnsafeMutableBufferPointer { run in
            sums.withUnsafeMutableBufferPointer { sums in
                var start = 0
                while start < values.rows {
                    let sequence = owner[tokens.map { Int($0[start]) } ?? start]
                    var end = start
                    for c in 0..<columns { run[c] = 0 }
                    while end < values.rows, owner[tokens.map { Int($0[end]) } ?? end] == sequence {
                        let row = values.row(end)
                        for c in 0..<columns { run[c] += Double(abs(row[c])) }
                        end += 1
                    }
                    let count = Double(end - start)
                    for c in 0..<columns {
                        let mean = run[c] / count
                        sums[c] += mean * mean
                    }
                    start = end
                }
            }
        }
    }

    /// The statistics, sorted by name, as f32 vectors (a scalar has one value).
    ///
    /// Weights and experts that no token reached are present with zeros, so every file of a
    /// model has the same names.
    public func results() -> [(name: String, values: [Float])] {
        var out: [(String, [Float])] = []
        var squares = inputSquares
        var channels = minitron
        let observedTemplates = Set(plan.graph.nodes.filter { inputSquares[$0.name] != nil }.map(\.template))
        for node in plan.graph.nodes where observedTemplates.contains(node.template) && squares[node.name] == nil {
            let shape = node.source.info.shape
            let inputs = Int(plan.isTransposed(node) ? shape.first! : shape.last!)
            squares[node.name] = [Double](repeating: 0, count: inputs)
        }
        for layer in 0..<plan.layers where plan.isMoE(layer: layer) {
            for expert in 0..<plan.experts where channels[StatisticName.expertChannels(layer: layer, expert: expert)] == nil {
                guard let down = plan.node(.expertDown, layer: layer, expert: expert) else { continue }
                let shape = down.source.info.shape
                channels[StatisticName.expertChannels(layer: layer, expert: expert)] = [Double](repeating: 0, count: Int(plan.isTransposed(down) ? shape.first! : shape.last!))
            }
        }
        for (name, sums) in squares {
            out.append((StatisticName.inputNorm(name), sums.map { Float($0.squareRoot()) }))
            // The mean of each input channel over the tokens that reached the weight (0
            // when none did): what bias compensation folds in for removed channels.
            let rows = Double(inputRows[name] ?? 0)
            let mean = inputSums[name].map { s in s.map { rows > 0 ? Float($0 / rows) : 0 } } ?? [Float](repeating: 0, count: sums.count)
            out.append((StatisticName.inputMean(name), mean))
        }
        for (name, sums) in channels { out.append((name, sums.map { Float($0.squareRoot()) })) }
        for (layer, sums) in headInputs {
            // Each head's importance is the L2 over its head_dim slice of the channels'.
            let hd = plan.headDim
            let perHead = (0..<sums.count / hd).map { h in Float(sums[h * hd..<(h + 1) * hd].reduce(0, +).squareRoot()) }
            out.append((StatisticName.heads(layer: layer), perHead))
        }
        if !hiddenByBranch.isEmpty {
            var hidden = [Double](repeating: 0, count: plan.hidden)
            for key in hiddenByBranch.keys.sorted() { for c in hidden.indices { hidden[c] += hiddenByBranch[key]![c].squareRoot() } }
            out.append((StatisticName.hidden, hidden.map(Float.init)))
        }
        for (layer, value) in influence { out.append((StatisticName.blockInfluence(layer: layer), [Float(value)])) }
        for (layer, counts) in routerTokens { out.append((StatisticName.routerTokens(layer: layer), counts.map(Float.init))) }
        for (layer, weights) in routerWeight { out.append((StatisticName.routerWeight(layer: layer), weights.map(Float.init))) }
        for (layer, ratios) in routerRatios where !ratios.isEmpty {
            out.append((StatisticName.routerBeta(layer: layer), [Float(Self.median(ratios))]))
        }
        for layer in routerTokens.keys {
            let squares = expertSquares[layer] ?? [Double](repeating: 0, count: plan.experts)
            out.append((StatisticName.expertOutputNorm(layer: layer), squares.map { Float($0.squareRoot()) }))
        }
        return out.sorted { $0.0 < $1.0 }
    }

    static func median(_ values: [Double]) -> Double {
        let s = values.sorted()
        return s.count % 2 == 1 ? s[s.count / 2] : (s[s.count / 2 - 1] + s[s.count / 2]) / 2
    }
}
