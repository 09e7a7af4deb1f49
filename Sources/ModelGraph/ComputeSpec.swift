import OrderedJSON

/// How a family's blocks compute, as a descriptor states it (its `compute` section).
///
/// The executor is assembled from these known pieces; no Swift code names a family. Norms
/// are named by module path (`model.layers.{layer}.input_layernorm`): the module's
/// `.weight` must be a tensor of the descriptor, and its `.bias` is used when the
/// descriptor has one. Linear weights and biases are found by role. Values the config
/// holds are read through `ConfigValue`s (keys tried in order, then a default).
public struct ComputeSpec: Sendable {
    /// A number, string or switch read from config.json.
    public struct ConfigValue<Value: Sendable>: Sendable {
        /// Keys tried in order; the first present and non-null one counts.
        public var keys: [String]
        public var `default`: Value?

        public init(keys: [String] = [], default value: Value? = nil) {
            self.keys = keys
            self.default = value
        }
    }

    /// RMSNorm (`x / rms(x) * w`) or LayerNorm (mean-centred, with bias when the module has one).
    public enum NormKind: String, Sendable, CaseIterable {
        case rms
        case layer
    }

    public struct Norm: Sendable {
        public var kind: NormKind
        public var epsilon: ConfigValue<Double>
        /// Gemma's RMSNorm multiplies by `1 + w`.
        public var unitOffset: Bool
    }

    /// A norm module: the template indices of its weight and (optional) bias.
    public struct NormModule: Sendable, CustomStringConvertible {
        public var module: String
        public var weight: Int
        public var bias: Int?
        public var description: String { module }
    }

    /// Where token positions come from.
    public enum Positions: Sendable {
        /// Rotary embeddings on queries and keys (rotate-half layout).
        case rope(Rope)
        /// A learned table (the `embedding.position` role) added to the token embeddings.
        case learned
    }

    public struct Rope: Sendable {
        public var theta: ConfigValue<Double>
        /// Objects that hold `rope_type` and its parameters: transformers 5 writes
        /// `rope_parameters`, 4.x `rope_scaling`.
        public var parameters: [String]
        public var partialRotaryFactor: ConfigValue<Double>
    }

    public struct Embedding: Sendable {
        /// Multiply token embeddings by sqrt(hidden) (Gemma).
        public var scaleBySqrtHidden: Bool
        /// A norm on the summed embeddings (BERT).
        public var norm: NormModule?
    }

    /// One residual branch: `y = x + norm_out(f(norm_in(x)))`, then `y = norm_sum(y)`.
    /// Pre-norm blocks set `norm_in`; BERT's post-norm blocks set `norm_sum`; Gemma2 and
    /// OLMo2 set `norm_out`.
    public struct Branch: Sendable {
        public var normIn: NormModule?
        public var normOut: NormModule?
        public var normSum: NormModule?
    }

    /// What a query/key norm is taken over.
    public enum QKNormScope: String, Sendable, CaseIterable {
        /// Each head's head_dim vector (Qwen3).
        case head
        /// The projection's whole output (OLMo2).
        case width
    }

    public struct QKNorm: Sendable {
        public var query: NormModule
        public var key: NormModule
        public var over: QKNormScope
    }

    public struct SlidingWindow: Sendable {
        /// The window in tokens (a query sees keys with q - k < window); null or 0 turns it off.
        public var size: ConfigValue<Int>
        /// A switch that must hold for the window to apply (Qwen2's `use_sliding_window`).
        public var enabledBy: ConfigValue<Bool>?
        /// A per-layer list of layer types; when the config has it, the window applies to
        /// the layers whose type is `slidingType`, otherwise to every layer from `firstLayer`.
        public var layerTypes: String?
        public var slidingType: String
        /// Without a layer-type list, the first layer that uses the window (Qwen2's
        /// `max_window_layers` in configs written before `layer_types` existed); 0 when unset.
        public var firstLayer: ConfigValue<Int>?
    }

    public struct Attention: Sendable {
        /// Scores are scaled by `value^-0.5`; without a value, by `head_dim^-0.5`.
        public var scaleBase: ConfigValue<Double>?
        public var qkNorm: QKNorm?
        /// `cap * tanh(score / cap)` before the mask (Gemma2).
        public var logitSoftcap: ConfigValue<Double>?
        public var slidingWindow: SlidingWindow?
    }

    public struct MLP: Sendable {
        /// `down(act(gate(x)) * up(x))` when gated, `down(act(up(x)))` otherwise.
        public var gated: Bool
        public var activation: ConfigValue<String>
    }

    public struct MoE: Sendable {
        /// Whether the top-k routing weights are renormalised to sum to 1 (Mixtral always;
        /// Qwen-MoE by `norm_topk_prob`). The router is a softmax over all experts, then top-k.
        public var renormalize: ConfigValue<Bool>
        /// Experts are gated, with the MLP's activation.
        public var gated: Bool
    }

    /// A config value the executor does not implement: the model is refused, naming it.
    public struct Unsupported: Sendable {
        public var key: String
        /// Refused when the config holds this value (absent means any non-null value).
        public var value: JSONValue?
    }

    public var norm: Norm
    public var positions: Positions
    public var embedding: Embedding
    public var attentionBranch: Branch
    public var mlpBranch: Branch
    public var attention: Attention
    public var mlp: MLP
    public var moe: MoE?
    public var finalNorm: NormModule?
    public var finalLogitSoftcap: ConfigValue<Double>?
    public var unsupported: [Unsupported]
}

extension ComputeSpec.ConfigValue {
    /// The first key present in `config`, read by `read`, or the default. A key holding
    /// null is skipped, except where `nullTurnsOff` (a window size): there it means none.
    func resolve(_ config: JSONValue, nullTurnsOff: Bool = false, _ read: (JSONValue) -> Value?) -> Value? {
        for key in keys {
            guard let v = config[key] else { continue }
            if v.isNull {
                if nullTurnsOff { return nil }
                continue
            }
            return read(v)
        }
        return self.default
    }
}

extension ComputeSpec.ConfigValue where Value == Double {
    public func value(in config: JSONValue) -> Double? { resolve(config) { $0.doubleValue } }
}

extension ComputeSpec.ConfigValue where Value == Int {
    public func value(in config: JSONValue) -> Int? { resolve(config, nullTurnsOff: true) { $0.intValue } }
}

extension ComputeSpec.ConfigValue where Value == Bool {
    public func value(in config: JSONValue) -> Bool? { resolve(config) { $0.boolValue } }
}

extension ComputeSpec.ConfigValue where Value == String {
    public func value(in config: JSONValue) -> String? { resolve(config) { $0.stringValue } }
}
