import Emit
import ModelFolder
import ModelGraph
import OrderedJSON
import SafeTensors
import Testing
import TestSupport
import Tensors

@testable import Passes

@Suite struct TrimTests {
    func graph(_ name: String) throws -> ModelGraph {
        try ModelGraph(model: try ModelFolder(path: Fixtures.model(name)))
    }

    func plan(_ name: String, _ edit: (inout TrimRequest) -> Void) throws -> (ModelGraph, TrimPlan) {
        let g = try graph(name)
        var request = TrimRequest()
        edit(&request)
        var planner = TrimPlanner(graph: g)
        return (g, try planner.plan(request))
    }


    func trim(_ name: String, to output: String, _ edit: (inout TrimRequest) -> Void) throws -> TrimmedModel {
        let (g, p) = try plan(name, edit)
        let trimmed = try TrimmedModel(graph: g, plan: p)
        try CheckpointWriter(input: g.model, output: output, options: .init(), items: trimmed.items, config: trimmed.config).run()
        return trimmed
    }

    @Test func topKeepsHighestAndBreaksTiesToLowerIndex() {
        #expect(GroupMagnitude.top(2, of: [1, 5, 5, 0]) == [1, 2])
        #expect(GroupMagnitude.top(2, of: [3, 3, 3, 3]) == [0, 1])
        #expect(GroupMagnitude.top(1, of: [0, 0, 2, 2]) == [2])
        #expect(GroupMagnitude.top(3, of: [9, 1, 8, 2]) == [0, 2, 3])
    }

    @Test func queryHeadSelectionSlicesTheRightRowsAndColumns() throws {
        let dir = TemporaryDirectory()
        let trimmed = try trim("llama-gqa-f32", to: dir.file("out")) { $0.sizes[.heads] = .count(2) }
        let attention = try #require(trimmed.plan.attention[0])
        #expect(attention.kvHeads == [0, 1])
        #expect(attention.queryHeads.allSatisfy { $0.count == 1 })
        let input = try ModelFolder(path: Fixtures.model("llama-gqa-f32"))
        let output = try ModelFolder(path: dir.file("out"))
        let headDim = 16, group = 2, hidden = 64
        // The kept rows of q_proj: head (k, g) is rows (k*group + g)*head_dim ..< +head_dim.
        let rows = zip(attention.kvHeads, attention.queryHeads).flatMap { k, gs in
            gs.flatMap { g in ((k * group + g) * headDim)..<((k * group + g + 1) * headDim) }
        }
        let q = try input.floats("model.layers.0.self_attn.q_proj.weight")
        let qOut = try output.floats("model.layers.0.self_attn.q_proj.weight")
        #expect(qOut.shape == [rows.count, hidden])
        #expect(qOut.values == rows.flatMap { r in q.values[(r * hidden)..<((r + 1) * hidden)] })
        // o_proj keeps the same indices as columns.
        let o = try input.floats("model.layers.0.self_attn.o_proj.weight")
        let oOut = try output.floats("model.layers.0.self_attn.o_proj.weight")
        #expect(oOut.values == (0..<hidden).flatMap { r in rows.map { o.values[r * 64 + $0] } })
        // k/v untouched.
        #expect(try output.floats("model.layers.0.self_attn.k_proj.weight").values == input.floats("model.layers.0.self_attn.k_proj.weight").values)
        let config = try #require(output.config?.json)
        #expect(config["num_attention_heads"]?.intValue == 2)
        #expect(config["num_key_value_heads"]?.intValue == 2)
        #expect(config["head_dim"]?.intValue == 16)
    }

    @Test func kvGroupSelectionTakesWholeGroups() throws {
        let (_, p) = try plan("llama-gqa-f32") { $0.sizes[.kvHeads] = .count(1) }
        for layer in 0..<2 {
            let attention = try #require(p.attention[layer])
            #expect(attention.kvHeads.count == 1)
            #expect(attention.queryHeads == [[0, 1]])
        }
    }

    @Test func scoresAreTheCoupledGroupMagnitude() throws {
        // Recompute FFN channel scores by hand for layer 0 and check the kept set.
        let g = try graph("llama-gqa-f32")
        let model = g.model
        let gate = try model.floats("model.layers.0.mlp.gate_proj.weight")
        let up = try model.floats("model.layers.0.mlp.up_proj.weight")
        let down = try model.floats("model.layers.0.mlp.down_proj.weight")
        let ffn = 96, hidden = 64
        var scores = [Double](repeating: 0, count: ffn)
        for c in 0..<ffn {
            for j in 0..<hidden {
                scores[c] += Double(gate.values[c * hidden + j]) * Double(gate.values[c * hidden + j])
                scores[c] += Double(up.values[c * hidden + j]) * Double(up.values[c * hidden + j])
                scores[c] += Double(down.values[j * ffn + c]) * Double(down.values[j * ffn + c])
            }
        }
        let expected = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }.prefix(48).sorted()
        let (_, p) = try plan("llama-gqa-f32") { $0.sizes[.ffn] = .count(48) }
        #expect(p.ffn[0] == Array(expected))
    }

    @Test func mergeFollowsTheLaCoFormula() throws {
        let dir = TemporaryDirectory()
        _ = try trim("qwen3", to: dir.file("out")) { $0.merges = [[0, 1, 2]] }
        let input = try ModelFolder(path: Fixtures.model("qwen3"))
        let output = try ModelFolder(path: dir.file("out"))
        let name = "model.layers.0.mlp.down_proj.weight"
        let a = try input.floats(name).values
        let b = try input.floats("model.layers.1.mlp.down_proj.weight").values
        let c = try input.floats("model.layers.2.mlp.down_proj.weight").values
        let expected = zip(a, zip(b, c)).map { x, yz in (x + (yz.0 - x)) + (yz.1 - x) }
        #expect(try output.floats(name).values == expected)
        // Norms keep the first layer's values by default.
        #expect(try output.floats("model.layers.0.input_layernorm.weight").values == input.floats("model.layers.0.input_layernorm.weight").values)
        #expect(output.config?.json["num_hidden_layers"]?.intValue == 1)
    }

    @Test func expertsAndRouterRowsFollowTheKeptExperts() throws {
        let dir = TemporaryDirectory()
        let trimmed = try trim("mixtral", to: dir.file("out")) { $0.sizes[.experts] = .count(2) }
        let kept = try #require(trimmed.plan.experts[1])
        let input = try ModelFolder(path: Fixtures.model("mixtral"))
        let output = try ModelFolder(path: dir.file("out"))
        for (new, old) in kept.enumerated() {
            #expect(try output.floats("model.layers.1.block_sparse_moe.experts.\(new).w2.weight").values
                == input.floats("model.layers.1.block_sparse_moe.experts.\(old).w2.weight").values)
        }
        let router = try input.floats("model.layers.1.block_sparse_moe.gate.weight")
        let hidden = router.shape[1]
        #expect(try output.floats("model.layers.1.block_sparse_moe.gate.weight").values
            == kept.flatMap { router.values[($0 * hidden)..<(($0 + 1) * hidden)] })
        #expect(output.config?.json["num_local_experts"]?.intValue == 2)
        #expect(try ModelGraph(model: output).problems.isEmpty)
    }

    @Test func droppingLayersRemapsLayerIndexedConfig() throws {
        let dir = TemporaryDirectory()
        // qwen2-moe: layer 1 is dense (mlp_only_layers = [1]); drop layer 0.
        _ = try trim("qwen2-moe", to: dir.file("out")) { $0.dropLayers = [0] }
        let output = try ModelFolder(path: dir.file("out"))
        let config = try #require(output.config?.json)
        #expect(config["num_hidden_layers"]?.intValue == 2)
        #expect(config["mlp_only_layers"]?.arrayValue?.compactMap(\.intValue) == [0])
        let graph = try ModelGraph(model: output)
        #expect(graph.problems.isEmpty, "\(graph.problems)")
        #expect(output.tensors.contains { $0.info.name == "model.layers.0.mlp.gate_proj.weight" })
        #expect(output.tensors.contains { $0.info.name == "model.layers.1.mlp.experts.0.up_proj.weight" })
    }

    @Test func writesAnExplicitHeadDimWhenTheDefaultWouldChange() throws {
        // mixtral's config says head_dim: null, so the model derives hidden / heads.
        let (g, p) = try plan("mixtral") { $0.sizes[.heads] = .count(2) }
        let trimmed = try TrimmedModel(graph: g, plan: p)
        #expect(trimmed.config.json["head_dim"]?.intValue == g.binding.size("head_dim"))
        #expect(trimmed.configChanges.contains { $0.key == "head_dim" })
    }

    @Test(arguments: [
        ("gpt2", "heads", "not-supported"),
        ("bert", "heads", "not-supported"),
        ("llama-gqa-f32", "heads3", "gqa-heads-not-divisible"),
        ("llama-gqa-f32", "kv3", "count-out-of-range"),
        ("mixtral", "experts1", "top-k-exceeds-experts"),
        ("llama-gqa-f32", "drop9", "layer-out-of-range"),
        ("llama-gqa-f32", "dropall", "all-layers-dropped"),
        ("llama-gqa-f32", "mergegap", "bad-merge"),
        ("llama-gqa-f32", "mergedrop", "bad-merge"),
        ("llama-gqa-f32", "experts", "not-supported"),
        ("llama-gqa-f32", "ffn0", "count-out-of-range"),
    ])
    func refusesWhatTheOutputCannotRepresent(_ name: String, _ what: String, _ rule: String) throws {
        #expect {
            _ = try plan(name) { request in
                switch what {
                case "heads": request.sizes[.heads] = .count(2)
                case "heads3": request.sizes[.heads] = .count(3)
                case "kv3": request.sizes[.kvHeads] = .count(3)
                case "experts1": request.sizes[.experts] = .count(1)
                case "drop9": request.dropLayers = [9]
                case "dropall": request.dropLayers = [0, 1]
                case "mergegap": request.merges = [[0, 2]]
                case "mergedrop": request.merges = [[0, 1]]; request.dropLayers = [1]
                case "experts": request.sizes[.experts] = .count(2)
                default: request.sizes[.ffn] = .count(500)
                }
            }
        } throws: { error in
            (error as? TrimError)?.rule == rule && !"\(error)".contains("\n")
        }
    }

    @Test func dryRunPlansTheSameShapesWithoutReadingWeights() throws {
        let g = try graph("qwen2-moe")
        var request = TrimRequest()
        request.sizes[.experts] = .count(2)
        request.sizes[.ffn] = .ratio(0.5)
        request.sizes[.heads] = .count(2)
        var dry = TrimPlanner(graph: g, scores: false)
        var real = TrimPlanner(graph: g)
        let a = try TrimmedModel(graph: g, plan: try dry.plan(request))
        let b = try TrimmedModel(graph: g, plan: try real.plan(request))
        #expect(a.items.map(\.entry) == b.items.map(\.entry))
        #expect(a.sizes == b.sizes)
        let summary = TrimSummary(b, indicesAreFinal: true)
        #expect(summary.parametersAfter < summary.parametersBefore)
        #expect(summary.json["plan"]?.objectMembers != nil)
    }

    @Test func partialKeepListsAreRefusedRatherThanShrinkingEveryLayer() throws {
        let g = try graph("llama-gqa-f32")
        var explicit = TrimPlan()
        explicit.ffn = [0: Array(0..<48)]  // layer 1 would keep all 96
        var planner = TrimPlanner(graph: g)
        let plan = try planner.plan(TrimRequest(), explicit: explicit)
        #expect {
            _ = try TrimmedModel(graph: g, plan: plan)
        } throws: { error in
            (error as? TrimError)?.rule == "uneven-counts" && "\(error)".contains("layer 1: 96") && "\(error)".contains("intermediate_size")
        }
    }

    @Test func keepListsMustFitTheLayerTheyName() throws {
        let g = try graph("qwen2-moe")  // layer 1 is dense, 0 and 2 are MoE
        var ffnOnMoE = TrimPlan()
        ffnOnMoE.ffn = [0: [0, 1]]
        var expertsOnDense = TrimPlan()
        expertsOnDense.experts = [1: [0, 1]]
        var partialExperts = TrimPlan()
        partialExperts.experts = [0: [0, 1], 2: [0, 1]]
        partialExperts.expertFFN = [0: [0: [1, 2]]]  // expert 1 of layer 0 missing
        for explicit in [ffnOnMoE, expertsOnDense, partialExperts] {
            #expect {
                var planner = TrimPlanner(graph: g)
                _ = try planner.plan(TrimRequest(), explicit: explicit)
            } throws: { error in
                (error as? TrimError)?.rule == "bad-keep-list"
            }
        }
    }

    @Test func aDenseFFNCountWithNoDenseLayerLeftIsRefused() throws {
        #expect {
            _ = try plan("qwen2-moe") { $0.dropLayers = [1]; $0.sizes[.ffn] = .count(32) }
        } throws: { error in
            (error as? TrimError)?.rule == "not-supported" && "\(error)".contains("--expert-ffn")
        }
    }

    @Test func shardIndexCountsTheTrimmedParameters() throws {
        let dir = TemporaryDirectory()
        let (g, p) = try plan("llama-gqa-f32") { $0.sizes[.ffn] = .count(48) }
        let trimmed = try TrimmedModel(graph: g, plan: p)
        try CheckpointWriter(input: g.model, output: dir.file("out"), options: .init(maxShardSize: 50_000), items: trimmed.items, config: trimmed.config).run()
        let index = try JSONParser.parse(try readBytes(dir.file("out/model.safetensors.index.json")))
        let output = try ModelFolder(path: dir.file("out"))
        #expect(index["metadata"]?["total_parameters"]?.uint64Value == output.parameterCount)
        #expect(output.parameterCount < g.model.parameterCount)
    }

    @Test func refusesNegativeOrAbsurdConfigSizes() throws {
        let dir = TemporaryDirectory()
        let folder = dir.file("m")
        try FileSystem.makeDirectory(folder)
        try FileSystem.copyFile(Fixtures.model("mixtral") + "/model.safetensors", to: folder + "/model.safetensors")
        for (key, value) in [("num_hidden_layers", -1), ("num_local_experts", 1_000_000_000)] {
            var config = try JSONParser.parse(try readBytes(Fixtures.model("mixtral") + "/config.json"))
            config.set(key, to: .integer(value))
            try? FileSystem.removeTree(folder + "/config.json")
            try writeBytes(Array(config.serialized().utf8), to: folder + "/config.json")
            #expect {
                _ = try ModelGraph(model: try ModelFolder(path: folder))
            } throws: { error in
                (error as? GraphError)?.rule == "axis-inconsistent"
            }
        }
    }

    @Test func layerByLayerPlanningWritesWhatEagerPlanningWrites() throws {
        for (name, edit) in [
            ("llama-gqa-f32", { (r: inout TrimRequest) in r.sizes[.heads] = .count(2); r.sizes[.ffn] = .ratio(0.5) }),
            ("qwen2-moe", { (r: inout TrimRequest) in r.sizes[.ffn] = .ratio(0.5); r.sizes[.kvHeads] = .count(1); r.dropLayers = [1] }),
            ("qwen3", { (r: inout TrimRequest) in r.merges = [[0, 1]]; r.sizes[.ffn] = .count(40) }),
        ] as [(String, (inout TrimRequest) -> Void)] {
            let dir = TemporaryDirectory()
            let g = try graph(name)
            var request = TrimRequest()
            edit(&request)
            #expect(LayerByLayerPlan.applies(to: request, explicit: TrimPlan()))
            var eagerPlanner = TrimPlanner(graph: g)
            let eager = try TrimmedModel(graph: g, plan: try eagerPlanner.plan(request))
            try CheckpointWriter(input: g.model, output: dir.file("eager"), options: .init(), items: eager.items, config: eager.config).run()
            var dryPlanner = TrimPlanner(graph: g, scores: false)
            let layout = try TrimmedModel(graph: g, plan: try dryPlanner.plan(request))
            let lazy = LayerByLayerPlan(graph: g, request: request, explicit: TrimPlan(), layout: layout)
            try CheckpointWriter(input: g.model, output: dir.file("lazy"), options: .init(), items: layout.items, config: layout.config, selectionSource: lazy).run()
            #expect(try readBytes(dir.file("eager/model.safetensors")) == readBytes(dir.file("lazy/model.safetensors")), "\(name)")
            #expect(try lazy.finish() == eager.plan)
        }
    }
}
