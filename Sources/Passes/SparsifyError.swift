import ModelFolder
import ModelGraph
import SafeTensors

/// Why a sparsify request was refused, before anything is written.
public enum SparsifyError: Error, Sendable {
    case badRegex(option: String, pattern: String, reason: String)
    case noTargets(reason: String)
    case notGroupable(tensor: String, inputSize: Int, m: Int)
    case unsupportedDType(tensor: String, dtype: String, format: String, fix: String)
    case formatNeedsPattern(format: String, pattern: String, needed: String)
    case transposedUnsupported(tensor: String, format: String)
    case shapeUnsupported(tensor: String, shape: [UInt64], format: String, reason: String)
    case statsNeeded
    case statsUnused
    case statsMissing(path: String, tensor: String)
    case statsMismatch(path: String, tensor: String, problem: String)
    case stats(SafeTensorsError)
    case graph(GraphError)
    case input(ModelFolderError)

    public var rule: String {
        switch self {
        case .badRegex: return "bad-regex"
        case .noTargets: return "no-targets"
        case .notGroupable: return "nm-groups"
        case .unsupportedDType: return "sparsify-dtype"
        case .formatNeedsPattern: return "format-pattern"
        case .transposedUnsupported: return "format-transposed"
        case .shapeUnsupported: return "format-shape"
        case .statsNeeded, .statsUnused: return "stats-option"
        case .statsMissing: return "stats-missing-tensor"
        case .statsMismatch: return "stats-tensor-shape"
        case .stats(let error): return error.rule
        case .graph(let error): return error.rule
        case .input(let error): return error.rule
        }
    }
}

extension SparsifyError: CustomStringConvertible {
    public var description: String {
        switch self {
        case .stats(let error): return error.description
        case .graph(let error): return error.description
        case .input(let error): return error.description
        default: return "\(sentence) [rule: \(rule)]"
        }
    }

    private var sentence: String {
        switch self {
        case let .badRegex(option, pattern, reason):
            return "\(option) '\(pattern)' is not a regular expression: \(reason)"
        case let .noTargets(reason):
            return "no tensor to sparsify: \(reason)"
        case let .notGroupable(tensor, inputSize, m):
            return "\(tensor): its input dimension has \(inputSize) elements, not a multiple of \(m), so it cannot be cut into groups of \(m); leave it out with --ignore"
        case let .unsupportedDType(tensor, dtype, format, fix):
            return "\(tensor): the \(format) format cannot hold \(dtype) weights; \(fix)"
        case let .formatNeedsPattern(format, pattern, needed):
            return "the \(format) format holds \(needed) sparsity only, not \(pattern); use --pattern \(needed) or another --format (dense, pare)"
        case let .transposedUnsupported(tensor, format):
            return "\(tensor): a GPT-2 Conv1D weight is stored [in, out], and the \(format) layout is defined for nn.Linear's [out, in]; use --format dense or pare, or leave it out with --ignore"
        case let .shapeUnsupported(tensor, shape, format, reason):
            return "\(tensor): shape \(shape) does not fit the \(format) layout: \(reason)"
        case .statsNeeded:
            return "--score wanda needs --stats FILE: a safetensors file with one F32 tensor '<weight name>\(SparsifyRequest.statsSuffix)' per target, holding the L2 norm of each input channel's activations"
        case .statsUnused:
            return "--stats is only read by --score wanda; add --score wanda or drop --stats"
        case let .statsMissing(path, tensor):
            return "\(path): no tensor '\(tensor)\(SparsifyRequest.statsSuffix)', which --score wanda needs for \(tensor)"
        case let .statsMismatch(path, tensor, problem):
            return "\(path): '\(tensor)\(SparsifyRequest.statsSuffix)' \(problem)"
        case .stats, .graph, .input:
            return ""
        }
    }
}
