import ModelGraph

/// What a user asks a trim to do, before indices are chosen: counts and ratios by axis,
/// or explicit layers. `TrimPlanner` resolves it against a model into a `TrimPlan`.
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

        public var isRatio: Bool {
            if case .ratio = self { return true }
            return false
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

    /// The sizes a request can set, each named after its axis (the recipe key and, with
    /// dashes, the `pare trim` option). `heads` counts query heads in all kv groups
    /// together; the planner turns it into a per-group count.
    public static let axes: [Axis] = [.kvHeads, .heads, .ffn, .expertFFN, .sharedExpertFFN, .experts, .hidden]

    /// Axes that take a count only (a fraction of heads or experts has no clear rounding).
    public static let countOnly: Set<Axis> = [.kvHeads, .heads, .experts]

    /// Layers to remove, by original index.
    public var dropLayers: [Int] = []
    /// Runs of consecutive layers to merge into their first (LaCo), by original index.
    public var merges: [[Int]] = []
    public var mergeNorms: NormPolicy = .first
    /// New sizes by axis (one of `axes`).
    public var sizes: [Axis: Size] = [:]

    public init() {}

    public var isEmpty: Bool { dropLayers.isEmpty && merges.isEmpty && sizes.isEmpty }

    /// The axes whose keep lists a size on `axis` decides: a count of heads or of kv heads
    /// picks kv heads and the query heads inside them; any other axis, itself.
    public static func planAxes(for axis: Axis) -> Set<Axis> {
        axis == .heads || axis == .kvHeads ? [.kvHeads, .group] : [axis]
    }

    /// The count asked for on `axis` (`nil` for none, or for a fraction).
    public func count(_ axis: Axis) -> Int? {
        guard case .count(let n) = sizes[axis] else { return nil }
        return n
    }
}
