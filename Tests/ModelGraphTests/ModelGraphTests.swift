import ModelFolder
import OrderedJSON
import SafeTensors
import Testing
import TestSupport
import Tensors

@testable import ModelGraph

@Suite struct ModelGraphTests {
    /// Copies a fixture so a test can change it.
    func copy(_ name: String, to dir: TemporaryDirectory) throws -> String {
        let target = dir.file(name)
        try FileSystem.makeDirectory(target)
        for file in try FileSystem.list(Fixtures.model(name)) {
            try FileSystem.copyFile(Fixtures.model(name) + "/" + file, to: target + "/" + file)
        }
        return target
    }

    func editConfig(_ folder: String, _ edit: (inout JSONValue) -> Void) throws {
        var config = try JSONParser.parse(try readBytes(folder + "/config.json"))
        edit(&config)
        try FileSystem.removeTree(folder + "/config.json")
        try writeBytes(Array(config.serialized(.pretty).utf8), to: folder + "/config.json")
    }

    @Test(arguments: Fixtures.all)
    func everyFixtureIsConsistentWithItsDescriptor(_ name: String) throws {
        let graph = try ModelGraph(model: try ModelFolder(path: Fixtures.model(name)))
        #expect(graph.problems.isEmpty, "\(graph.problems)")
        #expect(graph.nodes.count == graph.model.tensors.count)
    }

    @Test func bindsGQAAxes() throws {
        let graph = try ModelGraph(model: try ModelFolder(path: Fixtures.model("llama-gqa-f32")))
        #expect(graph.binding.size("heads") == 4)
        #expect(graph.binding.size("kv_heads") == 2)
        #expect(graph.binding.size("group") == 2)
        #expect(graph.binding.size("head_dim") == 16)
        #expect(graph.binding.sources["kv_heads"] == "num_key_value_heads")
        let q = try #require(graph.nodes.first { $0.name == "model.layers.1.self_attn.q_proj.weight" })
        #expect(q.layer == 1 && q.expectedShape == [64, 64])
    }

    @Test func knowsQwen2MoEDenseLayers() throws {
        let graph = try ModelGraph(model: try ModelFolder(path: Fixtures.model("qwen2-moe")))
        // mlp_only_layers = [1] in the fixture.
        #expect(graph.binding.layer(0, isOfKind: "sparse"))
        #expect(!graph.binding.layer(1, isOfKind: "sparse"))
        #expect(graph.nodes.contains { $0.name == "model.layers.1.mlp.gate_proj.weight" })
        #expect(graph.nodes.contains { $0.name == "model.layers.0.mlp.experts.3.up_proj.weight" && $0.expert == 3 })
    }

    @Test func reportsShapesTheConfigContradicts() throws {
        let dir = TemporaryDirectory()
        let folder = try copy("llama-gqa-f32", to: dir)
        try editConfig(folder) { $0.set("num_key_value_heads", to: .integer(1)) }
        let graph = try ModelGraph(model: try ModelFolder(path: folder))
        let mismatched = Set(graph.problems.compactMap { problem -> String? in
            if case .shapeMismatch(let tensor, _, _, _) = problem { return tensor } else { return nil }
        })
        #expect(mismatched == ["model.layers.0.self_attn.k_proj.weight", "model.layers.0.self_attn.v_proj.weight",
                               "model.layers.1.self_attn.k_proj.weight", "model.layers.1.self_attn.v_proj.weight"])
        #expect(graph.problems.allSatisfy { $0.rule == "shape-mismatch" })
        #expect(graph.problems.first?.description.contains("kv_heads*head_dim") == true)
    }

    @Test func reportsUnexpectedAndMissingTensors() throws {
        let dir = TemporaryDirectory()
        let folder = try copy("qwen3", to: dir)
        // Claim one more layer than the weights hold: every tensor of layer 3 is missing.
        try editConfig(folder) { $0.set("num_hidden_layers", to: .integer(4)) }
        let graph = try ModelGraph(model: try ModelFolder(path: folder))
        let missing = graph.problems.filter { $0.rule == "missing-tensor" }
        #expect(missing.count == 11)  // 2 norms + q/k/v/o + q_norm/k_norm + gate/up/down
        #expect(missing.allSatisfy { $0.description.contains("model.layers.3.") })
        // And one fewer: layer 2's tensors are out of range.
        try editConfig(folder) { $0.set("num_hidden_layers", to: .integer(2)) }
        let fewer = try ModelGraph(model: try ModelFolder(path: folder))
        #expect(fewer.problems.count == 11)
        #expect(fewer.problems.allSatisfy { $0.rule == "layer-out-of-range" })
    }

    @Test func refusesAConfigWhoseAxesDoNotDivide() throws {
        let dir = TemporaryDirectory()
        let folder = try copy("llama-gqa-f32", to: dir)
        try editConfig(folder) { $0.set("num_key_value_heads", to: .integer(3)) }
        #expect {
            try ModelGraph(model: try ModelFolder(path: folder))
        } throws: { error in
            (error as? GraphError)?.rule == "axis-inconsistent" && "\(error)".contains("4 is not divisible by 3")
        }
    }

    @Test func refusesAnUnknownModelType() throws {
        let dir = TemporaryDirectory()
        let folder = try copy("bert", to: dir)
        try editConfig(folder) { $0.set("model_type", to: .string("roberta-xl")) }
        #expect {
            try ModelGraph(model: try ModelFolder(path: folder))
        } throws: { error in
            (error as? GraphError)?.rule == "unknown-model-type" && "\(error)".contains("roberta-xl")
        }
    }

    @Test func embeddedDescriptorsMatchFormatsFolder() throws {
        let formats = PathName.parent(Fixtures.root) + "/../../formats"
        let names = try FileSystem.list(formats).filter { $0.hasSuffix(".json") }
        #expect(BuiltinDescriptors.files.map(\.name) == names, "list every formats/*.json in Sources/ModelGraph/BuiltinDescriptors.swift")
        for (name, bytes) in BuiltinDescriptors.files where names.contains(name) {
            #expect(bytes == (try readBytes(formats + "/" + name)), "formats/\(name) is not what the binary embeds")
        }
        #expect(Set(DescriptorRegistry.builtin.modelTypes).isSuperset(of: ["llama", "mistral", "qwen2", "qwen3", "mixtral", "qwen2_moe", "gpt2", "bert"]))
    }

    /// The schema expresses stacked 3-D expert tensors (`experts.gate_up_proj` [E, 2F, H]),
    /// as newer checkpoints store them: a synthetic checkpoint in that layout validates,
    /// and one with the halves the wrong size does not.
    @Test func expressesStackedExpertTensors() throws {
        let descriptorText = """
            {"version": 1, "family": "stacked_moe", "model_types": ["stacked_moe"],
             "axes": {"layers": {"keys": ["num_hidden_layers"]}, "hidden": {"keys": ["hidden_size"]},
                      "experts": {"keys": ["num_experts"]}, "expert_ffn": {"keys": ["moe_intermediate_size"]}},
             "tensors": [
               {"name": "model.layers.{layer}.mlp.experts.gate_up_proj", "shape": ["experts", {"concat": ["expert_ffn", "expert_ffn"]}, "hidden"], "role": "expert.gate_up"},
               {"name": "model.layers.{layer}.mlp.experts.down_proj", "shape": ["experts", "hidden", "expert_ffn"], "role": "expert.down"},
               {"name": "model.layers.{layer}.mlp.router.weight", "shape": ["experts", "hidden"], "role": "router"}
             ]}
            """
        let descriptor = try ArchitectureDescriptor.decode(Array(descriptorText.utf8), source: "test")
        let registry = DescriptorRegistry([descriptor])
        for (ffn, valid) in [(6, true), (5, false)] {
            let dir = TemporaryDirectory()
            try writeBytes(Array(#"{"model_type":"stacked_moe","num_hidden_layers":2,"hidden_size":8,"num_experts":4,"moe_intermediate_size":6}"#.utf8), to: dir.file("config.json"))
            var entries: [SafeTensorsWriter.Entry] = []
            for layer in 0..<2 {
                entries.append(.init(name: "model.layers.\(layer).mlp.experts.gate_up_proj", dtype: .bf16, shape: [4, UInt64(2 * ffn), 8]))
                entries.append(.init(name: "model.layers.\(layer).mlp.experts.down_proj", dtype: .bf16, shape: [4, 8, 6]))
                entries.append(.init(name: "model.layers.\(layer).mlp.router.weight", dtype: .bf16, shape: [4, 8]))
            }
            let writer = try SafeTensorsWriter(path: dir.file("model.safetensors"), entries: entries, metadata: [])
            for entry in entries {
                try [UInt8](repeating: 0, count: entry.byteCount).withUnsafeBytes { try writer.write($0) }
            }
            try writer.finish()
            let graph = try ModelGraph(model: try ModelFolder(path: dir.path), registry: registry)
            #expect(graph.problems.isEmpty == valid, "\(graph.problems)")
            let node = try #require(graph.nodes.first { $0.name == "model.layers.1.mlp.experts.gate_up_proj" })
            #expect(node.expectedShape == [4, 12, 8])
            if case .concat(let parts) = descriptor.tensors[0].shape[1] {
                #expect(parts.map(\.text) == ["expert_ffn", "expert_ffn"])
            } else {
                Issue.record("gate_up_proj's second dimension should be a concatenation")
            }
        }
    }

    @Test func templatesMatchOnlyWholeIndices() {
        let template = TensorTemplate("model.layers.{layer}.mlp.experts.{expert}.w1.weight")
        #expect(template.match("model.layers.12.mlp.experts.3.w1.weight") == [.layer: 12, .expert: 3])
        #expect(template.match("model.layers.01.mlp.experts.3.w1.weight") == nil)
        #expect(template.match("model.layers.x.mlp.experts.3.w1.weight") == nil)
        #expect(template.match("model.layers.1.mlp.experts.3.w1.weight.extra") == nil)
        #expect(template.name(layer: 7, expert: 0) == "model.layers.7.mlp.experts.0.w1.weight")
    }

    @Test func evaluatesAxisExpressions() throws {
        let sizes: [Axis: Int] = ["hidden": 64, "heads": 4, "kv_heads": 2, "group": 2, "head_dim": 16]
        #expect(try AxisExpression("hidden / heads").evaluate { sizes[$0] } == 16)
        #expect(try AxisExpression("kv_heads*group*head_dim").evaluate { sizes[$0] } == 64)
        #expect(try AxisExpression("4*hidden").evaluate { sizes[$0] } == 256)
        #expect(try AxisExpression("kv_heads*group*head_dim").productAxes == ["kv_heads", "group", "head_dim"])
        #expect(try AxisExpression("hidden / heads").productAxes == nil)
        #expect(throws: AxisExpression.EvaluationError.inexactDivision(dividend: 64, divisor: 3)) {
            try AxisExpression("hidden / 3").evaluate { sizes[$0] }
        }
        #expect(throws: AxisExpression.ParseError.self) { try AxisExpression("hidden + 1") }
    }

    @Test func inspectTakesFamilyDefaultsFromTheDescriptor() throws {
        let gpt2 = ModelSummary(try ModelFolder(path: Fixtures.model("gpt2")), registry: .builtin)
        #expect(gpt2.sizes["layers"]! != nil)
        #expect(gpt2.sizes["intermediate_size"]! == 4 * gpt2.sizes["hidden_size"]!!)
        // Mixtral's per-expert size is intermediate_size itself; nothing moves to moe_intermediate_size.
        let mixtral = ModelSummary(try ModelFolder(path: Fixtures.model("mixtral")), registry: .builtin)
        #expect(mixtral.sizes["intermediate_size"]! == 48)
        #expect(mixtral.sizes["moe_intermediate_size"]! == nil)
    }
}
