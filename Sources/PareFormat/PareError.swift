import Tensors

/// Why a `.pare` file was rejected or could not be written.
///
/// Every case names the file and, where there is one, the tensor; `rule` is a stable
/// identifier from the reader rules of `formats/pare.md` that scripts and tests can match.
public enum PareError: Error, Sendable, Equatable {
    /// The file breaks a rule of the format. `tensor` is empty for file-level rules.
    case invalid(path: String, tensor: String, rule: Rule, detail: String)
    /// A writer was given data its chosen encoding cannot hold.
    case unencodable(path: String, tensor: String, detail: String)
    case io(FileError)

    /// The reader rules of `formats/pare.md`, by stable identifier.
    public enum Rule: String, Sendable {
        case magic, version, flags, reserved
        case footer = "footer-offsets"
        case indexChecksum = "index-crc"
        case indexStructure = "index-structure"
        case duplicateTensor = "duplicate-tensor"
        case unknownDType = "unknown-dtype"
        case unknownEncoding = "unknown-encoding"
        case size
        case chunkLayout = "chunk-layout"
        case frameLengths = "frame-lengths"
        case chunkChecksum = "chunk-crc"
        case frame
        case tensorChecksum = "tensor-crc"
        case padding
    }

    public var rule: String {
        switch self {
        case .invalid(_, _, let rule, _): return rule.rawValue
        case .unencodable: return "unencodable"
        case .io: return "io"
        }
    }
}

extension PareError: CustomStringConvertible {
    /// One sentence naming the file, the tensor and the rule.
    public var description: String {
        switch self {
        case .invalid(let path, let tensor, _, let detail):
            let subject = tensor.isEmpty ? "\(path)" : "\(path): tensor '\(tensor)'"
            return "\(subject): \(detail) [rule: \(rule)]"
        case .unencodable(let path, let tensor, let detail):
            return "\(path): tensor '\(tensor)' cannot be encoded: \(detail) [rule: \(rule)]"
        case .io(let error):
            return "\(error)"
        }
    }
}
