import ModelFolder
import OrderedJSON
import SafeTensors
import Testing
import TestSupport

@testable import ModelGraph

/// The descriptor schema is strict: every mistake a new user makes writing one names the
/// file and the key, instead of silently turning a pass on or off.
@Suite struct DescriptorSchemaTests {
    /// A small valid descriptor; each case replaces one piece of it.
    static let valid = """
        {"version": 2, "family": "tiny", "model_types": ["tiny"],
         "axes": {"layers": {"keys": ["num_hidden_layers"]}, "hidden": {"keys": ["hidden_size"]},
                  "heads": {"keys": ["num_attention_heads"]}, "kv_heads": {"keys": ["num_key_value_heads"], "default": "heads"},
                  "group": {"value": "heads / kv_heads"}, "head_dim": {"keys": ["head_dim"], "default": "hidden / heads"}},
         "flags": {"attention_bias": {"key": "attention_bias", "default": false}},
         "tensors": [
           {"name": "model.layers.{layer}.q.weight", "shape": ["kv_heads*group*head_dim", "hidden"], "role": "attention.query"},
           {"name": "model.layers.{layer}.q.bias", "shape": ["kv_heads*group*head_dim"], "role": "attention.query.bias", "required_if": "attention_bias"},
           {"name": "model.layers.{layer}.q_norm.weight", "shape": ["kv_heads*group*head_dim"], "role": "norm", "statistic_over": ["kv_heads", "group"]},
           {"name": "model.norm.weight", "shape": ["hidden"], "role": "norm", "optional_if": "!attention_bias"}
         ],
         "divisible": ["hidden / heads"]}
        """

    func decode(_ text: String) throws(GraphError) -> ArchitectureDescriptor {
        try ArchitectureDescriptor.decode(Array(text.utf8), source: "formats/tiny.json")
    }

    @Test func theValidDescriptorReadsWithTypedFields() throws {
        let d = try decode(Self.valid)
        #expect(d.version == 2)
        #expect(d.axes[.group]?.value?.text == "heads / kv_heads")
        #expect(d.tensors[0].role == .query)
        #expect(d.tensors[1].requiredIf == .init(flag: "attention_bias", negated: false))
        #expect(d.tensors[2].statisticOver == [.kvHeads, .group])
        #expect(d.tensors[3].optionalIf == .init(flag: "attention_bias", negated: true))
        #expect(d.divisible.map(\.text) == ["hidden / heads"])
    }

    @Test(arguments: [
        // (what is replaced, by what, words the message must contain)
        (#""version": 2"#, #""version": 4"#, "'version' is 4"),
        (#""family": "tiny","#, #""family": "tiny", "familly": "x","#, "'familly' is not a key of the schema"),
        (#""heads": {"keys": ["num_attention_heads"]}"#, #""heads": {"keys": ["num_attention_heads"]}, "head": {"keys": ["n"]}"#, "'axes.head' is not a key of the schema"),
        (#""shape": ["kv_heads*group*head_dim", "hidden"]"#, #""shape": ["kv_heads*groups*head_dim", "hidden"]"#, "names 'groups', which is not an axis"),
        (#""shape": ["kv_heads*group*head_dim", "hidden"]"#, #""shape": ["ffn", "hidden"]"#, "uses axis 'ffn', which the descriptor does not define"),
        (#""role": "attention.query"}"#, #""role": "mlp.gate_upp"}"#, "is 'mlp.gate_upp', which is not a role"),
        (#", "role": "attention.query"}"#, "}", "role' is missing"),
        (#""required_if": "attention_bias""#, #""required_if": "use_bias""#, "names flag 'use_bias', which the descriptor does not define"),
        (#""optional_if": "!attention_bias""#, #""optional_if": "!bias""#, "names flag 'bias'"),
        (#""role": "norm", "optional_if": "!attention_bias"}"#, #""role": "norm", "optinal": true}"#, "'tensors[3] (model.norm.weight).optinal' is not a key of the schema"),
        (#""role": "attention.query"}"#, #""role": "attention.query", "layers": "sparse"}"#, "names layer kind 'sparse'"),
        (#""statistic_over": ["kv_heads", "group"]"#, #""statistic_over": ["hidden"]"#, "names axis 'hidden', which none of the tensor's dimensions carries"),
        (#""group": {"value": "heads / kv_heads"}"#, #""group": {"value": "heads / kv_heads", "keys": ["g"]}"#, "has a value and keys or a default"),
        (#""divisible": ["hidden / heads"]"#, #""divisible": ["hidden * heads"]"#, "has no quotient to check"),
        (#""role": "norm", "optional_if": "!attention_bias"}"#, #""role": "norm", "optional": true, "optional_if": "attention_bias"}"#, "more than one of optional"),
        (#""hidden": {"keys": ["hidden_size"]}"#, #""hidden": {"keys": ["hidden_size"]}, "ffn": {"default": "4*hidden"}"#, "needs config keys to read, or a value to compute"),
        (#""role": "attention.query"}"#, #""role": "attention.query", "role": "mlp.up"}"#, "role' appears twice"),
        (#""model.layers.{layer}.q.weight""#, #""model.experts.{expert}.q.weight""#, "has {expert} without {layer}"),
        (#""model.layers.{layer}.q.weight""#, #""model.layers.{block}.q.weight""#, "has a placeholder other than {layer} and {expert}"),
        (#""shape": ["hidden"], "role": "norm""#, #""shape": ["layers"], "role": "norm""#, "is never a tensor dimension"),
        (#""shape": ["hidden"], "role": "norm""#, #""shape": ["-2"], "role": "norm""#, "is not an axis expression"),
        (#""divisible": ["hidden / heads"]"#, #""divisible": ["hidden / heads"], "causal": "no""#, "'causal' must be true or false"),
    ])
    func everyMistakeNamesTheFileAndTheKey(_ original: String, _ replacement: String, _ words: String) throws {
        #expect(Self.valid.contains(original), "the case must edit the valid descriptor")
        let text = Self.valid.replacing(original, with: replacement, maxReplacements: 1)
        #expect {
            _ = try decode(text)
        } throws: { error in
            let message = "\(error)"
            return message.hasPrefix("formats/tiny.json: invalid architecture descriptor") && message.contains(words)
                && message.hasSuffix("[rule: descriptor]")
        }
    }

    @Test func expressionsFollowTheWrittenGrammar() throws {
        // Left to right, * and / at the same precedence: (hidden / heads) * 2.
        let sizes: [Axis: Int] = [.hidden: 64, .heads: 4]
        #expect(try AxisExpression("hidden / heads * 2").evaluate { sizes[$0] } == 32)
        #expect(try AxisExpression("2 * hidden / heads").evaluate { sizes[$0] } == 32)
        #expect(throws: AxisExpression.ParseError.self) { try AxisExpression("(hidden / heads)") }
        #expect(throws: AxisExpression.ParseError.self) { try AxisExpression("hidden /") }
    }

    @Test func solvingTurnsAQuotientAround() throws {
        let group = try AxisExpression("heads / kv_heads")
        let sizes: [Axis: Int] = [.heads: 8, .kvHeads: 2]
        // Two query heads per group with two kv heads kept means four heads in all.
        #expect(group.solve(for: .heads, toEqual: 2, { sizes[$0] }) == 4)
        #expect(group.solve(for: .kvHeads, toEqual: 2, { sizes[$0] }) == 4)
        #expect(group.solve(for: .kvHeads, toEqual: 3, { sizes[$0] }) == nil)  // 8 / 3 is not whole
        #expect(group.solve(for: .hidden, toEqual: 2, { sizes[$0] }) == nil)
    }

    /// A tensor behind `required_if` must be there exactly when its flag holds.
    @Test(arguments: [(true, true, nil), (true, false, "missing-tensor"), (false, true, "tensor-turned-off"), (false, false, nil)] as [(Bool, Bool, String?)])
    func requiredIfGatesATensorBothWays(flag: Bool, present: Bool, rule: String?) throws {
        let registry = DescriptorRegistry([try decode(Self.valid)])
        let dir = TemporaryDirectory()
        let config = #"{"model_type":"tiny","num_hidden_layers":1,"hidden_size":8,"num_attention_heads":2,"num_key_value_heads":1,"head_dim":4,"attention_bias":\#(flag)}"#
        try writeBytes(Array(config.utf8), to: dir.file("config.json"))
        var entries: [SafeTensorsWriter.Entry] = [
            .init(name: "model.layers.0.q.weight", dtype: .f32, shape: [8, 8]),
            .init(name: "model.layers.0.q_norm.weight", dtype: .f32, shape: [8]),
            .init(name: "model.norm.weight", dtype: .f32, shape: [8]),
        ]
        if present { entries.append(.init(name: "model.layers.0.q.bias", dtype: .f32, shape: [8])) }
        let writer = try SafeTensorsWriter(path: dir.file("model.safetensors"), entries: entries, metadata: [])
        for entry in entries { try [UInt8](repeating: 0, count: entry.byteCount).withUnsafeBytes { try writer.write($0) } }
        try writer.finish()
        let graph = try ModelGraph(model: try ModelFolder(path: dir.path), registry: registry)
        #expect(graph.problems.map(\.rule) == (rule.map { [$0] } ?? []), "\(graph.problems)")
    }

    /// Every descriptor pare ships reads under the strict schema and names only roles and
    /// axes of the vocabulary.
    @Test func theBuiltinDescriptorsAreStrictlyValid() throws {
        let registry = DescriptorRegistry.builtin
        #expect(Set(registry.modelTypes).isSuperset(of: ["llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "mixtral", "qwen2_moe", "gpt2", "bert", "olmo2", "gemma2"]))
        for descriptor in registry.descriptors {
            #expect(descriptor.version == 3, "\(descriptor.family)")
        }
    }
}
