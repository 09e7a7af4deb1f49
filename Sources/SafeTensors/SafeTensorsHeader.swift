import OrderedJSON
import Tensors

/// A validated safetensors header: the tensors in data order, and the `__metadata__` map.
///
/// Validation enforces every rule of the reference implementation (see the case list of
/// `SafeTensorsError`) plus one it lacks: a tensor named twice is rejected rather than
/// silently shadowed.
public struct SafeTensorsHeader: Sendable, Equatable {
    /// The largest header the reference implementation accepts.
    public static let maximumHeaderLength: UInt64 = 100_000_000

    /// Tensors sorted by their data offsets, which is the order of their bytes in the file.
    public var tensors: [TensorInfo]
    /// `__metadata__` entries in header order; `nil` when the header has none.
    public var metadata: [(key: String, value: String)]?
    /// Bytes taken by the 8-byte length and the JSON text, i.e. where the data section starts.
    public var dataStart: Int

    public static func == (lhs: SafeTensorsHeader, rhs: SafeTensorsHeader) -> Bool {
        lhs.tensors == rhs.tensors && lhs.dataStart == rhs.dataStart
            && lhs.metadata?.map(\.key) == rhs.metadata?.map(\.key)
            && lhs.metadata?.map(\.value) == rhs.metadata?.map(\.value)
    }

    public init(tensors: [TensorInfo], metadata: [(key: String, value: String)]?, dataStart: Int) {
        self.tensors = tensors
        self.metadata = metadata
        self.dataStart = dataStart
    }

    /// Parses and validates the header of a whole file held in `file`.
    ///
    /// Only the first `8 + N` bytes are touched (N being the declared header length), so
    /// calling this on a mapping reads no tensor data.
    public static func parse(file: UnsafeRawBufferPointer, path: String) throws(SafeTensorsError) -> SafeTensorsHeader {
        let fileSize = file.count
        guard fileSize >= 8 else { throw .fileTooSmall(path: path, size: fileSize) }
        let declared = UInt64(littleEndian: file.loadUnaligned(as: UInt64.self))
        guard declared <= maximumHeaderLength else { throw .headerTooLarge(path: path, declared: declared) }
        let headerLength = Int(declared)
        guard 8 + headerLength <= fileSize else {
            throw .headerOutOfBounds(path: path, declared: declared, fileSize: fileSize)
        }
        let text = UnsafeRawBufferPointer(rebasing: file[8..<(8 + headerLength)])
        guard isValidUTF8(text) else { throw .headerNotUTF8(path: path) }

        // Each entry becomes a TensorInfo as it is read: the header is never a whole JSON
        // tree, which for a million tensors cost several times the header's size. An entry's
        // error waits until the text is known to be JSON, so a syntax error anywhere still
        // comes first, as when the tree was built first.
        var tensors: [TensorInfo] = []
        var metadata: [(key: String, value: String)]?
        var sawMetadata = false
        var entryError: SafeTensorsError?
        let isObject: Bool
        do {
            isObject = try JSONParser.forEachMember(text) { name, value in
                guard entryError == nil else { return }
                do throws(SafeTensorsError) {
                    if name == "__metadata__" {
                        guard !sawMetadata else {
                            throw .metadataNotStringMap(path: path, problem: "the header has two __metadata__ entries")
                        }
                        sawMetadata = true
                        // The reference reads a null __metadata__ as no metadata.
                        metadata = value.isNull ? nil : try parseMetadata(value, path: path)
                    } else {
                        tensors.append(try parseEntry(name: name, value, path: path))
                    }
                } catch {
                    entryError = error
                }
            }
        } catch {
            throw .headerNotJSON(path: path, reason: error.description)
        }
        guard isObject else { throw .headerNotObject(path: path) }
        // A name given twice is looked for once the entries are read, in a table of
        // positions rather than a set of names; the first problem in header order wins, as
        // if each entry had been checked as it was read.
        if let second = firstRepeatedName(tensors) { throw .duplicateTensor(path: path, tensor: tensors[second].name) }
        if let entryError { throw entryError }

        // The reference sorts by offsets: header order is free, byte order is not.
        tensors.sort { ($0.dataOffsets.lowerBound, $0.dataOffsets.upperBound) < ($1.dataOffsets.lowerBound, $1.dataOffsets.upperBound) }
        var expectedStart: UInt64 = 0
        for tensor in tensors {
            let start = tensor.dataOffsets.lowerBound, end = tensor.dataOffsets.upperBound
            guard start == expectedStart else {
                throw .offsetsNotContiguous(path: path, tensor: tensor.name, start: start, end: end, expectedStart: expectedStart)
            }
            expectedStart = end
            guard let elements = Shape.elementCount(tensor.shape) else {
                throw .shapeOverflow(path: path, tensor: tensor.name, shape: tensor.shape)
            }
            switch tensor.dtype.byteCount(elements: elements) {
            case .overflow:
                throw .shapeOverflow(path: path, tensor: tensor.name, shape: tensor.shape)
            case .partialByte(let bits):
                throw .spanMismatch(
                    path: path, tensor: tensor.name, dtype: tensor.dtype, shape: tensor.shape,
                    span: end - start, detail: "holds \(bits) bits, not a whole number of bytes")
            case .bytes(let bytes):
                guard bytes == end - start else {
                    throw .spanMismatch(
                        path: path, tensor: tensor.name, dtype: tensor.dtype, shape: tensor.shape,
                        span: end - start, detail: "needs \(bytes) bytes")
                }
            }
        }
        let dataSize = UInt64(fileSize - 8 - headerLength)
        guard expectedStart == dataSize else {
            throw .dataSizeMismatch(path: path, dataSize: dataSize, lastOffset: expectedStart)
        }
        return SafeTensorsHeader(tensors: tensors, metadata: metadata, dataStart: 8 + headerLength)
    }

    /// The position of the first entry whose name an earlier entry already has, found with
    /// an open-addressing table of positions (4 bytes a slot).
    static func firstRepeatedName(_ tensors: [TensorInfo]) -> Int? {
        guard tensors.count > 1 else { return nil }
        var capacity = 1
        while capacity < 2 * tensors.count { capacity <<= 1 }
        var slots = [Int32](repeating: -1, count: capacity)
        let mask = capacity - 1
        for (k, tensor) in tensors.enumerated() {
            var slot = tensor.name.hashValue & mask
            while slots[slot] >= 0 {
                if tensors[Int(slots[slot])].name == tensor.name { return k }
                slot = (slot + 1) & mask
            }
            slots[slot] = Int32(k)
        }
        return nil
    }

    private static func parseMetadata(_ value: JSONValue, path: String) throws(SafeTensorsError) -> [(key: String, value: String)] {
        guard let members = value.objectMembers else {
            throw .metadataNotStringMap(path: path, problem: "it is not an object")
        }
        var result: [(key: String, value: String)] = []
        var keys = Set<String>()
        for (key, item) in members {
            guard let string = item.stringValue else {
                throw .metadataNotStringMap(path: path, problem: "the value of '\(key)' is not a string")
            }
            guard keys.insert(key).inserted else {
                throw .metadataNotStringMap(path: path, problem: "the key '\(key)' appears twice")
            }
            result.append((key, string))
        }
        return result
    }

    private static func parseEntry(name: String, _ value: JSONValue, path: String) throws(SafeTensorsError) -> TensorInfo {
        func malformed(_ problem: String) -> SafeTensorsError {
            .malformedEntry(path: path, tensor: name, problem: problem)
        }
        guard let members = value.objectMembers else { throw malformed("the entry is not an object") }
        var dtypeValue: JSONValue?, shapeValue: JSONValue?, offsetsValue: JSONValue?
        var fields = Set<String>()
        for (key, item) in members {
            guard fields.insert(key).inserted else { throw malformed("the field '\(key)' appears twice") }
            switch key {
            case "dtype": dtypeValue = item
            case "shape": shapeValue = item
            case "data_offsets": offsetsValue = item
            default: continue  // the reference ignores extra fields, so pare does too
            }
        }
        guard let dtypeValue else { throw malformed("the entry has no dtype") }
        guard let dtypeName = dtypeValue.stringValue else { throw malformed("dtype is not a string") }
        guard let shapeItems = shapeValue?.arrayValue else {
            throw malformed(shapeValue == nil ? "the entry has no shape" : "shape is not an array")
        }
        var shape: [UInt64] = []
        shape.reserveCapacity(shapeItems.count)
        for item in shapeItems {
            guard let dimension = item.uint64Value else {
                throw malformed("shape holds \(item.serialized()), not a non-negative integer")
            }
            shape.append(dimension)
        }
        guard let offsetItems = offsetsValue?.arrayValue else {
            throw malformed(offsetsValue == nil ? "the entry has no data_offsets" : "data_offsets is not an array")
        }
        guard offsetItems.count == 2, let start = offsetItems[0].uint64Value, let end = offsetItems[1].uint64Value else {
            throw malformed("data_offsets must be two non-negative integers [start, end]")
        }
        guard let dtype = DType(rawValue: dtypeName) else {
            throw .unknownDType(path: path, tensor: name, dtype: dtypeName)
        }
        if end < start {
            throw .offsetsNotContiguous(path: path, tensor: name, start: start, end: end, expectedStart: start)
        }
        return TensorInfo(name: name, dtype: dtype, shape: shape, dataOffsets: start..<end)
    }

    /// Whether the bytes are UTF-8, checked without making a string of them.
    private static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var iterator = bytes.makeIterator()
        var decoder = UTF8()
        while true {
            switch decoder.decode(&iterator) {
            case .scalarValue: continue
            case .emptyInput: return true
            case .error: return false
            }
        }
    }
}
