import Emit
import ModelFolder
import ModelGraph
import SafeTensors

/// Why a sparsify request was refused, before anything is written.
public enum SparsifyError: Error, Sendable {
    case badRegex(option: String, pattern: String, reason: String)
    case noTargets(reason: String)
    case notGroupable(tensor: String, inputSize: Int, m: Int)
    /// The output layout cannot hold the pattern or a target.
    case layout(LayoutError)
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
        case .layout(let error): return error.rule
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
        case .layout(let error): return error.description
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
        case .statsNeeded:
            return "--score wanda needs --stats FILE: a safetensors file with one F32 tensor '<weight name>\(SparsifyRequest.statsSuffix)' per target, holding the L2 norm of each input channel's activations"
        case .statsUnused:
            return "--stats is only read by --score wanda; add --score wanda or drop --stats"
        case let .statsMissing(path, tensor):
            return "\(path): no tensor '\(tensor)\(SparsifyRequest.statsSuffix)', which --score wanda needs for \(tensor)"
        case let .statsMismatch(path, tensor, problem):
            return "\(path): '\(tensor)\(SparsifyRequest.statsSuffix)' \(problem)"
        case .layout, .stats, .graph, .input:
            return ""
        }
    }
}
