import ModelFolder
import SafeTensors
import Tensors
import ModelGraph
import Testing
import TestSupport
@testable import Calibration
@testable import Runtime

func collect(_ fixture: String, _ sequences: [[Int32]]) throws -> (ForwardPlan, [String: [Float]]) {
    let plan = try ForwardPlan(graph: try ModelGraph(model: try ModelFolder(path: Fixtures.model(fixture))))
    let batch = TokenBatch(sequences: sequences)
    let collector = StatisticsCollector(plan: plan, batch: batch)
    let executor = try Executor(plan: plan, batch: batch, threads: 1)
    executor.observer = collector
    try executor.runToEnd()
    return (plan, Dictionary(uniqueKeysWithValues: collector.results().map { ($0.name, $0.values) }))
}

func close(_ a: [Float]?, _ b: [Float]?, _ tolerance: Float = 1e-5) -> Bool {
    guard let a, let b, a.count == b.count, !a.isEmpty else { return false }
    let scale = max(b.map(abs).max() ?? 1, 1e-12)
    return zip(a, b).allSatisfy { abs($0 - $1) / scale < tolerance }
}

/// The statistics against identities that hold by their definitions.
@Suite struct StatisticsCollectorTests {
    /// With one token per sequence, mean_t |x| is |x|, so Minitron's sqrt(Σ_b (mean_t |x|)²)
    /// equals Wanda's sqrt(Σ x²) of the same activation.
    @Test func minitronEqualsTheInputNormOnOneTokenSequences() throws {
        let (plan, stats) = try collect("llama-gqa-f32", [[3], [17], [250]])
        for l in 0..<plan.layers {
            #expect(close(stats["layers.\(l).mlp.channels"], stats["model.layers.\(l).mlp.down_proj.weight.input_norm"]))
            let o = try #require(stats["model.layers.\(l).self_attn.o_proj.weight.input_norm"])
            let heads = (0..<plan.heads).map { h in o[h * plan.headDim..<(h + 1) * plan.headDim].reduce(0) { $0 + $1 * $1 }.squareRoot() }
            #expect(close(stats["layers.\(l).attention.heads"], heads))
            // q, k and v read the same normalised input.
            #expect(stats["model.layers.\(l).self_attn.q_proj.weight.input_norm"] == stats["model.layers.\(l).self_attn.k_proj.weight.input_norm"])
        }
        // hidden sums, over layers, the aggregation of the attention and MLP inputs.
        var hidden = [Float](repeating: 0, count: plan.hidden)
        for l in 0..<plan.layers {
            for w in ["self_attn.q_proj", "mlp.up_proj"] {
                let n = try #require(stats["model.layers.\(l).\(w).weight.input_norm"])
                for c in hidden.indices { hidden[c] += n[c] }
            }
        }
        #expect(close(stats["hidden"], hidden))
    }

    /// Longer sequences: the mean over tokens is smaller than the root of the sum of squares.
    @Test func minitronAveragesWithinASequence() throws {
        let (plan, stats) = try collect("llama-gqa-f32", [[3, 9, 27, 81], [5, 25]])
        let minitron = try #require(stats["layers.0.mlp.channels"])
        let wanda = try #require(stats["model.layers.0.mlp.down_proj.weight.input_norm"])
        #expect(zip(minitron, wanda).allSatisfy { $0 <= $1 * (1 + 1e-6) })
        for l in 0..<plan.layers {
            let bi = try #require(stats["layers.\(l).block_influence"]?.first)
            #expect(bi > 0 && bi < 2)
        }
    }

    @Test func routingStatisticsAddUp() throws {
        let tokens = [[Int32](arrayLiteral: 1, 2, 3, 4, 5, 6), [7, 8, 9]]
        let (plan, stats) = try collect("mixtral", tokens)
        let n = Float(tokens.joined().count)
        for l in 0..<plan.layers {
            let counts = try #require(stats["layers.\(l).router.tokens"])
            #expect(counts.reduce(0, +) == n * Float(plan.expertsPerToken))
            // Mixtral renormalises: each token's weights sum to 1.
            #expect(abs((stats["layers.\(l).router.weight"]?.reduce(0, +) ?? 0) - n) < 1e-4)
            let beta = try #require(stats["layers.\(l).router.beta"]?.first)
            #expect(beta > 0 && beta <= 1)
            let norms = try #require(stats["layers.\(l).experts.output_norm"])
            for e in 0..<plan.experts { #expect((norms[e] > 0) == (counts[e] > 0)) }
            // An expert's channels are aggregated over the tokens routed to it.
            for e in 0..<plan.experts where counts[e] > 0 { #expect(stats["layers.\(l).experts.\(e).channels"] != nil) }
        }
    }
}

@Suite struct StatisticsFileTests {
    @Test func statisticsAreWrittenAsNamedF32Tensors() throws {
        let (_, stats) = try collect("qwen2-moe", [[1, 2, 3, 4], [5, 6]])
        let dir = TemporaryDirectory()
        let path = dir.file("stats.safetensors")
        try StatisticsFile.write(stats.map { ($0.key, $0.value) }, metadata: [("tokens", "6")], to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.tensors.count == stats.count)
        #expect(file.header.metadata?.first { $0.key == "tokens" }?.value == "6")
        for info in file.tensors {
            #expect(info.dtype == .f32)
            let values = file.withBytes(of: info) { raw in
                (0..<Int(info.elementCount)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
            #expect(values == stats[info.name])
        }
        // Nothing is left beside it.
        #expect(try FileSystem.list(dir.path) == ["stats.safetensors"])
    }
}
