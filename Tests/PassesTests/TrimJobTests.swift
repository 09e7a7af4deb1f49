import Emit
import ModelFolder
import ModelGraph
import OrderedJSON
import SafeTensors
import Testing
import TestSupport
import Tensors

@testable import Passes

/// The trim as one job: what it refuses and warns about before writing, and what it
/// records beside the output.
@Suite struct TrimJobTests {
    /// A Llama checkpoint of zeros with an FFN wide enough for 1 % to be a channel.
    func wideFFNModel(_ dir: TemporaryDirectory) throws -> ModelGraph {
        let config = #"{"model_type":"llama","num_hidden_layers":1,"hidden_size":8,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":4,"intermediate_size":200,"vocab_size":16}"#
        try writeBytes(Array(config.utf8), to: dir.file("config.json"))
        let entries: [SafeTensorsWriter.Entry] = [
            .init(name: "model.embed_tokens.weight", dtype: .f32, shape: [16, 8]),
            .init(name: "model.norm.weight", dtype: .f32, shape: [8]),
            .init(name: "lm_head.weight", dtype: .f32, shape: [16, 8]),
            .init(name: "model.layers.0.input_layernorm.weight", dtype: .f32, shape: [8]),
            .init(name: "model.layers.0.post_attention_layernorm.weight", dtype: .f32, shape: [8]),
            .init(name: "model.layers.0.self_attn.q_proj.weight", dtype: .f32, shape: [8, 8]),
            .init(name: "model.layers.0.self_attn.k_proj.weight", dtype: .f32, shape: [4, 8]),
            .init(name: "model.layers.0.self_attn.v_proj.weight", dtype: .f32, shape: [4, 8]),
            .init(name: "model.layers.0.self_attn.o_proj.weight", dtype: .f32, shape: [8, 8]),
            .init(name: "model.layers.0.mlp.gate_proj.weight", dtype: .f32, shape: [200, 8]),
            .init(name: "model.layers.0.mlp.up_proj.weight", dtype: .f32, shape: [200, 8]),
            .init(name: "model.layers.0.mlp.down_proj.weight", dtype: .f32, shape: [8, 200]),
        ]
        let writer = try SafeTensorsWriter(path: dir.file("model.safetensors"), entries: entries, metadata: [("format", "pt")])
        for entry in entries { try [UInt8](repeating: 0, count: entry.byteCount).withUnsafeBytes { try writer.write($0) } }
        try writer.finish()
        return try ModelGraph(model: try ModelFolder(path: dir.path))
    }

    @Test(arguments: [
        (TrimRequest.Size.count(1), "--ffn 1 keeps 1 of 200 FFN channels, under 1 %"),
        (.count(2), nil),  // 1 % exactly is not under it
        (.ratio(0.004), "--ffn 0.004 keeps 1 of 200 FFN channels, under 1 %"),
    ] as [(TrimRequest.Size, String?)])
    func keepingUnderOnePercentWarns(_ size: TrimRequest.Size, _ warning: String?) throws {
        let dir = TemporaryDirectory()
        var request = TrimRequest()
        request.sizes[.ffn] = size
        let job = try TrimJob(graph: try wideFFNModel(dir), request: request, dryRun: true)
        #expect(job.warnings == (warning.map { [$0] } ?? []))
    }

    @Test func aTrimThatRemovesNothingIsRefused() throws {
        let graph = try ModelGraph(model: try ModelFolder(path: Fixtures.model("llama-gqa-f32")))
        var request = TrimRequest()
        request.sizes[.ffn] = .ratio(1.0)
        request.sizes[.kvHeads] = .count(2)
        #expect {
            _ = try TrimJob(graph: graph, request: request, dryRun: true)
        } throws: { error in
            (error as? TrimError)?.rule == "nothing-removed" && "\(error)".contains("--ffn 1.0 keeps all 96 FFN channels")
        }
        // With another step that removes something, the same size is only a warning.
        request.dropLayers = [1]
        let job = try TrimJob(graph: graph, request: request, dryRun: true)
        #expect(job.warnings.contains { $0.hasPrefix("--ffn 1.0 keeps all 96 FFN channels") })
        #expect(job.warnings.contains { $0.hasPrefix("--kv-heads 2 keeps all 2 kv heads") })
    }

    @Test func provenanceKeepsItsKeysInOrder() throws {
        let graph = try ModelGraph(model: try ModelFolder(path: Fixtures.model("llama-gqa-f32")))
        var request = TrimRequest()
        request.dropLayers = [1]
        let job = try TrimJob(graph: graph, request: request, sparsify: SparsifyStep(pattern: .twoFour))
        let provenance = Provenance(tool: "pare test", input: "in", request: "trim in out --drop-layers 1")
        let files = try job.provenanceFiles(provenance, hasher: TensorHasher(model: graph.model))()
        #expect(files.map(\.name) == ["pare-trim.json"])
        let record = try JSONParser.parse(files[0].bytes)
        #expect(record.objectMembers?.map(\.key) == ["tool", "input", "request", "plan", "sparsify", "input_files", "input_tensors"])
        #expect(record["plan"]?["drop_layers"] == .array([.integer(1)]))
        #expect(record["input_tensors"]?.arrayValue?.count == graph.model.tensors.count)
    }
}
