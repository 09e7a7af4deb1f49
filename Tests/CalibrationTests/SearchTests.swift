import Emit
import Foundation
import ModelFolder
import ModelGraph
import Passes
import Testing
import TestSupport
@testable import Calibration
@testable import Runtime

/// Final hidden states `[tokens, hidden]` of a plan on a batch.
private func finalStates(_ plan: ForwardPlan, _ batch: TokenBatch, observer: ExecutionObserver? = nil, skip: [Float?]? = nil) throws -> (states: [Float], executor: Executor) {
    let executor = try Executor(plan: plan, batch: batch, threads: 2)
    executor.observer = observer
    executor.expertSkip = skip
    try executor.runToEnd()
    return (Array(UnsafeBufferPointer(start: executor.final.base, count: batch.tokenCount * plan.hidden)), executor)
}

/// Deterministic ids in `0..<vocab`.
private func sequences(_ lengths: [Int], vocab: Int, seed: UInt64 = 11) -> [[Int32]] {
    var state = seed
    return lengths.map { n in
        (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int32((state >> 33) % UInt64(vocab))
        }
    }
}

private func plan(_ fixture: String) throws -> ForwardPlan {
    try ForwardPlan(graph: try ModelGraph(model: try ModelFolder(path: Fixtures.model(fixture))))
}

private func maxRelative(_ a: [Float], _ b: [Float]) -> Float {
    let scale = max(b.map(abs).max() ?? 1, 1e-12)
    return zip(a, b).map { abs($0 - $1) }.max()! / scale
}

@Suite struct LayerCollapseTests {
    /// LaCo measures merges on the executor without writing them: what it measures must be
    /// what a trim with those merges writes.
    @Test(arguments: [("llama-gqa-bf16", [[0, 1]]), ("mixtral", [[0, 1]]), ("gpt2", [[0, 1]])])
    func aCollapsedPlanComputesTheTrimmedModel(_ fixture: String, _ runs: [[Int]]) throws {
        let dir = TemporaryDirectory()
        let graph = try ModelGraph(model: try ModelFolder(path: Fixtures.model(fixture)))
        var request = TrimRequest()
        request.merges = runs
        var planner = TrimPlanner(graph: graph)
        let trimmed = try TrimmedModel(graph: graph, plan: try planner.plan(request))
        try CheckpointWriter(input: graph.model, output: dir.file("out"), options: .init(), items: trimmed.items, config: trimmed.config).run()
        let batch = TokenBatch(sequences: sequences([5, 3], vocab: 64))
        let collapsed = try ForwardPlan(graph: graph).collapsing(runs)
        let written = try ForwardPlan(graph: try ModelGraph(model: try ModelFolder(path: dir.file("out"))))
        #expect(collapsed.layers == written.layers)
        let a = try finalStates(collapsed, batch).states, b = try finalStates(written, batch).states
        #expect(maxRelative(a, b) < 1e-6)
    }

    @Test func theSearchKeepsOnlyMergesAboveTheThreshold() throws {
        let p = try plan("llama-gqa-f32")
        let batch = TokenBatch(sequences: sequences([6, 4], vocab: 64))
        let open = try LayerCollapseSearch(plan: p, batch: batch, threads: 1, options: .init(targetLayers: 1, span: 2, threshold: -1), source: "test").run()
        // A threshold of -1 accepts everything: merges down to the target.
        #expect(open.layers == 1 || open.trials.allSatisfy(\.accepted))
        #expect(open.merges.joined().count - open.merges.count == p.layers - open.layers)
        let closed = try LayerCollapseSearch(plan: p, batch: batch, threads: 1, options: .init(targetLayers: 1, span: 2, threshold: 1.01), source: "test").run()
        #expect(closed.merges.isEmpty && !closed.trials.isEmpty && closed.trials.allSatisfy { !$0.accepted })
        // Every trial's similarity is a cosine.
        #expect(closed.trials.allSatisfy { $0.similarity <= 1 + 1e-9 && $0.similarity >= -1 - 1e-9 })
    }
}

@Suite struct ExpertSubsetTests {
    /// The search's losses against the pruned layer computed directly: route among the kept
    /// experts as the pruned model would, and compare with the full layer's output.
    @Test(arguments: ["mixtral", "qwen2-moe"])
    func lossesMatchTheLayerRecomputedByBruteForce(_ fixture: String) throws {
        let p = try plan(fixture)
        let keep = max(p.expertsPerToken, p.experts - 2)
        let batch = TokenBatch(sequences: sequences([7, 5], vocab: 64))
        let search = ExpertSubsetSearch(plan: p, keep: keep)
        let brute = MoEOutputs(plan: p)
        _ = try finalStates(p, batch, observer: ObserverGroup([search, brute]))
        #expect(search.results.count == (0..<p.layers).filter { p.isMoE(layer: $0) }.count)
        for result in search.results {
            #expect(result.exhaustive && result.evaluated == ExpertSubsetSearch.binomial(p.experts, keep))
            for entry in result.ranking {
                let reference = brute.loss(layer: result.layer, kept: entry.kept)
                #expect(abs(entry.loss - reference) <= 1e-4 * max(reference, 1e-9), "layer \(result.layer) kept \(entry.kept): \(entry.loss) vs \(reference)")
            }
            #expect(result.loss == result.ranking.map(\.loss).min())
        }
    }

    @Test func binomialStopsPastTheLimit() {
        #expect(ExpertSubsetSearch.binomial(8, 6) == 28)
        #expect(ExpertSubsetSearch.binomial(4, 2) == 6)
        #expect(ExpertSubsetSearch.binomial(64, 32) > ExpertSubsetSearch.exhaustiveLimit)
    }

    /// β = 0 skips nothing; β above 1 skips every expert after the first.
    @Test func dynamicSkippingCountsWhatItSkips() throws {
        let p = try plan("mixtral")
        let batch = TokenBatch(sequences: sequences([6, 6], vocab: 64))
        let none = try finalStates(p, batch, skip: [Float?](repeating: 0, count: p.layers))
        let plain = try finalStates(p, batch)
        #expect(none.states == plain.states && none.executor.expertEvaluationsSkipped == 0)
        let all = try finalStates(p, batch, skip: [Float?](repeating: 1.01, count: p.layers))
        #expect(all.executor.expertEvaluations == batch.tokenCount * p.layers * p.expertsPerToken)
        #expect(all.executor.expertEvaluationsSkipped == batch.tokenCount * p.layers * (p.expertsPerToken - 1))
        #expect(all.states != plain.states)
    }
}

/// Records every expert's output on every token (by running each expert itself from the
/// MoE input), and the router logits, to recompute pruned layers by brute force.
private final class MoEOutputs: ExecutionObserver {
    let plan: ForwardPlan
    var points: ObservationPoints { [.router, .expertOutputs, .expertCandidates] }
    var candidateExperts: Int { plan.experts }
    private var logits: [Int: [[Float]]] = [:]
    private var outputs: [Int: [Int: [Int: [Float]]]] = [:]

    init(plan: ForwardPlan) { self.plan = plan }

    func observe(_ observation: Observation) {
        switch observation {
        case let .router(layer, m, _, _, _):
            logits[layer] = (0..<m.rows).map { Array(m.row($0)) }
        case let .expertOutput(layer, expert, tokens, values), let .expertCandidate(layer, expert, tokens, values):
            for (i, t) in tokens.enumerated() { outputs[layer, default: [:]][Int(t), default: [:]][expert] = Array(values.row(i)) }
        default:
            break
        }
    }

    /// Σ_t ‖Z_t − Z′_t‖² with Z′ routed among `kept` only.
    func loss(layer: Int, kept: [Int]) -> Double {
        let k = plan.expertsPerToken
        func mix(_ t: Int, _ allowed: [Int]) -> [Double] {
            let row = logits[layer]![t]
            let m = allowed.map { Double(row[$0]) }.max()!
            let p = allowed.map { exp(Double(row[$0]) - m) }
            let total = p.reduce(0, +)
            let order = allowed.indices.sorted { p[$0] != p[$1] ? p[$0] > p[$1] : allowed[$0] < allowed[$1] }.prefix(k)
            let chosenTotal = order.reduce(0.0) { $0 + p[$1] }
            var z = [Double](repeating: 0, count: plan.hidden)
            for i in order {
                let w = p[i] / (plan.renormalize ? chosenTotal : total)
                let y = outputs[layer]![t]![allowed[i]]!
                for c in z.indices { z[c] += w * Double(y[c]) }
            }
            return z
        }
        var total = 0.0
        for t in 0..<logits[layer]!.count {
            let z = mix(t, Array(0..<plan.experts)), zp = mix(t, kept)
            total += zip(z, zp).reduce(0) { $0 + ($1.0 - $1.1) * ($1.0 - $1.1) }
        }
        return total
    }
}

@Suite struct BiasCompensationTests {
    /// Records the mean over tokens of one layer's output.
    private final class LayerMean: ExecutionObserver {
        let layer: Int
        var mean: [Double] = []
        var points: ObservationPoints { [.layerOutput] }
        init(layer: Int) { self.layer = layer }
        func observe(_ observation: Observation) {
            guard case let .layerOutput(l, m) = observation, l == layer else { return }
            mean = (0..<m.columns).map { c in (0..<m.rows).reduce(0.0) { $0 + Double(m[$1, c]) } / Double(m.rows) }
        }
    }

    /// The down projection is linear: with the removed channels' mean folded into its bias,
    /// the first layer's output keeps its mean over the calibration tokens exactly (its
    /// input does not change; later layers' inputs do). In bf16 the bias itself is rounded.
    /// (Heads: the MLP after the attention sees each token's change, so only the attention
    /// output's mean would be kept; the interop suite checks heads against torch.)
    @Test(arguments: [("llama-gqa-f32", false), ("gpt2", false), ("llama-gqa-bf16", false)])
    func theFirstLayerKeepsItsMeanOutput(_ fixture: String, _ heads: Bool) throws {
        let dir = TemporaryDirectory()
        let graph = try ModelGraph(model: try ModelFolder(path: Fixtures.model(fixture)))
        let original = try ForwardPlan(graph: graph)
        let batch = TokenBatch(sequences: sequences([9, 6, 4], vocab: 64))
        let pass = try CalibrationPass(plan: original, batch: batch, threads: 1, source: "test").run()
        let stats = CalibrationStatistics(source: "test", fileSHA256: nil, metadata: [],
                                          values: Dictionary(uniqueKeysWithValues: pass.statistics.map { ($0.name, $0.values) }))
        var request = TrimRequest()
        if heads {
            request.sizes[.kvHeads] = .count(1)
        } else {
            request.sizes[.ffn] = .ratio(0.5)
        }
        var planner = TrimPlanner(graph: graph)
        let trimmed = try TrimmedModel(graph: graph, plan: try planner.plan(request)).compensatingBiases(with: stats)
        try CheckpointWriter(input: graph.model, output: dir.file("out"), options: .init(), items: trimmed.items, config: trimmed.config).run()
        let written = try ForwardPlan(graph: try ModelGraph(model: try ModelFolder(path: dir.file("out"))))
        let before = LayerMean(layer: 0), after = LayerMean(layer: 0), plain = LayerMean(layer: 0)
        _ = try finalStates(original, batch, observer: before)
        _ = try finalStates(written, batch, observer: after)
        // Without compensation the mean moves.
        var uncompensatedPlanner = TrimPlanner(graph: graph)
        let uncompensated = try TrimmedModel(graph: graph, plan: try uncompensatedPlanner.plan(request))
        try CheckpointWriter(input: graph.model, output: dir.file("plain"), options: .init(), items: uncompensated.items, config: uncompensated.config).run()
        _ = try finalStates(try ForwardPlan(graph: try ModelGraph(model: try ModelFolder(path: dir.file("plain")))), batch, observer: plain)
        let scale = before.mean.map(abs).max()!
        let kept = zip(before.mean, after.mean).map { abs($0 - $1) }.max()! / scale
        let moved = zip(before.mean, plain.mean).map { abs($0 - $1) }.max()! / scale
        #expect(kept < (fixture.hasSuffix("bf16") ? 1e-2 : 1e-5), "compensated mean moved by \(kept)")
        #expect(moved > 1e-3, "the trim alone moved the mean by only \(moved)")
    }

    @Test func familiesWithoutABiasOrSwitchAreRefused() throws {
        let graph = try ModelGraph(model: try ModelFolder(path: Fixtures.model("mixtral")))
        var request = TrimRequest()
        request.sizes[.kvHeads] = .count(1)
        var planner = TrimPlanner(graph: graph)
        let trimmed = try TrimmedModel(graph: graph, plan: try planner.plan(request))
        let stats = CalibrationStatistics(source: "test", fileSHA256: nil, metadata: [], values: [:])
        #expect {
            _ = try trimmed.compensatingBiases(with: stats)
        } throws: { error in
            "\(error)".contains("--compensate bias") && "\(error)".contains("no config switch")
        }
    }
}
