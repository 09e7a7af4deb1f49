import OrderedJSON
import Testing

@testable import ModelGraph

/// `AxisBinding` against the descriptor schema of `formats/README.md` and the contracts in
/// its doc comments. Descriptors and configs are JSON text written here; axes are named
/// by their vocabulary literals (`size("kv_heads")`).
@Suite struct AxisBindingTests {
    static let path = "/models/under-test"

    /// The one place a binding is made: from a descriptor's and a config's JSON text.
    static func bind(descriptor: String, config: String) throws -> AxisBinding {
        let parsed = try ArchitectureDescriptor.decode(Array(descriptor.utf8), source: "test.json")
        return try AxisBinding(descriptor: parsed, config: try JSONParser.parse(config), path: path)
    }

    /// A descriptor's text from its `axes` (and optional `flags` and `layer_kinds`) objects.
    static func descriptor(axes: String, flags: String = "{}", layerKinds: String = "{}") -> String {
        """
        {"version": 1, "family": "test", "model_types": ["test"], "axes": \(axes),
         "flags": \(flags), "layer_kinds": \(layerKinds), "tensors": [{"name": "scalar", "shape": [], "role": "buffer"}]}
        """
    }

    /// The error binding throws, or `nil` with a recorded issue.
    static func bindingError(_ descriptor: String, _ config: String) -> GraphError? {
        do {
            _ = try bind(descriptor: descriptor, config: config)
            Issue.record("binding succeeded where it should fail")
            return nil
        } catch let error as GraphError {
            return error
        } catch {
            Issue.record("unexpected error \(error)")
            return nil
        }
    }

    /// Llama-like attention axes.
    static let attention = descriptor(axes: """
        {"hidden": {"keys": ["hidden_size", "n_embd"]},
         "heads": {"keys": ["num_attention_heads", "n_head"]},
         "kv_heads": {"keys": ["num_key_value_heads"], "default": "heads"},
         "group": {"value": "heads / kv_heads"},
         "head_dim": {"keys": ["head_dim"], "default": "hidden / heads"},
         "layers": {"keys": ["num_hidden_layers", "n_layer"]}}
        """)

    // MARK: Keys

    @Test(arguments: [
        // (config, expected hidden, key it came from)
        (#"{"hidden_size": 64, "n_embd": 32}"#, 64, "hidden_size"),
        (#"{"n_embd": 32, "hidden_size": 64}"#, 64, "hidden_size"),  // descriptor order, not config order
        (#"{"n_embd": 32}"#, 32, "n_embd"),
        (#"{"hidden_size": null, "n_embd": 32}"#, 32, "n_embd"),  // null counts as absent
    ])
    func keysAreTriedInOrder(hiddenKeys: String, hidden: Int, source: String) throws {
        let config = #"{"num_attention_heads": 4, "num_hidden_layers": 2, "#
            + hiddenKeys.dropFirst()
        let binding = try Self.bind(descriptor: Self.attention, config: config)
        #expect(binding.size("hidden") == hidden)
        #expect(binding.sources["hidden"] == source)
        #expect(binding.size("head_dim") == hidden / 4)
    }

    @Test func aRepeatedConfigKeyCountsByItsLastValue() throws {
        // As Python's json.load reads a config.json with a key written twice.
        let config = #"{"hidden_size": 32, "num_attention_heads": 4, "num_hidden_layers": 1, "hidden_size": 64}"#
        let binding = try Self.bind(descriptor: Self.attention, config: config)
        #expect(binding.size("hidden") == 64)
        #expect(binding.size("head_dim") == 16)
    }

    @Test func readsZeroAsASize() throws {
        let d = Self.descriptor(axes: #"{"experts": {"keys": ["num_experts"], "default": "8"}}"#)
        let binding = try Self.bind(descriptor: d, config: #"{"num_experts": 0}"#)
        #expect(binding.size("experts") == 0)
        #expect(binding.sources["experts"] == "num_experts")
    }

    // MARK: Defaults and computed axes

    @Test(arguments: [
        #"{"hidden_size": 64, "num_attention_heads": 8, "num_hidden_layers": 2}"#,
        #"{"hidden_size": 64, "num_attention_heads": 8, "num_hidden_layers": 2, "num_key_value_heads": null, "head_dim": null}"#,
    ])
    func defaultsApplyWhenAKeyIsAbsentOrNull(config: String) throws {
        let binding = try Self.bind(descriptor: Self.attention, config: config)
        #expect(binding.size("kv_heads") == 8)  // default "heads"
        #expect(binding.size("group") == 1)  // 8 / 8
        #expect(binding.size("head_dim") == 8)  // 64 / 8
        // Defaults and computed axes come from no key.
        #expect(binding.sources["kv_heads"] == nil)
        #expect(binding.sources["head_dim"] == nil)
        #expect(binding.sources["group"] == nil)
        #expect(binding.sources["heads"] == "num_attention_heads")
    }

    @Test func configValuesWinOverDefaults() throws {
        let config = #"{"hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 32, "num_hidden_layers": 3}"#
        let binding = try Self.bind(descriptor: Self.attention, config: config)
        #expect(binding.size("kv_heads") == 2)
        #expect(binding.size("group") == 4)
        #expect(binding.size("head_dim") == 32)  // not 64 / 8
        #expect(binding.sources["head_dim"] == "head_dim")
        #expect(binding.layerCount == 3)
    }

    @Test func computedAxesDoNotReadTheConfig() throws {
        // "group" has no keys: a config member of that name is not its size.
        let config = #"{"hidden_size": 64, "num_attention_heads": 8, "num_key_value_heads": 2, "group": 7, "num_hidden_layers": 1}"#
        let binding = try Self.bind(descriptor: Self.attention, config: config)
        #expect(binding.size("group") == 4)
        #expect(binding.sources["group"] == nil)
    }

    @Test func computedAxesResolveInDependencyOrderWhateverTheirNames() throws {
        // experts = ffn * 2, ffn = hidden / 3, hidden = positions * 3 (its key is absent),
        // positions from the config: each depends on one that sorts after it.
        let d = Self.descriptor(axes: """
            {"experts": {"value": "ffn * 2"}, "ffn": {"value": "hidden / 3"}, "hidden": {"keys": ["c_size"], "default": "positions * 3"},
             "positions": {"keys": ["d_size"]}, "vocab": {"value": "experts * ffn * 5 / positions"}}
            """)
        let binding = try Self.bind(descriptor: d, config: #"{"d_size": 7}"#)
        #expect(binding.size("positions") == 7)
        #expect(binding.size("hidden") == 21)
        #expect(binding.size("ffn") == 7)
        #expect(binding.size("experts") == 14)
        #expect(binding.size("vocab") == 14 * 7 * 5 / 7)
        #expect(binding.size(.tokenTypes) == nil)
    }

    @Test(arguments: [
        // (expression, heads, expected): products and exact quotients, left to right.
        ("heads * 3 / 2", 4, 6),
        ("4*heads", 5, 20),
        ("heads/2*3", 6, 9),
        ("12", 1, 12),
        ("heads", 9, 9),
    ])
    func expressionsEvaluateLeftToRight(expression: String, heads: Int, expected: Int) throws {
        let d = Self.descriptor(axes: """
            {"heads": {"keys": ["n"]}, "ffn": {"value": "\(expression)"}}
            """)
        #expect(try Self.bind(descriptor: d, config: #"{"n": \#(heads)}"#).size("ffn") == expected)
    }

    // MARK: Errors

    @Test(arguments: [
        // (hidden, heads, kv_heads, axis that cannot be computed)
        (100, 3, 3, "head_dim"),  // 100 / 3
        (48, 6, 4, "group"),  // 6 / 4 (head_dim 48 / 6 is exact)
        (64, 4, 0, "group"),  // 4 / 0
        (64, 8, 2, nil),  // all exact: no error
    ] as [(Int, Int, Int, String?)])
    func inexactDivisionIsAnErrorNamingTheAxis(hidden: Int, heads: Int, kvHeads: Int, axis: String?) throws {
        let config = #"{"hidden_size": \#(hidden), "num_attention_heads": \#(heads), "num_key_value_heads": \#(kvHeads), "num_hidden_layers": 1}"#
        guard let axis else {
            _ = try Self.bind(descriptor: Self.attention, config: config)
            return
        }
        let error = try #require(Self.bindingError(Self.attention, config))
        guard case .axisInvalid(let path, let named, let expression, let problem) = error else {
            Issue.record("expected axisInvalid, got \(error)")
            return
        }
        #expect(named == axis)
        #expect(path == Self.path)
        #expect(expression == (axis == "group" ? "heads / kv_heads" : "hidden / heads"))
        #expect(problem.contains("divisible"))
        #expect(error.rule == "axis-inconsistent")
        #expect(error.description.contains("'\(axis)'"))
    }

    @Test(arguments: [#"64.0"#, #"6.4e1"#, #"64.5"#, #""64""#, "true", "[64]", #"{"n": 64}"#])
    func aNonIntegerConfigValueIsAnErrorNamingTheKey(value: String) throws {
        // The first key is absent, the second holds the bad value: the error names it.
        let config = #"{"n_embd": \#(value), "num_attention_heads": 4, "num_hidden_layers": 1}"#
        let error = try #require(Self.bindingError(Self.attention, config))
        #expect(error == .configNotInteger(path: Self.path, key: "n_embd"))
        #expect(error.rule == "config-not-integer")
        #expect(error.description.contains("'n_embd'"))
    }

    @Test(arguments: [-1, 1 << 41])
    func anUnusableSizeIsAnErrorNamingTheAxis(value: Int) throws {
        let config = #"{"hidden_size": 64, "num_attention_heads": \#(value), "num_hidden_layers": 1}"#
        let error = try #require(Self.bindingError(Self.attention, config))
        guard case .axisInvalid(_, let axis, let expression, _) = error else {
            Issue.record("expected axisInvalid, got \(error)")
            return
        }
        #expect(axis == "heads")
        #expect(expression == "num_attention_heads")
    }

    @Test func aMissingSizeWithoutDefaultNamesTheAxisAndItsKeys() throws {
        // No hidden size under either key (one of them null).
        let config = #"{"hidden_size": null, "num_attention_heads": 4, "num_hidden_layers": 1}"#
        let error = try #require(Self.bindingError(Self.attention, config))
        #expect(error == .configMissing(path: Self.path, axis: "hidden", keys: ["hidden_size", "n_embd"]))
        #expect(error.rule == "config-missing-size")
    }

    /// An expression naming an axis the descriptor does not define is caught when the
    /// descriptor is read, before any config.
    @Test(arguments: [#"{"ffn": {"value": "hidden * 2"}}"#, #"{"ffn": {"keys": ["f"], "default": "hidden"}}"#])
    func anUndefinedAxisIsADescriptorError(axes: String) throws {
        let error = try #require(Self.bindingError(Self.descriptor(axes: axes), #"{"f": 1}"#))
        #expect(error.rule == "descriptor")
        #expect("\(error)".contains("'axes.ffn' uses axis 'hidden', which the descriptor does not define"))
    }

    @Test(arguments: [
        // (axes, axes the error may name): a cycle resolves no size.
        (#"{"ffn": {"value": "hidden"}, "hidden": {"value": "ffn * 2"}, "vocab": {"keys": ["c"]}}"#, ["ffn", "hidden"]),
    ])
    func anUnresolvableDependencyIsAnErrorNamingTheAxis(axes: String, candidates: [String]) throws {
        let error = try #require(Self.bindingError(Self.descriptor(axes: axes), #"{"c": 1}"#))
        guard case .axisInvalid(let path, let axis, _, let problem) = error else {
            Issue.record("expected axisInvalid, got \(error)")
            return
        }
        #expect(path == Self.path)
        #expect(candidates.contains(axis), "named \(axis)")
        #expect(problem.contains("cannot be resolved"))
    }

    @Test func anOverflowingProductIsAnErrorNamingTheAxis() throws {
        let d = Self.descriptor(axes: #"{"heads": {"keys": ["a"]}, "kv_heads": {"keys": ["b"]}, "ffn": {"value": "heads * kv_heads"}}"#)
        let error = try #require(Self.bindingError(d, #"{"a": 1099511627776, "b": 1099511627776}"#))
        guard case .axisInvalid(_, let axis, let expression, _) = error else {
            Issue.record("expected axisInvalid, got \(error)")
            return
        }
        #expect(axis == "ffn")
        #expect(expression == "heads * kv_heads")
    }

    @Test func aMalformedExpressionIsADescriptorError() throws {
        let d = Self.descriptor(axes: #"{"hidden": {"keys": ["h"]}, "ffn": {"value": "hidden + 1"}}"#)
        let error = try #require(Self.bindingError(d, #"{"h": 4}"#))
        #expect(error.rule == "descriptor")
        guard case .descriptorInvalid(let source, _) = error else {
            Issue.record("expected descriptorInvalid, got \(error)")
            return
        }
        #expect(source == "test.json")
    }

    // MARK: Flags

    @Test(arguments: [
        // (config member, default, expected)
        (#""tie_word_embeddings": true"#, false, true),
        (#""tie_word_embeddings": false"#, true, false),
        (#""other": true"#, false, false),  // absent: the default
        (#""other": true"#, true, true),
        (#""tie_word_embeddings": null"#, true, true),  // null: the default
        (#""tie_word_embeddings": null"#, false, false),
    ])
    func flagsReadTheirKeyOrTheirDefault(member: String, defaultValue: Bool, expected: Bool) throws {
        let d = Self.descriptor(
            axes: #"{"layers": {"keys": ["num_hidden_layers"]}}"#,
            flags: #"{"tied": {"key": "tie_word_embeddings", "default": \#(defaultValue)}}"#)
        let binding = try Self.bind(descriptor: d, config: #"{"num_hidden_layers": 1, \#(member)}"#)
        #expect(binding.flags["tied"] == expected)
        #expect(binding.flags.count == 1)
    }

    // MARK: Layer kinds

    /// Qwen2-MoE's sparse layers, as `formats/qwen2_moe.json` declares them.
    static let moe = descriptor(
        axes: """
            {"layers": {"keys": ["num_hidden_layers"]}, "experts": {"keys": ["num_experts"], "default": "0"}}
            """,
        layerKinds: """
            {"sparse": {"exclude_list": "mlp_only_layers", "step": "decoder_sparse_step", "requires": "experts"}}
            """)

    /// The rule of formats/README.md, written out: layer l is sparse when it is not in
    /// `mlp_only_layers`, (l + 1) is a multiple of `decoder_sparse_step` (1 when absent, as
    /// in transformers' Qwen2MoeConfig) and there are experts.
    static func naiveSparse(layer l: Int, excluded: [Int], step: Int?, experts: Int) -> Bool {
        !excluded.contains(l) && (l + 1) % (step ?? 1) == 0 && experts > 0
    }

    @Test(arguments: [
        // (excluded, step, experts): nil leaves the key out of the config
        ([], 1, 60),
        ([], nil, 60),
        ([], 2, 60),
        ([], 3, 4),
        ([0, 3], 1, 8),
        ([1], 2, 8),
        ([0, 1, 2, 3, 4, 5, 6, 7], 1, 8),
        ([2], 1, 0),  // no experts: no sparse layer
        ([], 1, nil),  // experts absent: default 0
    ] as [([Int], Int?, Int?)])
    func qwen2MoESparseLayersFollowTheRule(excluded: [Int], step: Int?, experts: Int?) throws {
        var members = [#""num_hidden_layers": 8"#, #""mlp_only_layers": [\#(excluded.map(String.init).joined(separator: ", "))]"#]
        if let step { members.append(#""decoder_sparse_step": \#(step)"#) }
        if let experts { members.append(#""num_experts": \#(experts)"#) }
        let binding = try Self.bind(descriptor: Self.moe, config: "{" + members.joined(separator: ", ") + "}")
        #expect(binding.layerCount == 8)
        for layer in 0..<8 {
            let expected = Self.naiveSparse(layer: layer, excluded: excluded, step: step, experts: experts ?? 0)
            #expect(binding.layer(layer, isOfKind: "sparse") == expected, "layer \(layer)")
            // A tensor filtered "!sparse" lives exactly in the other layers.
            #expect(binding.admits(.init(kind: "sparse", negated: true), layer: layer) == !expected)
            #expect(binding.admits(.init(kind: "sparse", negated: false), layer: layer) == expected)
            #expect(binding.admits(nil, layer: layer))
        }
    }

    @Test func theQwen2MoEFixtureSpellingIsHonoured() throws {
        // Hand-worked: 6 layers, step 2 -> layers 1, 3, 5 are candidates; 3 is excluded.
        let config = """
            {"num_hidden_layers": 6, "decoder_sparse_step": 2, "mlp_only_layers": [3], "num_experts": 4}
            """
        let binding = try Self.bind(descriptor: Self.moe, config: config)
        #expect((0..<6).filter { binding.layer($0, isOfKind: "sparse") } == [1, 5])
    }

    @Test func anUnknownKindHasNoLayers() throws {
        let binding = try Self.bind(descriptor: Self.moe, config: #"{"num_hidden_layers": 2, "num_experts": 4}"#)
        #expect(binding.layer(0, isOfKind: "sparse"))
        #expect(!binding.layer(0, isOfKind: "dense"))
        #expect(!binding.layer(1, isOfKind: "Sparse"))
    }
}
