/// Why a model cannot be run, or its input cannot be read. Each message is one sentence.
public enum RuntimeError: Error, Sendable, CustomStringConvertible, Equatable {
    /// The descriptor describes tensors only.
    case noCompute(family: String, source: String)
    case unsupported(what: String)
    case configInvalid(key: String, problem: String)
    /// The checkpoint does not match its descriptor (the graph's first problem).
    case modelInvalid(path: String, problem: String)
    case tensorMissing(name: String)
    case tensorDType(name: String, dtype: String)
    case tensorUnreadable(name: String, problem: String)
    case tokensInvalid(path: String, problem: String)
    case tokenOutOfVocabulary(path: String, sequence: Int, position: Int, id: Int, vocab: Int)
    case sequenceTooLong(path: String, sequence: Int, length: Int, positions: Int)
    case referenceMismatch(problem: String)
    case io(path: String, problem: String)
    /// Ctrl-C or SIGTERM: the run stopped between layers, and removed what it had begun writing.
    case interrupted

    public var description: String {
        switch self {
        case let .noCompute(family, source):
            return "the \(family) descriptor (\(source)) has no 'compute' section, so pare cannot run this family; add one (formats/README.md)"
        case let .unsupported(what):
            return "pare cannot run \(what)"
        case let .configInvalid(key, problem):
            return "config.json: '\(key)' \(problem)"
        case let .modelInvalid(path, problem):
            return "\(path): \(problem)"
        case let .tensorMissing(name):
            return "tensor \(name) is needed to run the model and is not in the checkpoint"
        case let .tensorDType(name, dtype):
            return "tensor \(name) is \(dtype); pare computes from F32, F16 and BF16 weights"
        case let .tensorUnreadable(name, problem):
            return "tensor \(name) could not be read: \(problem)"
        case let .tokensInvalid(path, problem):
            return "\(path): \(problem)"
        case let .tokenOutOfVocabulary(path, sequence, position, id, vocab):
            return "\(path): sequence \(sequence), position \(position) holds id \(id), outside the model's vocabulary of \(vocab)"
        case let .sequenceTooLong(path, sequence, length, positions):
            return "\(path): sequence \(sequence) has \(length) tokens, more than the model's \(positions) learned positions; cut it with --seq-len \(positions)"
        case let .referenceMismatch(problem):
            return "the reference cannot be compared: \(problem)"
        case let .io(path, problem):
            return "\(path): \(problem)"
        case .interrupted:
            return "interrupted; nothing was written"
        }
    }
}
