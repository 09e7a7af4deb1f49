import PareFormat
import SafeTensors
import Tensors

/// Why a model folder could not be read.
public enum ModelFolderError: Error, Sendable, Equatable {
    case notFound(path: String)
    case notAModel(path: String)
    case noWeights(path: String)
    case unreadableWeights(path: String, format: String)
    case unlistedSafeTensors(path: String, index: String)
    case ambiguousWeights(path: String, files: [String])
    case configNotJSON(path: String, reason: String)
    case configNotObject(path: String)
    case missingShard(path: String, index: String)
    case safeTensors(SafeTensorsError)
    case pare(PareError)
    case io(FileError)
    case uncopyableFile(path: String, reason: String)
    /// A symlink in the folder resolves outside it (and `--follow-symlinks` was not given).
    case symlinkOutside(link: String, target: String)

    /// The stable identifier of the rule that failed, as in `[rule: ...]`.
    public var rule: String {
        switch self {
        case .notFound: return "not-found"
        case .notAModel: return "not-a-model"
        case .noWeights: return "no-weights"
        case .unreadableWeights: return "unreadable-weights"
        case .unlistedSafeTensors: return "index-unlisted-file"
        case .ambiguousWeights: return "ambiguous-weights"
        case .configNotJSON, .configNotObject: return "config-json"
        case .missingShard: return "index-missing-shard"
        case .safeTensors(let error): return error.rule
        case .pare(let error): return error.rule
        case .io: return "io"
        case .uncopyableFile: return "uncopyable-file"
        case .symlinkOutside: return "symlink-outside"
        }
    }
}

extension ModelFolderError: CustomStringConvertible {
    /// One sentence naming the file (and tensor) and the rule.
    public var description: String {
        switch self {
        case .safeTensors(let error): return error.description
        case .pare(let error): return error.description
        case .io(let error): return error.description
        default: return "\(sentence) [rule: \(rule)]"
        }
    }

    private var sentence: String {
        switch self {
        case let .notFound(path):
            return "\(path): no such file or folder"
        case let .notAModel(path):
            return "\(path): not a model folder: a model folder has config.json and weights (.safetensors or .pare) at its top level; pare also reads a single .safetensors or .pare file, or a model.safetensors.index.json or model.pare.index.json"
        case let .noWeights(path):
            return "\(path): the folder holds no .safetensors or .pare weights"
        case let .unreadableWeights(path, format):
            return "\(path): pare cannot read \(format) weights; convert them to safetensors first or move the file out of the folder (pare never drops weights silently)"
        case let .unlistedSafeTensors(path, index):
            return "\(path): this weight file is not listed in \(index); move it out of the folder or add it to the index (pare never drops weights silently)"
        case let .ambiguousWeights(path, files):
            return "\(path): several weight files without an index (\(files.joined(separator: ", "))); add a model.safetensors.index.json (model.pare.index.json for .pare files) or keep one file"
        case let .configNotJSON(path, reason):
            return "\(path): not valid JSON (\(reason))"
        case let .configNotObject(path):
            return "\(path): config.json must hold a JSON object"
        case let .missingShard(path, index):
            return "\(path): \(index) lists this shard, but it is not a readable file"
        case let .safeTensors(error):
            return error.description
        case let .pare(error):
            return error.description
        case let .io(error):
            return error.description
        case let .uncopyableFile(path, reason):
            return "\(path): \(reason); pare copies every file of a model folder and will not skip one silently — remove or fix it"
        case let .symlinkOutside(link, target):
            return "\(link) is a symlink to \(target), outside the model folder; pare reads nothing outside the folder it is given (a downloaded folder could otherwise carry your files into its outputs) — give --follow-symlinks if you trust it"
        }
    }
}
