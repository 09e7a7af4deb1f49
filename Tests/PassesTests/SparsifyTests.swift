import Emit
import ModelFolder
import ModelGraph
import PareFormat
import SafeTensors
import Testing
import TestSupport
import Tensors

@testable import Passes

@Suite struct SparsifyTests {
    /// Prunes one F32 row (or column block) with the kernel.
    func prune(_ values: [Float], columns: Int, input: NMSparsity.InputDimension = .last, n: Int, m: Int, norms: [Float]? = nil) -> [Float] {
        var out = [Float](repeating: .nan, count: values.count)
        values.withUnsafeBytes { source in
            out.withUnsafeMutableBytes { output in
                let run = { (norms: UnsafePointer<Float>?) in
                    NMSparsity.prune(source.baseAddress!, dtype: .f32, columns: columns, input: input, rows: 0..<(values.count / columns),
                                     n: n, m: m, norms: norms, into: output.baseAddress!)
                }
                if let norms { norms.withUnsafeBufferPointer { run($0.baseAddress) } } else { run(nil) }
            }
        }
        return out
    }

    @Test func keepsTheLargestMagnitudesAndBreaksTiesTowardTheLowerIndex() {
        #expect(prune([1, -3, 2, 0.5], columns: 4, n: 2, m: 4) == [0, -3, 2, 0])
        // Equal magnitudes: the lower indices win, whatever the sign.
        #expect(prune([2, -2, 2, 1], columns: 4, n: 2, m: 4) == [2, -2, 0, 0])
        #expect(prune([0, 0, 0, 0], columns: 4, n: 2, m: 4) == [0, 0, 0, 0])
        #expect(prune([1, 2, 3, 4, 5, 6, 7, 8], columns: 8, n: 1, m: 4) == [0, 0, 0, 4, 0, 0, 0, 8])
        #expect(prune([5, 1, 7, 3, 2, 8, 4, 6], columns: 8, n: 4, m: 8) == [5, 0, 7, 0, 0, 8, 0, 6])
    }

    @Test func wandaWeighsMagnitudesByInputNorms() {
        // |w|·‖x‖ = [1, 3·0.1, 2, 0.5·10] → keeps 2 (2) and 3 (5).
        #expect(prune([1, -3, 2, 0.5], columns: 4, n: 2, m: 4, norms: [1, 0.1, 1, 10]) == [0, 0, 2, 0.5])
    }

    @Test func conv1DGroupsRunDownTheColumns() {
        // [in = 4, out = 2]: column 0 is 1,5,2,4 → keeps 5 and 4; column 1 is 8,1,1,9 → 8 and 9.
        let w: [Float] = [1, 8, 5, 1, 2, 1, 4, 9]
        #expect(prune(w, columns: 2, input: .first, n: 2, m: 4) == [0, 8, 5, 0, 0, 0, 4, 9])
    }

    func sparsify(_ fixture: String, _ request: SparsifyRequest, to output: String) throws -> SparsifyPlan {
        let model = try ModelFolder(path: Fixtures.model(fixture))
        let plan = try SparsifyPlan(model: model, request: request)
        try CheckpointWriter(input: model, output: output, options: .init(format: request.layout.weightFormat),
                       items: plan.items, config: plan.config).run()
        return plan
    }

    @Test(arguments: ["llama-gqa-bf16", "llama-gqa-f32", "qwen3", "mixtral", "qwen2-moe", "gpt2", "bert"])
    func denseAndPareOutputsHoldTheSameSparseWeights(_ fixture: String) throws {
        let dir = TemporaryDirectory()
        let pattern = NMPacking.Pattern(n: 2, m: 4)!
        let plan = try sparsify(fixture, SparsifyRequest(pattern: pattern), to: dir.file("dense"))
        _ = try sparsify(fixture, SparsifyRequest(pattern: pattern, layout: PareLayout()), to: dir.file("pare"))
        let input = try ModelFolder(path: Fixtures.model(fixture))
        let dense = try ModelFolder(path: dir.file("dense"))
        let packed = try ModelFolder(path: dir.file("pare"))
        let targets = Set(plan.targets.map(\.name))
        #expect(!targets.isEmpty)
        #expect(!targets.contains { $0.contains("embed") || $0.contains("lm_head") || $0.contains("norm") || $0.hasSuffix(".bias") })
        for ((a, b), c) in zip(zip(input.tensors, dense.tensors), packed.tensors) {
            let x = try input.shards[a.shard].withBytes(of: a.info) { Array($0) }
            let y = try dense.shards[b.shard].withBytes(of: b.info) { Array($0) }
            let z = try packed.shards[c.shard].withBytes(of: c.info) { Array($0) }
            #expect(y == z, "\(a.info.name): dense and .pare outputs differ")
            if targets.contains(a.info.name) {
                let width = a.info.dtype.bitWidth / 8
                let zeros = stride(from: 0, to: y.count, by: width).filter { i in y[i..<(i + width)].allSatisfy { $0 == 0 } }.count
                #expect(zeros * 2 >= y.count / width, "\(a.info.name): fewer than half the elements are zero")
            } else {
                #expect(x == y, "\(a.info.name) is not a target but changed")
            }
        }
        if case .pare(let file, _) = packed.shards[0] {
            let encodings = Set(file.tensors.filter { targets.contains($0.name) }.map(\.encoding))
            #expect(encodings == (fixture == "gpt2" ? [.bitmask] : [.nm(pattern)]))
        }
    }

    @Test func refusesWhatTheOutputCannotHold() throws {
        let model = try ModelFolder(path: Fixtures.model("llama-gqa-bf16"))
        func refusal(_ request: SparsifyRequest) -> String? {
            do { _ = try SparsifyPlan(model: model, request: request); return nil } catch { return error.rule }
        }
        let p24 = NMPacking.Pattern(n: 2, m: 4)!
        #expect(refusal(SparsifyRequest(pattern: NMPacking.Pattern(n: 4, m: 8)!, layout: CompressedTensorsLayout())) == "format-pattern")
        #expect(refusal(SparsifyRequest(pattern: NMPacking.Pattern(n: 1, m: 5)!)) == "nm-groups")
        #expect(refusal(SparsifyRequest(pattern: p24, score: .wanda)) == "stats-option")
        #expect(refusal(SparsifyRequest(pattern: p24, statsPath: "x.safetensors")) == "stats-option")
        #expect(refusal(SparsifyRequest(pattern: p24, targets: "(")) == "bad-regex")
        #expect(refusal(SparsifyRequest(pattern: p24, targets: "no-such-tensor")) == "no-targets")
        let f32 = try ModelFolder(path: Fixtures.model("llama-gqa-f32"))
        #expect(throws: SparsifyError.self) { try SparsifyPlan(model: f32, request: SparsifyRequest(pattern: p24, layout: CutlassLayout())) }
        let gpt2 = try ModelFolder(path: Fixtures.model("gpt2"))
        do {
            _ = try SparsifyPlan(model: gpt2, request: SparsifyRequest(pattern: p24, layout: CompressedTensorsLayout()))
            Issue.record("GPT-2 Conv1D weights were accepted for compressed-tensors")
        } catch {
            #expect(error.rule == "format-transposed")
        }
    }

    @Test func readsWandaNormsAndNamesAMissingOne() throws {
        let dir = TemporaryDirectory()
        let model = try ModelFolder(path: Fixtures.model("llama-gqa-bf16"))
        let plain = try SparsifyPlan(model: model, request: SparsifyRequest(pattern: NMPacking.Pattern(n: 2, m: 4)!))
        // Norms for all targets but the last.
        let entries = plain.targets.dropLast().map { SafeTensorsWriter.Entry(name: $0.name + ".input_norm", dtype: .f32, shape: [UInt64($0.inputSize)]) }
        let path = dir.file("stats.safetensors")
        let writer = try SafeTensorsWriter(path: path, entries: entries, metadata: [])
        for entry in entries {
            let norms = (0..<Int(entry.shape[0])).map { Float($0 % 7) + 0.5 }
            try norms.withUnsafeBytes { try writer.write($0) }
        }
        try writer.finish()
        let request = SparsifyRequest(pattern: NMPacking.Pattern(n: 2, m: 4)!, score: .wanda, statsPath: path)
        do {
            _ = try SparsifyPlan(model: model, request: request)
            Issue.record("a missing statistics tensor was not noticed")
        } catch {
            #expect(error.rule == "stats-missing-tensor")
            #expect("\(error)".contains(plain.targets.last!.name))
        }
        let ignoring = SparsifyRequest(pattern: NMPacking.Pattern(n: 2, m: 4)!, score: .wanda, statsPath: path,
                                       ignore: "^" + plain.targets.last!.name + "$")
        let plan = try SparsifyPlan(model: model, request: ignoring)
        #expect(plan.targets.allSatisfy { $0.norms?.count == $0.inputSize })
    }
}

@Suite struct SparsifyStepTests {
    /// Trimming with a sparsify step writes what sparsifying the trimmed model writes.
    @Test(arguments: [("llama-gqa-bf16", "drop_layers: [1]\nffn: 64\nsparsify: \"2:4\""),
                      ("gpt2", "merge_layers: \"0-1\"\nffn: 96\nsparsify: {pattern: \"1:4\"}"),
                      ("qwen2-moe", "expert_ffn: 16\nsparsify: {pattern: \"2:4\", ignore: \"shared_expert\"}")])
    func trimThenSparsifyEqualsSparsifyingTheTrimmedModel(_ fixture: String, _ recipeText: String) throws {
        let dir = TemporaryDirectory()
        let recipe = try Recipe.parse(recipeText, source: "test")
        let step = try #require(recipe.sparsify)
        let graph = try ModelGraph(model: try ModelFolder(path: Fixtures.model(fixture)))
        var planner = TrimPlanner(graph: graph)
        let trimmed = try TrimmedModel(graph: graph, plan: try planner.plan(recipe.request, explicit: recipe.plan))
        try CheckpointWriter(input: graph.model, output: dir.file("trimmed"), options: .init(), items: trimmed.items, config: trimmed.config).run()
        let sparse = try step.apply(to: trimmed)
        try CheckpointWriter(input: graph.model, output: dir.file("both"), options: .init(), items: sparse.items, config: trimmed.config).run()

        let plain = try ModelFolder(path: dir.file("trimmed"))
        let request = SparsifyRequest(pattern: step.pattern, ignore: step.ignore)
        let plan = try SparsifyPlan(model: plain, request: request)
        #expect(plan.targets.map(\.name) == sparse.targets)
        try CheckpointWriter(input: plain, output: dir.file("after"), options: .init(), items: plan.items, config: plan.config).run()
        #expect(try snapshot(dir.file("both")) == snapshot(dir.file("after")))
    }

    @Test func recipesRefuseABadStep() {
        #expect(throws: RecipeError.self) { try Recipe.parse("sparsify: \"5:4\"", source: "r") }
        #expect(throws: RecipeError.self) { try Recipe.parse("sparsify: {pattern: \"2:4\", score: best}", source: "r") }
        #expect(throws: RecipeError.self) { try Recipe.parse("sparsify: {pattern: \"2:4\", format: dense}", source: "r") }
    }
}
