import Testing

@testable import ModelGraph

/// The `compute` section (schema version 3) is read as strictly as the rest: a mistake names
/// the file and the key.
@Suite struct ComputeSchemaTests {
    static let valid = """
        {"version": 3, "family": "tiny", "model_types": ["tiny"],
         "axes": {"layers": {"keys": ["num_hidden_layers"]}, "hidden": {"keys": ["hidden_size"]}, "ffn": {"keys": ["intermediate_size"]}},
         "tensors": [
           {"name": "model.layers.{layer}.ln.weight", "shape": ["hidden"], "role": "norm"},
           {"name": "model.layers.{layer}.ln.bias", "shape": ["hidden"], "role": "norm"},
           {"name": "model.layers.{layer}.up.weight", "shape": ["ffn", "hidden"], "role": "mlp.up"},
           {"name": "model.layers.{layer}.gate.weight", "shape": ["ffn", "hidden"], "role": "mlp.gate"}
         ],
         "compute": {
           "norm": {"kind": "layer", "epsilon": {"keys": ["eps"], "default": 1e-5}},
           "positions": "rope",
           "rope": {"theta": 500000},
           "attention_branch": {"norm_in": "model.layers.{layer}.ln"},
           "mlp_branch": {"norm_sum": "model.layers.{layer}.ln"},
           "attention": {"sliding_window": {"size": {"keys": ["sliding_window"]}, "enabled_by": {"keys": ["use_sliding_window"], "default": false}}},
           "mlp": {"gated": true, "activation": {"keys": ["hidden_act"], "default": "gelu"}},
           "unsupported": [{"key": "yarn", "value": true}]
         }}
        """

    func decode(_ text: String) throws(GraphError) -> ArchitectureDescriptor {
        try ArchitectureDescriptor.decode(Array(text.utf8), source: "formats/tiny.json")
    }

    @Test func theValidSectionReadsWithTypedFields() throws {
        let c = try #require(try decode(Self.valid).compute)
        #expect(c.norm.kind == .layer && c.norm.epsilon.keys == ["eps"] && c.norm.epsilon.default == 1e-5)
        guard case .rope(let rope) = c.positions else { Issue.record("positions"); return }
        #expect(rope.theta.keys.isEmpty && rope.theta.default == 500000)
        #expect(rope.parameters == ["rope_parameters", "rope_scaling"])
        // The module's bias is found beside its weight.
        #expect(c.attentionBranch.normIn?.weight == 0 && c.attentionBranch.normIn?.bias == 1)
        #expect(c.mlpBranch.normSum?.module == "model.layers.{layer}.ln" && c.mlpBranch.normIn == nil)
        #expect(c.attention.slidingWindow?.enabledBy?.default == false)
        #expect(c.attention.slidingWindow?.slidingType == "sliding_attention")
        #expect(c.mlp.gated && c.mlp.activation.default == "gelu")
        #expect(c.unsupported.map(\.key) == ["yarn"])
    }

    @Test(arguments: [
        (#""version": 3"#, #""version": 2"#, "'compute' needs schema version 3"),
        (#""positions": "rope","#, #""positions": "alibi","#, "'compute.positions' is 'alibi'"),
        (#""kind": "layer""#, #""kind": "batch""#, "'compute.norm.kind' is 'batch'"),
        (#""norm_in": "model.layers.{layer}.ln""#, #""norm_in": "model.layers.{layer}.lm""#, "names module 'model.layers.{layer}.lm', but the descriptor has no tensor"),
        (#""norm_in": "model.layers.{layer}.ln""#, #""norm_in": "model.layers.{layer}.up""#, "whose weight has role 'mlp.up', not 'norm'"),
        (#""default": "gelu""#, #""default": "gelu_10""#, "defaults to 'gelu_10', which the executor does not implement"),
        (#""mlp_branch": {"norm_sum""#, #""mlp_branch": {"norm_post""#, "'compute.mlp_branch.norm_post' is not a key of the schema"),
        (#""rope": {"theta": 500000},"#, #""rope": {"theta": "high"},"#, "'compute.rope.theta' must be a number"),
        (#""rope": {"theta": 500000},"#, "", ""),
        (#""role": "mlp.gate"}"#, #""role": "mlp.down"}"#, "'compute.mlp.gated' is true, but no tensor has a gate role"),
        (#""unsupported": [{"key": "yarn", "value": true}]"#, #""unsupported": [{"value": true}]"#, "'compute.unsupported[0].key' must be a string"),
        (#""attention_branch": {"norm_in": "model.layers.{layer}.ln"},"#, "", "'compute.attention_branch' is missing"),
    ])
    func everyMistakeNamesTheKey(_ original: String, _ replacement: String, _ words: String) throws {
        #expect(Self.valid.contains(original), "the case must edit the valid descriptor")
        let text = Self.valid.replacing(original, with: replacement, maxReplacements: 1)
        if words.isEmpty {
            // Leaving out an optional key is fine.
            _ = try decode(text)
            return
        }
        #expect {
            _ = try decode(text)
        } throws: { error in
            let message = "\(error)"
            return message.hasPrefix("formats/tiny.json: invalid architecture descriptor") && message.contains(words)
        }
    }

    @Test func everyShippedFamilyCanRun() throws {
        for descriptor in DescriptorRegistry.builtin.descriptors {
            #expect(descriptor.version == 3, "\(descriptor.family)")
            #expect(descriptor.compute != nil, "\(descriptor.family) has no compute section")
        }
    }
}
