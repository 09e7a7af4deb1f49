import Foundation
import ModelFolder
import ModelGraph
import OrderedJSON
import SafeTensors
import Testing
import TestSupport
import Tensors
@testable import Runtime

func forwardPlan(_ path: String, registry: DescriptorRegistry = .builtin) throws -> ForwardPlan {
    try ForwardPlan(graph: try ModelGraph(model: try ModelFolder(path: path), registry: registry))
}

/// Logits `[tokens, vocab]` of a whole batch.
func logits(_ plan: ForwardPlan, _ batch: TokenBatch, threads: Int = 2, observer: ExecutionObserver? = nil) throws -> [Float] {
    let executor = try Executor(plan: plan, batch: batch, threads: threads)
    executor.observer = observer
    try executor.runToEnd()
    var out = [Float](repeating: 0, count: batch.tokenCount * plan.vocab)
    try executor.logits(rows: 0..<batch.tokenCount, into: &out)
    return out
}

/// Deterministic ids in `0..<vocab`.
func sequences(_ lengths: [Int], vocab: Int, seed: UInt64 = 7) -> [[Int32]] {
    var state = seed
    return lengths.map { n in
        (0..<n).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            return Int32((state >> 33) % UInt64(vocab))
        }
    }
}

@Suite struct ExecutorTests {
    /// A family that exists only as this test's descriptor: llama's weights under other
    /// names, described in JSON alone. It must compute exactly what llama computes.
    @Test func aFamilyMadeOfKnownPiecesNeedsOnlyItsDescriptor() throws {
        let dir = TemporaryDirectory()
        let source = try ModelFolder(path: Fixtures.model("llama-gqa-f32"))
        let rename: [(String, String)] = [
            ("model.embed_tokens", "tok"), ("model.norm", "out_norm"), ("lm_head", "head"),
            ("model.layers.", "blk."), ("input_layernorm", "n1"), ("post_attention_layernorm", "n2"),
            ("self_attn.q_proj", "wq"), ("self_attn.k_proj", "wk"), ("self_attn.v_proj", "wv"), ("self_attn.o_proj", "wo"),
            ("mlp.gate_proj", "w1"), ("mlp.up_proj", "w3"), ("mlp.down_proj", "w2"),
        ]
        func renamed(_ name: String) -> String { rename.reduce(name) { $0.replacingOccurrences(of: $1.0, with: $1.1) } }
        let infos = source.tensors.map(\.info)
        let writer = try SafeTensorsWriter(
            path: dir.file("model.safetensors"), entries: infos.map { .init(name: renamed($0.name), dtype: $0.dtype, shape: $0.shape) },
            metadata: [("format", "pt")])
        for t in source.tensors { try source.shards[t.shard].withBytes(of: t.info) { raw in try? writer.write(raw) } }
        try writer.finish()
        var config = try #require(source.config?.json)
        config.set("model_type", to: .string("pare_test_family"))
        try writeBytes(Array(config.serialized(.pretty).utf8), to: dir.file("config.json"))

        let descriptor = """
            {"version": 3, "family": "pare_test_family", "model_types": ["pare_test_family"],
             "axes": {"layers": {"keys": ["num_hidden_layers"]}, "hidden": {"keys": ["hidden_size"]},
                      "heads": {"keys": ["num_attention_heads"]}, "kv_heads": {"keys": ["num_key_value_heads"]},
                      "group": {"value": "heads / kv_heads"}, "head_dim": {"value": "hidden / heads"},
                      "ffn": {"keys": ["intermediate_size"]}, "vocab": {"keys": ["vocab_size"]}},
             "tensors": [
               {"name": "tok.weight", "shape": ["vocab", "hidden"], "role": "embedding"},
               {"name": "out_norm.weight", "shape": ["hidden"], "role": "norm"},
               {"name": "head.weight", "shape": ["vocab", "hidden"], "role": "lm_head"},
               {"name": "blk.{layer}.n1.weight", "shape": ["hidden"], "role": "norm"},
               {"name": "blk.{layer}.n2.weight", "shape": ["hidden"], "role": "norm"},
               {"name": "blk.{layer}.wq.weight", "shape": ["kv_heads*group*head_dim", "hidden"], "role": "attention.query"},
               {"name": "blk.{layer}.wk.weight", "shape": ["kv_heads*head_dim", "hidden"], "role": "attention.key"},
               {"name": "blk.{layer}.wv.weight", "shape": ["kv_heads*head_dim", "hidden"], "role": "attention.value"},
               {"name": "blk.{layer}.wo.weight", "shape": ["hidden", "kv_heads*group*head_dim"], "role": "attention.output"},
               {"name": "blk.{layer}.w1.weight", "shape": ["ffn", "hidden"], "role": "mlp.gate"},
               {"name": "blk.{layer}.w3.weight", "shape": ["ffn", "hidden"], "role": "mlp.up"},
               {"name": "blk.{layer}.w2.weight", "shape": ["hidden", "ffn"], "role": "mlp.down"}
             ],
             "compute": {
               "norm": {"kind": "rms", "epsilon": {"keys": ["rms_norm_eps"]}},
               "positions": "rope",
               "rope": {"theta": {"keys": ["rope_theta"], "default": 10000}},
               "attention_branch": {"norm_in": "blk.{layer}.n1"},
               "mlp_branch": {"norm_in": "blk.{layer}.n2"},
               "mlp": {"gated": true, "activation": {"keys": ["hidden_act"]}},
               "final_norm": "out_norm"
             }}
            """
        var registry = DescriptorRegistry.builtin
        registry.add(try ArchitectureDescriptor.decode(Array(descriptor.utf8), source: "test"))
        let testPlan = try forwardPlan(dir.path, registry: registry)
        #expect(testPlan.family == "pare_test_family")
        let llama = try forwardPlan(Fixtures.model("llama-gqa-f32"))
        let batch = TokenBatch(sequences: sequences([9, 5], vocab: llama.vocab))
        let expected = try logits(llama, batch)
        // The same operations on the same values. Not compared bit for bit: other tests run
        // alongside change OpenBLAS's thread count, which may change how a product is split.
        let got = try logits(testPlan, batch)
        let worst = zip(got, expected).map { abs($0 - $1) }.max() ?? 0
        #expect(worst / (expected.map(abs).max() ?? 1) < 1e-6, "max difference \(worst)")
    }

    /// Sequences run together never see each other: each one's logits equal its own run.
    @Test(arguments: ["llama-gqa-f32", "gpt2", "qwen2-moe", "gemma2"])
    func sequencesInABatchAreIndependent(_ fixture: String) throws {
        let plan = try forwardPlan(Fixtures.model(fixture))
        let parts = sequences([7, 3, 11], vocab: plan.vocab)
        let together = try logits(plan, TokenBatch(sequences: parts))
        var alone: [Float] = []
        for p in parts { alone += try logits(plan, TokenBatch(sequences: [p])) }
        let worst = zip(together, alone).map { abs($0 - $1) }.max() ?? 0
        let scale = alone.map(abs).max() ?? 1
        #expect(worst / scale < 1e-5, "max difference \(worst) on \(scale)")
    }

    @Test func threadCountsAgree() throws {
        let plan = try forwardPlan(Fixtures.model("qwen3"))
        let batch = TokenBatch(sequences: sequences([12, 12, 5], vocab: plan.vocab))
        let one = try logits(plan, batch, threads: 1), two = try logits(plan, batch, threads: 2)
        let worst = zip(one, two).map { abs($0 - $1) }.max() ?? 0
        #expect(worst / (one.map(abs).max() ?? 1) < 1e-5)
    }

    /// Causal attention: a token's logits do not depend on later tokens.
    @Test func laterTokensDoNotChangeEarlierLogits() throws {
        let plan = try forwardPlan(Fixtures.model("olmo2"))
        let long = sequences([10], vocab: plan.vocab)[0]
        let full = try logits(plan, TokenBatch(sequences: [long]))
        let prefix = try logits(plan, TokenBatch(sequences: [Array(long.prefix(6))]))
        let worst = zip(prefix, full.prefix(prefix.count)).map { abs($0 - $1) }.max() ?? 0
        #expect(worst < 1e-5)
    }

    /// An encoder's attention is bidirectional: changing the last token changes the first one's state.
    @Test func encoderAttentionSeesLaterTokens() throws {
        let plan = try forwardPlan(Fixtures.model("bert"))
        #expect(!plan.causal)
        var ids = sequences([6], vocab: plan.vocab)[0]
        func firstRow(_ ids: [Int32]) throws -> [Float] {
            let e = try Executor(plan: plan, batch: TokenBatch(sequences: [ids]))
            try e.runToEnd()
            return Array(e.final.buffer.prefix(plan.hidden))
        }
        let before = try firstRow(ids)
        ids[5] = (ids[5] + 1) % Int32(plan.vocab)
        #expect(try firstRow(ids) != before)
    }
}

/// Collects what the executor shows.
final class Recorder: ExecutionObserver {
    let points: ObservationPoints
    var layerInputs: [Int: [Float]] = [:]
    var layerOutputs: [Int: [Float]] = [:]
    var linearInputs: [String: (rows: Int, columns: Int, tokens: [Int32]?)] = [:]
    var heads: [Int: (rows: Int, columns: Int)] = [:]
    var ffn: [(layer: Int, expert: Int?, shared: Bool, rows: Int)] = []
    var routers: [(layer: Int, choices: [Int32], weights: [Float], topK: Int)] = []
    var experts: [(layer: Int, expert: Int, tokens: [Int32])] = []
    var calls = 0

    var candidates: [(layer: Int, expert: Int, tokens: [Int32])] = []
    var candidateExperts = 0

    init(_ points: ObservationPoints) { self.points = points }

    func observe(_ o: Observation) {
        calls += 1
        func copy(_ m: Matrix) -> [Float] { (0..<m.rows).flatMap { Array(m.row($0)) } }
        switch o {
        case let .layerInput(l, m): layerInputs[l] = copy(m)
        case let .layerOutput(l, m): layerOutputs[l] = copy(m)
        case let .headOutputs(l, m, _, _): heads[l] = (m.rows, m.columns)
        case let .ffnActivations(l, e, s, _, m): ffn.append((l, e, s, m.rows))
        case let .linearInput(name, tokens, m): linearInputs[name] = (m.rows, m.columns, tokens)
        case let .router(l, _, c, w, k): routers.append((l, c, w, k))
        case let .expertOutput(l, e, t, _): experts.append((l, e, t))
        case let .expertCandidate(l, e, t, _): candidates.append((l, e, t))
        }
    }
}

@Suite struct ObservationTests {
    /// Candidate experts (for NAEE's search) are each token's next experts after its top-k,
    /// run on the side: the logits and every other observation are as without them.
    @Test func candidateExpertsAreRunAsideFromTheForwardPass() throws {
        let plan = try forwardPlan(Fixtures.model("mixtral"))
        let batch = TokenBatch(sequences: sequences([6, 3], vocab: plan.vocab))
        let plain = Recorder([.ffnActivations, .expertOutputs, .router])
        let withCandidates = Recorder([.ffnActivations, .expertOutputs, .router, .expertCandidates])
        withCandidates.candidateExperts = 1
        #expect(try logits(plan, batch, observer: withCandidates) == (try logits(plan, batch, observer: plain)))
        #expect(withCandidates.ffn.count == plain.ffn.count && withCandidates.experts.count == plain.experts.count)
        // One more expert per token and layer, never one of its top-k.
        #expect(withCandidates.candidates.reduce(0) { $0 + $1.tokens.count } == batch.tokenCount * plan.layers)
        for c in withCandidates.candidates {
            let router = try #require(withCandidates.routers.first { $0.layer == c.layer })
            for t in c.tokens {
                let chosen = router.choices[Int(t) * router.topK..<(Int(t) + 1) * router.topK]
                #expect(!chosen.contains(Int32(c.expert)))
            }
        }
    }

    @Test func layerOutputsFeedTheNextLayer() throws {
        let plan = try forwardPlan(Fixtures.model("llama-gqa-f32"))
        let batch = TokenBatch(sequences: sequences([5, 4], vocab: plan.vocab))
        let recorder = Recorder([.layerInput, .layerOutput])
        let plain = try logits(plan, batch)
        #expect(try logits(plan, batch, observer: recorder) == plain)
        #expect(recorder.layerInputs.count == plan.layers && recorder.layerOutputs.count == plan.layers)
        for l in 1..<plan.layers { #expect(recorder.layerInputs[l] == recorder.layerOutputs[l - 1]) }
        #expect(recorder.layerInputs[0]?.count == batch.tokenCount * plan.hidden)
    }

    @Test func linearInputsHeadsAndFFNAreShown() throws {
        let plan = try forwardPlan(Fixtures.model("llama-gqa-f32"))
        let batch = TokenBatch(sequences: sequences([6], vocab: plan.vocab))
        let recorder = Recorder([.linearInputs, .headOutputs, .ffnActivations])
        _ = try logits(plan, batch, observer: recorder)
        // Seven linear weights per layer, each seen with every token.
        #expect(recorder.linearInputs.count == 7 * plan.layers)
        let q = try #require(recorder.linearInputs["model.layers.1.self_attn.q_proj.weight"])
        #expect(q.rows == 6 && q.columns == plan.hidden && q.tokens == nil)
        let down = try #require(recorder.linearInputs["model.layers.0.mlp.down_proj.weight"])
        #expect(down.columns == 96)
        #expect(recorder.heads[0]?.columns == plan.heads * plan.headDim)
        #expect(recorder.ffn.count == plan.layers && recorder.ffn.allSatisfy { $0.expert == nil && $0.rows == 6 })
    }

    @Test func routerChoicesAndExpertOutputsAgree() throws {
        let plan = try forwardPlan(Fixtures.model("qwen2-moe"))
        let batch = TokenBatch(sequences: sequences([8, 5], vocab: plan.vocab))
        let recorder = Recorder([.router, .expertOutputs, .ffnActivations])
        _ = try logits(plan, batch, observer: recorder)
        let moeLayers = (0..<plan.layers).filter { plan.isMoE(layer: $0) }
        #expect(recorder.routers.count == moeLayers.count)
        for r in recorder.routers {
            #expect(r.choices.count == batch.tokenCount * r.topK)
            // Each token's k choices are distinct experts; routed tokens add up.
            for t in 0..<batch.tokenCount { #expect(Set(r.choices[t * r.topK..<(t + 1) * r.topK]).count == r.topK) }
            let routed = recorder.experts.filter { $0.layer == r.layer }.reduce(0) { $0 + $1.tokens.count }
            #expect(routed == batch.tokenCount * r.topK)
        }
        // Qwen2-MoE has a shared expert in every MoE layer.
        #expect(recorder.ffn.filter(\.shared).count == moeLayers.count)
    }

    @Test func unwantedPointsAreNeverCalled() throws {
        let plan = try forwardPlan(Fixtures.model("mixtral"))
        let recorder = Recorder([])
        _ = try logits(plan, TokenBatch(sequences: sequences([4], vocab: plan.vocab)), observer: recorder)
        #expect(recorder.calls == 0)
    }
}

@Suite struct RuntimeErrorTests {
    @Test func idsOutsideTheVocabularyAreRefused() throws {
        let plan = try forwardPlan(Fixtures.model("llama-gqa-f32"))
        #expect(throws: RuntimeError.tokenOutOfVocabulary(path: "input", sequence: 1, position: 2, id: 320, vocab: 320)) {
            try Executor(plan: plan, batch: TokenBatch(sequences: [[1, 2], [3, 4, 320]]))
        }
    }

    @Test func sequencesLongerThanLearnedPositionsAreRefused() throws {
        let plan = try forwardPlan(Fixtures.model("gpt2"))
        #expect(plan.positions == 64)
        #expect(throws: RuntimeError.sequenceTooLong(path: "input", sequence: 0, length: 65, positions: 64)) {
            try Executor(plan: plan, batch: TokenBatch(sequences: sequences([65], vocab: plan.vocab)))
        }
    }

    @Test func aDescriptorWithoutComputeIsNamed() throws {
        let dir = TemporaryDirectory()
        let source = Fixtures.model("llama-gqa-f32")
        try writeBytes(try readBytes(source + "/model.safetensors"), to: dir.file("model.safetensors"))
        var config = try JSONParser.parse(try readBytes(source + "/config.json"))
        config.set("model_type", to: .string("no_compute"))
        try writeBytes(Array(config.serialized().utf8), to: dir.file("config.json"))
        var text = String(decoding: try readBytes(Fixtures.root + "/../../../formats/llama.json"), as: UTF8.self)
        text = text.replacingOccurrences(of: "\"llama\"", with: "\"no_compute\"")
        var json = try JSONParser.parse(Array(text.utf8))
        if case .object(let members) = json { json = .object(members.filter { $0.key != "compute" }) }
        var registry = DescriptorRegistry.builtin
        registry.add(try ArchitectureDescriptor.decode(Array(json.serialized().utf8), source: "test"))
        let graph = try ModelGraph(model: try ModelFolder(path: dir.path), registry: registry)
        #expect(throws: RuntimeError.noCompute(family: "no_compute", source: "formats/no_compute.json")) { try ForwardPlan(graph: graph) }
    }

    @Test func unsupportedConfigValuesAreRefusedByName() throws {
        let dir = TemporaryDirectory()
        let source = Fixtures.model("gpt2")
        try writeBytes(try readBytes(source + "/model.safetensors"), to: dir.file("model.safetensors"))
        var config = try JSONParser.parse(try readBytes(source + "/config.json"))
        config.set("scale_attn_by_inverse_layer_idx", to: .bool(true), appendIfMissing: true)
        try writeBytes(Array(config.serialized().utf8), to: dir.file("config.json"))
        #expect(throws: RuntimeError.unsupported(what: "models with 'scale_attn_by_inverse_layer_idx': true (config.json)")) {
            try forwardPlan(dir.path)
        }
    }

    /// Sliding windows as the config says: by layer type, or, in configs older than
    /// `layer_types`, from `max_window_layers` on.
    @Test func slidingWindowsFollowTheConfig() throws {
        let dir = TemporaryDirectory()
        let source = Fixtures.model("qwen3")
        try writeBytes(try readBytes(source + "/model.safetensors"), to: dir.file("model.safetensors"))
        var config = try JSONParser.parse(try readBytes(source + "/config.json"))
        #expect(try forwardPlan(source).windows == [nil, nil, nil])
        if case .object(let members) = config { config = .object(members.filter { $0.key != "layer_types" }) }
        config.set("use_sliding_window", to: .bool(true))
        config.set("sliding_window", to: .integer(2))
        config.set("max_window_layers", to: .integer(1))
        try writeBytes(Array(config.serialized().utf8), to: dir.file("config.json"))
        #expect(try forwardPlan(dir.path).windows == [nil, 2, 2])
        // Gemma2 alternates by its layer_types list.
        #expect(try forwardPlan(Fixtures.model("gemma2")).windows == [4, nil, 4, nil])
    }

    @Test func aReferenceOfAnotherFamilyOrVocabularyIsRefused() throws {
        let llama = try forwardPlan(Fixtures.model("llama-gqa-f32"))
        let qwen = try forwardPlan(Fixtures.model("qwen3"))
        let batch = TokenBatch(sequences: [[1, 2, 3]])
        #expect(throws: RuntimeError.referenceMismatch(problem: "it is a qwen3 model and the model is llama")) {
            try Evaluation(model: llama, reference: qwen, batch: batch, options: .init(threads: 1, source: "t"))
        }
    }

    @Test func tokenFilesAreCheckedAndWindowed() throws {
        let dir = TemporaryDirectory()
        try writeBytes(Array("[1, 2, 3, 4, 5]\n\n[6, 7]\n".utf8), to: dir.file("ids.jsonl"))
        let file = try TokenFile(path: dir.file("ids.jsonl"))
        #expect(file.sequences == [[1, 2, 3, 4, 5], [6, 7]])
        #expect(file.windows(length: 2, samples: nil) == [[1, 2], [3, 4], [5], [6, 7]])
        #expect(file.windows(length: 2, samples: 3) == [[1, 2], [3, 4], [5]])
        try writeBytes(Array("\n".utf8), to: dir.file("empty.jsonl"))
        #expect(throws: RuntimeError.tokensInvalid(path: dir.file("empty.jsonl"), problem: "holds no tokens")) {
            try TokenFile(path: dir.file("empty.jsonl"))
        }
        try writeBytes(Array("[1, \"a\"]\n".utf8), to: dir.file("bad.jsonl"))
        #expect(throws: RuntimeError.tokensInvalid(path: dir.file("bad.jsonl"), problem: "line 1, item 1 is not an integer token id")) {
            try TokenFile(path: dir.file("bad.jsonl"))
        }
        // A mask drops padding.
        let header = #"{"input_ids":{"dtype":"I64","shape":[2,3],"data_offsets":[0,48]},"attention_mask":{"dtype":"I64","shape":[2,3],"data_offsets":[48,96]}}"#
        var data: [UInt8] = []
        for v: Int64 in [5, 6, 7, 8, 9, 0, 1, 1, 1, 1, 1, 0] { data += withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        try writeBytes(safetensorsBytes(header: header, data: data), to: dir.file("ids.safetensors"))
        #expect(try TokenFile(path: dir.file("ids.safetensors")).sequences == [[5, 6, 7], [8, 9]])
    }

    @Test func quantileInterpolatesLinearly() {
        #expect(Evaluation.quantile([4, 1, 3, 2], 0.5) == 2.5)
        #expect(Evaluation.quantile([0, 10], 0.95) == 9.5)
        #expect(Evaluation.quantile([], 0.5) == nil)
    }
}

@Suite struct TokenWindowTests {
    @Test func seededWindowsAreContiguousSlicesAndRepeatable() {
        let sequences: [[Int32]] = [Array(0..<50), Array(50..<120)]
        let a = TokenWindows.sample(sequences, length: 16, samples: 5, seed: 7)
        #expect(a.count == 5 && a.allSatisfy { $0.count == 16 })
        // Joined end to end: each window is a run of consecutive ids.
        #expect(a.allSatisfy { w in zip(w, w.dropFirst()).allSatisfy { $1 == $0 + 1 } })
        #expect(TokenWindows.sample(sequences, length: 16, samples: 5, seed: 7) == a)
        #expect(TokenWindows.sample(sequences, length: 16, samples: 5, seed: 8) != a)
        #expect(TokenWindows.sample([[1, 2, 3]], length: 16, samples: 5, seed: 7) == [[1, 2, 3]])
    }

    @Test func splitMixMatchesItsReferenceSequence() {
        // The first outputs for seed 0 of the published SplitMix64.
        var g = SplitMix64(seed: 0)
        #expect(g.next() == 0xE220_A839_7B1D_CDAF)
        #expect(g.next() == 0x6E78_9E6A_A1B9_65F4)
    }
}
