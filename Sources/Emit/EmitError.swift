import ModelFolder
import PareFormat
import Tensors

/// Why a checkpoint could not be written: refused before anything is written (the
/// destination, the shard layout, a cast the input forbids), or failed while writing.
public enum EmitError: Error, Sendable, Equatable {
    case outputExists(path: String)
    case outputOverlapsInput(input: String, output: String)
    /// The folder the output would go into does not exist.
    case outputFolderMissing(path: String)
    case quantizedCast(path: String)
    case headerTooLarge(shard: String, bytes: Int)
    case singleFileNeedsShards(path: String, shards: Int)
    /// Reading the input failed while its tensors were being written.
    case input(ModelFolderError)
    /// The `.pare` writer failed.
    case pare(PareError)
    case io(FileError)
    case interrupted
    /// A plan finished while writing (see `SelectionSource`) could not be completed.
    case planFailed(reason: String)

    /// The stable identifier of the rule that failed, as in `[rule: ...]`.
    public var rule: String {
        switch self {
        case .outputExists: return "output-exists"
        case .outputOverlapsInput: return "output-overlaps-input"
        case .outputFolderMissing: return "not-found"
        case .singleFileNeedsShards: return "single-file-output"
        case .quantizedCast: return "quantized-cast"
        case .headerTooLarge: return "header-too-large"
        case .input(let error): return error.rule
        case .pare(let error): return error.rule
        case .io: return "io"
        case .interrupted: return "interrupted"
        case .planFailed: return "plan"
        }
    }

    /// Runs file system work, reporting its failure as `.io`.
    static func catchingIO<R>(_ body: () throws(FileError) -> R) throws(EmitError) -> R {
        do { return try body() } catch { throw .io(error) }
    }

    /// Runs work that reads the input, reporting its failure as `.input`.
    static func catchingInput<R>(_ body: () throws(ModelFolderError) -> R) throws(EmitError) -> R {
        do { return try body() } catch { throw .input(error) }
    }
}

extension EmitError: CustomStringConvertible {
    /// One sentence naming the file (and tensor) and the rule.
    public var description: String {
        switch self {
        case .input(let error): return error.description
        case .pare(let error): return error.description
        case .io(let error): return error.description
        case .interrupted: return sentence
        case .planFailed(let reason): return reason
        default: return "\(sentence) [rule: \(rule)]"
        }
    }

    private var sentence: String {
        switch self {
        case let .outputExists(path):
            return "\(path): already exists; pass --force to replace it"
        case let .outputOverlapsInput(input, output):
            return "\(output): the output overlaps the input \(input); pare never modifies its input, so write to a separate folder"
        case let .outputFolderMissing(path):
            return "\(path): no such file or folder"
        case let .headerTooLarge(shard, bytes):
            return "\(shard): its header would be \(bytes) bytes, over the 100,000,000-byte limit readers enforce; use a smaller --max-shard-size so each shard lists fewer tensors"
        case let .quantizedCast(path):
            return "\(path): config.json has a quantization_config; casting would change its scales and break the quantized weights, so --dtype is refused for quantized checkpoints"
        case let .singleFileNeedsShards(path, shards):
            return "\(path): the output needs \(shards) shards under --max-shard-size, but a single .safetensors file was asked for; give a folder as output"
        case .interrupted:
            return "interrupted; nothing was written and the input is untouched"
        case let .planFailed(reason):
            return reason
        case .input, .pare, .io:
            return ""
        }
    }
}
