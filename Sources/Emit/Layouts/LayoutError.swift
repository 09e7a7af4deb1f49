/// Why a layout cannot hold what a sparsify request asks, before anything is written.
public enum LayoutError: Error, Sendable, Equatable {
    case unsupportedDType(tensor: String, dtype: String, format: String, fix: String)
    case formatNeedsPattern(format: String, pattern: String, needed: String)
    case transposedUnsupported(tensor: String, format: String)
    case shapeUnsupported(tensor: String, shape: [UInt64], format: String, reason: String)

    /// The stable identifier of the rule that failed, as in `[rule: ...]`.
    public var rule: String {
        switch self {
        case .unsupportedDType: return "sparsify-dtype"
        case .formatNeedsPattern: return "format-pattern"
        case .transposedUnsupported: return "format-transposed"
        case .shapeUnsupported: return "format-shape"
        }
    }
}

extension LayoutError: CustomStringConvertible {
    /// One sentence naming the tensor and the rule.
    public var description: String { "\(sentence) [rule: \(rule)]" }

    private var sentence: String {
        switch self {
        case let .unsupportedDType(tensor, dtype, format, fix):
            return "\(tensor): the \(format) format cannot hold \(dtype) weights; \(fix)"
        case let .formatNeedsPattern(format, pattern, needed):
            return "the \(format) format holds \(needed) sparsity only, not \(pattern); use --pattern \(needed) or another --format (dense, pare)"
        case let .transposedUnsupported(tensor, format):
            return "\(tensor): a GPT-2 Conv1D weight is stored [in, out], and the \(format) layout is defined for nn.Linear's [out, in]; use --format dense or pare, or leave it out with --ignore"
        case let .shapeUnsupported(tensor, shape, format, reason):
            return "\(tensor): shape \(shape) does not fit the \(format) layout: \(reason)"
        }
    }
}
