import SafeTensors
import Tensors

/// Why a model folder could not be read or written.
public enum ModelFolderError: Error, Sendable, Equatable {
    case notFound(path: String)
    case notAModel(path: String)
    case noWeights(path: String)
    case unreadableWeights(path: String, format: String)
    case unlistedSafeTensors(path: String, index: String)
    case ambiguousWeights(path: String, files: [String])
    case configNotJSON(path: String, reason: String)
    case configNotObject(path: String)
    case outputExists(path: String)
    case outputOverlapsInput(input: String, output: String)
    case shardTooLarge(tensor: String, bytes: Int, limit: Int)
    case singleFileNeedsShards(path: String, shards: Int)
    case safeTensors(SafeTensorsError)
    case io(FileError)
    case interrupted
    case uncopyableFile(path: String, reason: String)

    public var rule: String? {
        if case .safeTensors(let error) = self { return error.rule }
        return nil
    }
}

extension ModelFolderError: CustomStringConvertible {
    public var description: String {
        switch self {
        case let .notFound(path):
            return "\(path): no such file or folder"
        case let .notAModel(path):
            return "\(path): not a model folder, a .safetensors file or a model.safetensors.index.json"
        case let .noWeights(path):
            return "\(path): the folder holds no .safetensors weights"
        case let .unreadableWeights(path, format):
            return "\(path): pare cannot read \(format) weights; convert them to safetensors first or move the file out of the folder (pare never drops weights silently)"
        case let .unlistedSafeTensors(path, index):
            return "\(path): this weight file is not listed in \(index); move it out of the folder or add it to the index (pare never drops weights silently)"
        case let .ambiguousWeights(path, files):
            return "\(path): several weight files without an index (\(files.joined(separator: ", "))); add a model.safetensors.index.json or keep one file"
        case let .configNotJSON(path, reason):
            return "\(path): not valid JSON (\(reason))"
        case let .configNotObject(path):
            return "\(path): config.json must hold a JSON object"
        case let .outputExists(path):
            return "\(path): already exists; pass --force to replace it"
        case let .outputOverlapsInput(input, output):
            return "\(output): the output overlaps the input \(input); pare never modifies its input, so write to a separate folder"
        case let .shardTooLarge(tensor, bytes, limit):
            return "tensor '\(tensor)' is \(bytes) bytes, larger than the shard limit of \(limit) bytes; it gets a shard of its own"
        case let .singleFileNeedsShards(path, shards):
            return "\(path): the output needs \(shards) shards under --max-shard-size, but a single .safetensors file was asked for; give a folder as output"
        case let .safeTensors(error):
            return error.description
        case let .io(error):
            return error.description
        case let .uncopyableFile(path, reason):
            return "\(path): \(reason); pare copies every file of a model folder and will not skip one silently — remove or fix it"
        case .interrupted:
            return "interrupted; nothing was written and the input is untouched"
        }
    }
}
