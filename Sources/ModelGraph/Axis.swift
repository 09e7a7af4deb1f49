/// A named size of a model: the closed vocabulary descriptors write shapes in.
///
/// Names carry meaning to the passes: the trimmer selects indices on `kv_heads` and
/// `group` together (a query head belongs to its kv head's group), scores an expert with
/// every tensor of its `{expert}` instance, and prunes `hidden` across the whole model.
/// A descriptor that names an axis outside this list is refused, so a typo can never
/// silently turn a pass off. What each axis means to each pass is in formats/README.md.
public struct Axis: RawRepresentable, Hashable, Comparable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let rawValue: String

    /// Only names of the vocabulary make an axis.
    public init?(rawValue: String) {
        guard Self.all.contains(where: { $0.rawValue == rawValue }) else { return nil }
        self.rawValue = rawValue
    }

    private init(name: String) { rawValue = name }

    /// A literal of the vocabulary (`"kv_heads"`); any other name is a programming error.
    public init(stringLiteral name: String) {
        guard let axis = Axis(rawValue: name) else { preconditionFailure("'\(name)' is not an axis of the vocabulary") }
        self = axis
    }

    public var description: String { rawValue }
    public static func < (a: Axis, b: Axis) -> Bool { a.rawValue < b.rawValue }

    /// Transformer blocks; `{layer}` in tensor names ranges over it.
    public static let layers = Axis(name: "layers")
    /// The residual stream's width (`hidden_size`).
    public static let hidden = Axis(name: "hidden")
    public static let vocab = Axis(name: "vocab")
    /// Query heads per layer; in GQA families `heads = kv_heads * group`.
    public static let heads = Axis(name: "heads")
    /// Key/value heads per layer: each one owns a group of query heads.
    public static let kvHeads = Axis(name: "kv_heads")
    /// Query heads inside one kv head's group (`heads / kv_heads`).
    public static let group = Axis(name: "group")
    public static let headDim = Axis(name: "head_dim")
    /// Channels of a dense MLP.
    public static let ffn = Axis(name: "ffn")
    /// Routed experts per MoE layer; `{expert}` in tensor names ranges over it.
    public static let experts = Axis(name: "experts")
    /// Channels of each routed expert's MLP.
    public static let expertFFN = Axis(name: "expert_ffn")
    /// Channels of the shared expert's MLP (Qwen2-MoE).
    public static let sharedExpertFFN = Axis(name: "shared_expert_ffn")
    /// Experts the router picks per token (top-k); never a tensor dimension.
    public static let expertsPerToken = Axis(name: "experts_per_token")
    /// Learned absolute positions (GPT-2's `wpe`, BERT's position embeddings).
    public static let positions = Axis(name: "positions")
    /// BERT's token types.
    public static let tokenTypes = Axis(name: "token_types")

    /// The vocabulary.
    public static let all: [Axis] = [
        .layers, .hidden, .vocab, .heads, .kvHeads, .group, .headDim, .ffn, .experts, .expertFFN, .sharedExpertFFN,
        .expertsPerToken, .positions, .tokenTypes,
    ]
}

extension Axis {
    /// Where a selection on the axis is made: once for the model, or per layer.
    public enum Scope: Sendable {
        case model, layer
    }

    /// Axes whose indices `pare trim` selects, in the order a plan resolves them: an axis
    /// chosen inside another (query heads inside kv groups, an expert's channels inside
    /// the kept experts) comes after it.
    public static let prunable: [Axis] = [.kvHeads, .group, .experts, .expertFFN, .ffn, .sharedExpertFFN, .hidden]

    /// Whether selections are made once for the model or per layer.
    public var scope: Scope { self == .hidden ? .model : .layer }

    /// The axis inside each kept index of which this one is selected: query heads are
    /// chosen within each kv group, expert channels within each kept expert.
    public var within: Axis? {
        switch self {
        case .group: return .kvHeads
        case .expertFFN: return .experts
        default: return nil
        }
    }

    /// Whether a tensor-name placeholder ranges over the axis (`{layer}`, `{expert}`):
    /// pruning it removes whole tensors and renumbers the rest.
    public var namesTensors: Bool { self == .layers || self == .experts }

    /// What the axis counts, in the words of a message ("FFN channels").
    public var noun: String {
        switch self {
        case .kvHeads: return "kv heads"
        case .group: return "query heads"
        case .heads: return "query heads"
        case .ffn: return "FFN channels"
        case .expertFFN: return "expert FFN channels"
        case .sharedExpertFFN: return "shared expert FFN channels"
        case .experts: return "experts"
        case .hidden: return "hidden channels"
        default: return rawValue.replacing("_", with: " ")
        }
    }

    /// The `pare trim` option that prunes the axis.
    public var option: String { "--" + rawValue.replacing("_", with: "-") }
}
