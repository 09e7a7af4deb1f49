import ModelFolder
import ModelGraph
import OrderedJSON
import Testing
import TestSupport
import SafeTensors
import Tensors

@testable import Passes

/// Hidden-size pruning goes through the same path as every other axis: these tests check
/// what is particular to it (one selection for the whole model, scored on every tensor
/// that carries `hidden`) against sums computed here from the fixture's weights.
@Suite struct HiddenTrimTests {
    func graph(_ name: String) throws -> ModelGraph {
        try ModelGraph(model: try ModelFolder(path: Fixtures.model(name)))
    }


    /// Llama's hidden channel c carries: column c of the embedding, the LM head and every
    /// q/k/v/gate/up weight; row c of every o/down weight; entry c of every norm.
    func llamaScores(_ model: ModelFolder, hidden: Int, layers: [Int]) throws -> [Double] {
        var scores = [Double](repeating: 0, count: hidden)
        func addColumns(_ name: String) throws {
            let (shape, values) = try model.floats(name)
            for r in 0..<shape[0] { for c in 0..<hidden { scores[c] += Double(values[r * hidden + c]) * Double(values[r * hidden + c]) } }
        }
        func addRows(_ name: String) throws {
            let (shape, values) = try model.floats(name)
            for r in 0..<hidden { for c in 0..<shape[1] { scores[r] += Double(values[r * shape[1] + c]) * Double(values[r * shape[1] + c]) } }
        }
        func addEntries(_ name: String) throws {
            let (_, values) = try model.floats(name)
            for c in 0..<hidden { scores[c] += Double(values[c]) * Double(values[c]) }
        }
        try addColumns("model.embed_tokens.weight")
        try addColumns("lm_head.weight")
        try addEntries("model.norm.weight")
        for l in layers {
            for p in ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "mlp.gate_proj", "mlp.up_proj"] {
                try addColumns("model.layers.\(l).\(p).weight")
            }
            try addRows("model.layers.\(l).self_attn.o_proj.weight")
            try addRows("model.layers.\(l).mlp.down_proj.weight")
            try addEntries("model.layers.\(l).input_layernorm.weight")
            try addEntries("model.layers.\(l).post_attention_layernorm.weight")
        }
        return scores
    }

    @Test func keepsTheChannelsWithTheMostWeightAcrossTheWholeModel() throws {
        let g = try graph("llama-gqa-f32")
        var request = TrimRequest()
        request.sizes[.hidden] = .count(40)
        request.dropLayers = [1]  // a dropped layer's weights do not count
        var planner = TrimPlanner(graph: g)
        let plan = try planner.plan(request)
        let scores = try llamaScores(g.model, hidden: 64, layers: [0])
        let expected = Array(scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }.prefix(40)).sorted()
        #expect(plan.hidden == expected)
        // Scored on the surviving layer only: with layer 1 counted the choice differs here.
        let all = try llamaScores(g.model, hidden: 64, layers: [0, 1])
        #expect(Array(all.indices.sorted { all[$0] > all[$1] }.prefix(40)).sorted() != expected)
    }

    @Test func slicesEveryTensorThatCarriesHiddenAndWritesTheConfig() throws {
        let g = try graph("llama-gqa-f32")
        var request = TrimRequest()
        request.sizes[.hidden] = .ratio(0.75)
        var planner = TrimPlanner(graph: g)
        let plan = try planner.plan(request)
        let trimmed = try TrimmedModel(graph: g, plan: plan)
        let kept = try #require(plan.hidden)
        #expect(kept.count == 48)
        #expect(trimmed.sizes[.hidden] == 48)
        #expect(trimmed.config.json["hidden_size"]?.intValue == 48)
        #expect(trimmed.config.json["head_dim"]?.intValue == 16)
        let shapes = Dictionary(uniqueKeysWithValues: trimmed.items.map { ($0.entry.name, $0.entry.shape) })
        #expect(shapes["model.embed_tokens.weight"] == [UInt64(g.binding.size(.vocab)!), 48])
        #expect(shapes["model.layers.0.self_attn.q_proj.weight"] == [64, 48])
        #expect(shapes["model.layers.0.self_attn.o_proj.weight"] == [48, 64])
        #expect(shapes["model.layers.1.mlp.down_proj.weight"] == [48, 96])
        #expect(shapes["model.norm.weight"] == [48])
        // The selection of every one of them is the same kept list, on the hidden side.
        let o = try #require(trimmed.items.first { $0.entry.name == "model.layers.0.self_attn.o_proj.weight" })
        #expect(o.selections?[0] == kept && o.selections?[1] == nil)
        let q = try #require(trimmed.items.first { $0.entry.name == "model.layers.0.self_attn.q_proj.weight" })
        #expect(q.selections?[0] == nil && q.selections?[1] == kept)
    }

    @Test func isPlannedEagerlyNotLayerByLayer() {
        var request = TrimRequest()
        request.sizes[.hidden] = .count(32)
        #expect(!LayerByLayerPlan.applies(to: request, explicit: TrimPlan()))
        request = TrimRequest()
        request.sizes[.ffn] = .count(32)
        #expect(LayerByLayerPlan.applies(to: request, explicit: TrimPlan()))
    }

    @Test(arguments: [
        ("gpt2", 32, "derived-axis-changes"),  // head_dim = hidden / heads
        ("bert", 16, "derived-axis-changes"),
        ("llama-gqa-f32", 50, "config-indivisible"),  // LlamaConfig wants hidden % heads == 0
        ("llama-gqa-f32", 65, "count-out-of-range"),
    ])
    func refusesWhatTheConfigCannotExpress(_ name: String, _ hidden: Int, _ rule: String) throws {
        let g = try graph(name)
        var request = TrimRequest()
        request.sizes[.hidden] = .count(hidden)
        #expect {
            var planner = TrimPlanner(graph: g, scores: false)
            _ = try planner.plan(request)
        } throws: { error in
            (error as? TrimError)?.rule == rule
        }
    }

    @Test func aRecipeAndAPlanCarryHidden() throws {
        let recipe = try Recipe.parse("hidden: 0.5\nplan: {hidden: [3, 1, 2]}", source: "r.yaml")
        #expect(recipe.request.sizes[.hidden] == .ratio(0.5))
        #expect(recipe.plan.hidden == [3, 1, 2])
        var plan = TrimPlan()
        plan.hidden = [0, 5]
        plan.ffn = [1: [2]]
        let json = plan.json.serialized()
        #expect(json.hasSuffix(#""ffn":{"1":[2]},"hidden":[0,5]}"#))
        #expect(try TrimPlan(json: try JSONParser.parse(json), source: "p") == plan)
    }
}

extension HiddenTrimTests {
    /// A computed axis the trim does not select keeps its size: when its expression would
    /// say otherwise, the trim is refused rather than another config count changed to fit.
    @Test func aComputedAxisNoTensorCarriesIsNotSolvedAround() throws {
        let descriptor = """
            {"version": 2, "family": "tiny", "model_types": ["tiny"],
             "axes": {"layers": {"keys": ["num_hidden_layers"]}, "hidden": {"keys": ["hidden_size"]},
                      "heads": {"keys": ["num_attention_heads"]}, "head_dim": {"value": "hidden / heads"}},
             "tensors": [{"name": "model.layers.{layer}.w", "shape": ["hidden", "hidden"], "role": "attention.query"}]}
            """
        let registry = DescriptorRegistry([try ArchitectureDescriptor.decode(Array(descriptor.utf8), source: "tiny.json")])
        let dir = TemporaryDirectory()
        try writeBytes(Array(#"{"model_type":"tiny","num_hidden_layers":1,"hidden_size":8,"num_attention_heads":2}"#.utf8), to: dir.file("config.json"))
        let entry = SafeTensorsWriter.Entry(name: "model.layers.0.w", dtype: .f32, shape: [8, 8])
        let writer = try SafeTensorsWriter(path: dir.file("model.safetensors"), entries: [entry], metadata: [])
        try [UInt8](repeating: 0, count: entry.byteCount).withUnsafeBytes { try writer.write($0) }
        try writer.finish()
        let g = try ModelGraph(model: try ModelFolder(path: dir.path), registry: registry)
        var request = TrimRequest()
        request.sizes[.hidden] = .count(4)
        #expect {
            var planner = TrimPlanner(graph: g, scores: false)
            _ = try planner.plan(request)
        } throws: { error in
            (error as? TrimError)?.rule == "derived-axis-changes" && "\(error)".contains("head_dim")
        }
    }
}
