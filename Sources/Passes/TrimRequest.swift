/// What a user asks a trim to do, before indices are chosen: counts and ratios, or explicit
/// layers. `TrimPlanner` resolves it against a model into a `TrimPlan`.
public struct TrimRequest: Sendable, Equatable {
    /// A new size: an absolute count, or a fraction of the current one.
    public enum Size: Sendable, Equatable, CustomStringConvertible {
        case count(Int)
        case ratio(Double)

        /// Parses `6144` or `0.75`.
        public init?(_ text: String) {
            if let n = Int(text), n > 0 {
                self = .count(n)
            } else if let r = Double(text), r > 0, r <= 1 {
                self = .ratio(r)
            } else {
                return nil
            }
        }

        /// The kept count out of `size`: a ratio is rounded down, but keeps at least one.
        public func resolve(from size: Int) -> Int {
            switch self {
            case .count(let n): return n
            case .ratio(let r): return max(1, Int((Double(size) * r).rounded(.down)))
            }
        }

        public var description: String {
            switch self {
            case .count(let n): return String(n)
            case .ratio(let r): return String(r)
            }
        }
    }

    /// What a LaCo merge does with norm weights, which are scales rather than updates.
    public enum NormPolicy: String, Sendable, Equatable {
        /// Keep the first layer's norms (the default: averaging scales has no basis in LaCo).
        case first
        /// Apply the merge formula to norms too.
        case merge
    }

    /// Layers to remove, by original index.
    public var dropLayers: [Int] = []
    /// Runs of consecutive layers to merge into their first (LaCo), by original index.
    public var merges: [[Int]] = []
    public var mergeNorms: NormPolicy = .first
    /// Keep this many kv heads (whole GQA groups) per layer.
    public var kvHeads: Int?
    /// Keep this many query heads per layer, the same number inside every kv group.
    public var heads: Int?
    /// The dense FFN size (and, as a ratio, every FFN size the model has).
    public var ffn: Size?
    /// Each routed expert's FFN size (MoE).
    public var expertFFN: Size?
    /// The shared expert's FFN size (Qwen2-MoE).
    public var sharedExpertFFN: Size?
    /// Keep this many routed experts per MoE layer.
    public var experts: Int?

    public init() {}

    public var isEmpty: Bool {
        dropLayers.isEmpty && merges.isEmpty && kvHeads == nil && heads == nil && ffn == nil && expertFFN == nil
            && sharedExpertFFN == nil && experts == nil
    }
}
