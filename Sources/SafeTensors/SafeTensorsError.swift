import Tensors

/// Why a safetensors file or index was rejected.
///
/// Every case names the file and, where there is one, the tensor; `rule` is a stable
/// identifier that scripts and tests can match (`pare: error: ... [rule: offsets-contiguous]`).
public enum SafeTensorsError: Error, Sendable, Equatable {
    case fileTooSmall(path: String, size: Int)
    case headerTooLarge(path: String, declared: UInt64)
    case headerOutOfBounds(path: String, declared: UInt64, fileSize: Int)
    case headerNotUTF8(path: String)
    case headerNotJSON(path: String, reason: String)
    case headerNotObject(path: String)
    case malformedEntry(path: String, tensor: String, problem: String)
    case unknownDType(path: String, tensor: String, dtype: String)
    case metadataNotStringMap(path: String, problem: String)
    case duplicateTensor(path: String, tensor: String)
    case offsetsNotContiguous(path: String, tensor: String, start: UInt64, end: UInt64, expectedStart: UInt64)
    case shapeOverflow(path: String, tensor: String, shape: [UInt64])
    case spanMismatch(path: String, tensor: String, dtype: DType, shape: [UInt64], span: UInt64, detail: String)
    case dataSizeMismatch(path: String, dataSize: UInt64, lastOffset: UInt64)
    case io(FileError)

    // Sharded indexes.
    case indexMalformed(path: String, problem: String)
    case indexMissingTensor(path: String, tensor: String, shard: String)
    case indexUnlistedTensor(path: String, tensor: String, shard: String)
    case tensorInTwoShards(tensor: String, first: String, second: String)

    /// The stable identifier of the rule that failed.
    public var rule: String {
        switch self {
        case .fileTooSmall: return "file-too-small"
        case .headerTooLarge: return "header-too-large"
        case .headerOutOfBounds: return "header-out-of-bounds"
        case .headerNotUTF8: return "header-utf8"
        case .headerNotJSON, .headerNotObject: return "header-json"
        case .malformedEntry: return "header-structure"
        case .unknownDType: return "unknown-dtype"
        case .metadataNotStringMap: return "metadata-not-string-map"
        case .duplicateTensor: return "duplicate-tensor"
        case .offsetsNotContiguous: return "offsets-contiguous"
        case .shapeOverflow: return "shape-overflow"
        case .spanMismatch: return "span-mismatch"
        case .dataSizeMismatch: return "data-size"
        case .io: return "io"
        case .indexMalformed: return "index-structure"
        case .indexMissingTensor: return "index-missing-tensor"
        case .indexUnlistedTensor: return "index-unlisted-tensor"
        case .tensorInTwoShards: return "duplicate-tensor"
        }
    }
}

extension SafeTensorsError: CustomStringConvertible {
    /// One sentence naming the file, the tensor and the rule.
    public var description: String {
        "\(sentence) [rule: \(rule)]"
    }

    private var sentence: String {
        switch self {
        case let .fileTooSmall(path, size):
            return "\(path): the file is \(size) bytes, shorter than the 8-byte header length every safetensors file starts with"
        case let .headerTooLarge(path, declared):
            return "\(path): the header length is \(declared) bytes, over the 100,000,000-byte limit"
        case let .headerOutOfBounds(path, declared, fileSize):
            return "\(path): the header length \(declared) runs past the end of the \(fileSize)-byte file"
        case let .headerNotUTF8(path):
            return "\(path): the header is not valid UTF-8"
        case let .headerNotJSON(path, reason):
            return "\(path): the header is not valid JSON (\(reason))"
        case let .headerNotObject(path):
            return "\(path): the header is JSON but not an object"
        case let .malformedEntry(path, tensor, problem):
            return "\(path): tensor '\(tensor)': \(problem)"
        case let .unknownDType(path, tensor, dtype):
            return "\(path): tensor '\(tensor)': unknown dtype '\(dtype)'"
        case let .metadataNotStringMap(path, problem):
            return "\(path): __metadata__ must map strings to strings, but \(problem)"
        case let .duplicateTensor(path, tensor):
            return "\(path): tensor '\(tensor)' is named twice in the header"
        case let .offsetsNotContiguous(path, tensor, start, end, expectedStart):
            if end < start {
                return "\(path): tensor '\(tensor)': data_offsets [\(start), \(end)] end before they start"
            }
            let how = start > expectedStart ? "leaving a gap after" : "overlapping"
            return "\(path): tensor '\(tensor)': data_offsets [\(start), \(end)] start at \(start), \(how) the previous tensor's data, which ends at \(expectedStart); tensors must be packed back to back from offset 0"
        case let .shapeOverflow(path, tensor, shape):
            return "\(path): tensor '\(tensor)': shape \(Shape.describe(shape)) holds more bits than a 64-bit count can hold"
        case let .spanMismatch(path, tensor, dtype, shape, span, detail):
            return "\(path): tensor '\(tensor)': a \(dtype.name) tensor of shape \(Shape.describe(shape)) \(detail), but its data_offsets span \(span) bytes"
        case let .dataSizeMismatch(path, dataSize, lastOffset):
            if dataSize > lastOffset {
                return "\(path): the data section is \(dataSize) bytes but the tensors end at \(lastOffset); \(dataSize - lastOffset) trailing bytes belong to no tensor"
            }
            return "\(path): the tensors end at byte \(lastOffset) of the data section, past its end at \(dataSize) (the file is truncated)"
        case let .io(error):
            return error.description
        case let .indexMalformed(path, problem):
            return "\(path): \(problem)"
        case let .indexMissingTensor(path, tensor, shard):
            return "\(path): the index puts tensor '\(tensor)' in \(shard), but that file does not contain it"
        case let .indexUnlistedTensor(path, tensor, shard):
            return "\(path): \(shard) contains tensor '\(tensor)', which the index does not list"
        case let .tensorInTwoShards(tensor, first, second):
            return "tensor '\(tensor)' is stored in both \(first) and \(second)"
        }
    }
}
