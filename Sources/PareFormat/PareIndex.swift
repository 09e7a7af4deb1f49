import OrderedJSON
import Tensors

/// The JSON index at the end of a `.pare` file: metadata and every tensor's chunks.
struct PareIndex {
    var metadata: [(key: String, value: String)]
    var tensors: [PareTensor]

    /// Renders the index as compact JSON, tensors in file order.
    func rendered() -> [UInt8] {
        let tensorValues: [JSONValue] = tensors.map { tensor in
            var members: [(key: String, value: JSONValue)] = [
                ("name", .string(tensor.name)),
                ("dtype", .string(tensor.dtype.name)),
                ("shape", .array(tensor.shape.map { .integer($0) })),
                ("encoding", .string(tensor.encoding.name)),
            ]
            var parameters: [(key: String, value: JSONValue)] = []
            if case .nm(let pattern) = tensor.encoding {
                parameters += [("n", .integer(pattern.n)), ("m", .integer(pattern.m))]
            }
            if !tensor.streamLevels.isEmpty {
                parameters.append(("stream_levels", .array(tensor.streamLevels.map { .integer($0) })))
            }
            if !parameters.isEmpty { members.append(("parameters", .object(parameters))) }
            members += [
                ("size", .integer(tensor.size)),
                ("crc32c", .integer(tensor.crc32c)),
                ("chunks", .array(tensor.chunks.map { chunk in
                    var fields: [(key: String, value: JSONValue)] = [
                        ("offset", .integer(chunk.offset)), ("length", .integer(chunk.length)),
                        ("elements", .integer(chunk.elements)), ("crc32c", .integer(chunk.crc32c)),
                    ]
                    if tensor.encoding != .raw { fields.append(("streams", .array(chunk.streams.map { .integer($0) }))) }
                    return .object(fields)
                })),
            ]
            return .object(members)
        }
        let root: JSONValue = .object([
            ("format", .string("pare")),
            ("version", .integer(PareFile.version)),
            ("metadata", .object(metadata.map { ($0.key, .string($0.value)) })),
            ("tensors", .array(tensorValues)),
        ])
        return Array(root.serialized(.compact).utf8)
    }

    /// Parses and checks an index against the reader rules, for a file whose index
    /// starts at `indexOffset`.
    static func parse(_ bytes: UnsafeRawBufferPointer, path: String, indexOffset: UInt64) throws(PareError) -> PareIndex {
        func fail(_ tensor: String, _ rule: PareError.Rule, _ detail: String) -> PareError {
            .invalid(path: path, tensor: tensor, rule: rule, detail: detail)
        }
        func fail(_ detail: String) -> PareError { fail("", .indexStructure, detail) }
        let root: JSONValue
        do { root = try JSONParser.parse(bytes) } catch { throw fail("the index is not valid JSON: \(error)") }
        guard root.objectMembers != nil else { throw fail("the index is not a JSON object") }
        guard root["format"]?.stringValue == "pare" else { throw fail("the index lacks \"format\": \"pare\"") }
        guard let version = root["version"]?.intValue else { throw fail("the index lacks an integer \"version\"") }
        guard version == PareFile.version else {
            throw fail("", .version, "the index has version \(version); this reader knows version \(PareFile.version)")
        }
        var metadata: [(key: String, value: String)] = []
        if let members = root["metadata"] {
            guard let pairs = members.objectMembers else { throw fail("\"metadata\" is not an object") }
            for (key, value) in pairs {
                guard let text = value.stringValue else { throw fail("metadata value '\(key)' is not a string") }
                metadata.append((key, text))
            }
        }
        guard let entries = root["tensors"]?.arrayValue else { throw fail("the index lacks a \"tensors\" array") }

        var tensors: [PareTensor] = []
        var names = Set<String>()
        var previousEnd: UInt64 = UInt64(PareFile.headerSize)
        for (position, entry) in entries.enumerated() {
            guard entry.objectMembers != nil, let name = entry["name"]?.stringValue else {
                throw fail("tensor entry \(position) has no \"name\"")
            }
            func field<T>(_ key: String, _ value: T?) throws(PareError) -> T {
                guard let value else { throw fail(name, .indexStructure, "the entry lacks a valid \"\(key)\"") }
                return value
            }
            guard names.insert(name).inserted else { throw fail(name, .duplicateTensor, "the tensor is listed twice") }
            let dtypeName = try field("dtype", entry["dtype"]?.stringValue)
            guard let dtype = DType(rawValue: dtypeName) else { throw fail(name, .unknownDType, "unknown dtype '\(dtypeName)'") }
            let shapeValues = try field("shape", entry["shape"]?.arrayValue)
            var shape: [UInt64] = []
            for value in shapeValues { shape.append(try field("shape", value.uint64Value)) }
            guard let elements = Shape.elementCount(shape), case .bytes(let bytes) = dtype.byteCount(elements: elements) else {
                throw fail(name, .size, "shape \(shape) of \(dtype.name) is not a whole number of bytes that fits in 64 bits")
            }
            let encodingName = try field("encoding", entry["encoding"]?.stringValue)
            let parameters = entry["parameters"]
            if let parameters, parameters.objectMembers == nil { throw fail(name, .indexStructure, "\"parameters\" is not an object") }
            let encoding: PareEncoding
            switch encodingName {
            case "raw": encoding = .raw
            case "bytegroup-zstd": encoding = .byteGroup
            case "bitmask-zstd": encoding = .bitmask
            case "nm-zstd":
                let n = try field("parameters.n", parameters?["n"]?.intValue)
                let m = try field("parameters.m", parameters?["m"]?.intValue)
                guard let pattern = NMPacking.Pattern(n: n, m: m) else {
                    throw fail(name, .indexStructure, "\(n):\(m) is not an N:M pattern with 1 ≤ N < M ≤ 16")
                }
                guard let last = shape.last, last % UInt64(m) == 0 else {
                    throw fail(name, .indexStructure, "nm-zstd with M = \(m) needs a last dimension divisible by \(m), shape is \(shape)")
                }
                encoding = .nm(pattern)
            default:
                throw fail(name, .unknownEncoding, "unknown encoding '\(encodingName)'")
            }
            guard encoding.accepts(dtype) else {
                throw fail(name, .unknownEncoding, "encoding \(encodingName) cannot hold \(dtype.name)")
            }
            let levels = parameters?["stream_levels"]?.arrayValue?.compactMap(\.intValue) ?? []
            let size = try field("size", entry["size"]?.uint64Value)
            guard size == bytes else {
                throw fail(name, .size, "size \(size) is not \(elements) elements × \(dtype.name) = \(bytes) bytes")
            }
            let crc = try field("crc32c", entry["crc32c"]?.uint64Value.flatMap { UInt32(exactly: $0) })
            let chunkValues = try field("chunks", entry["chunks"]?.arrayValue)
            let width = dtype.bitWidth / 8
            var chunks: [PareChunk] = []
            var covered: UInt64 = 0
            for (i, value) in chunkValues.enumerated() {
                guard value.objectMembers != nil else { throw fail(name, .indexStructure, "chunk \(i) is not an object") }
                let chunk = PareChunk(
                    offset: try field("chunks[\(i)].offset", value["offset"]?.uint64Value),
                    length: try field("chunks[\(i)].length", value["length"]?.uint64Value),
                    elements: try field("chunks[\(i)].elements", value["elements"]?.uint64Value),
                    crc32c: try field("chunks[\(i)].crc32c", value["crc32c"]?.uint64Value.flatMap { UInt32(exactly: $0) }),
                    streams: try value["streams"].map { (streams: JSONValue) throws(PareError) -> [UInt64] in
                        var lengths: [UInt64] = []
                        for s in try field("chunks[\(i)].streams", streams.arrayValue) {
                            lengths.append(try field("chunks[\(i)].streams", s.uint64Value))
                        }
                        return lengths
                    } ?? []
                )
                func layout(_ detail: String) -> PareError { fail(name, .chunkLayout, "chunk \(i) \(detail)") }
                guard chunk.offset % 64 == 0 else { throw layout("starts at \(chunk.offset), not a multiple of 64") }
                guard chunk.offset >= previousEnd else {
                    throw layout("starts at \(chunk.offset), before the end of the previous data at \(previousEnd)")
                }
                let (end, overflow) = chunk.offset.addingReportingOverflow(chunk.length)
                guard !overflow, end <= indexOffset else { throw layout("runs past the start of the index at \(indexOffset)") }
                guard chunk.elements > 0 else { throw layout("holds no elements") }
                let (total, over) = covered.addingReportingOverflow(chunk.elements)
                guard !over, total <= elements else { throw layout("runs past the tensor's \(elements) elements") }
                guard chunk.elements * UInt64(dtype.bitWidth) % 8 == 0 else { throw layout("does not end on a byte") }
                // Compressed data can claim any size; a reader allocates per chunk, so a
                // bound keeps a damaged or hostile file from exhausting memory.
                guard chunk.elements * UInt64(dtype.bitWidth) / 8 <= UInt64(PareFile.maximumChunkBytes) else {
                    throw layout("decodes to \(chunk.elements * UInt64(dtype.bitWidth) / 8) bytes, more than the \(PareFile.maximumChunkBytes) a chunk may hold")
                }
                switch encoding {
                case .raw:
                    guard chunk.length == chunk.elements * UInt64(dtype.bitWidth) / 8 else {
                        throw layout("is raw but stores \(chunk.length) bytes for \(chunk.elements) elements")
                    }
                    guard chunk.streams.isEmpty else { throw layout("is raw but lists zstd frames") }
                case .nm(let pattern):
                    guard chunk.elements % UInt64(pattern.m) == 0 else { throw layout("holds \(chunk.elements) elements, not whole groups of \(pattern.m)") }
                    fallthrough
                case .byteGroup, .bitmask:
                    let frames = encoding.frameCount(width: width)
                    guard chunk.streams.count == frames else {
                        throw fail(name, .frameLengths, "chunk \(i) lists \(chunk.streams.count) frames where \(encodingName) has \(frames)")
                    }
                    var sum: UInt64 = 0
                    for s in chunk.streams {
                        let (next, o) = sum.addingReportingOverflow(s)
                        guard !o else { throw fail(name, .frameLengths, "chunk \(i)'s frame lengths overflow") }
                        sum = next
                    }
                    guard sum == chunk.length else {
                        throw fail(name, .frameLengths, "chunk \(i)'s frames add up to \(sum) bytes, not its length \(chunk.length)")
                    }
                }
                covered = total
                previousEnd = end
                chunks.append(chunk)
            }
            guard covered == elements else {
                throw fail(name, .chunkLayout, "the chunks hold \(covered) of the tensor's \(elements) elements")
            }
            tensors.append(PareTensor(
                name: name, dtype: dtype, shape: shape, encoding: encoding, streamLevels: levels,
                size: size, crc32c: crc, chunks: chunks))
        }
        return PareIndex(metadata: metadata, tensors: tensors)
    }
}
