import Dispatch
import Tensors

/// A `.pare` file opened for reading: the index is parsed and checked, the data is mapped.
///
/// Opening reads the footer and the index only. Each tensor is decoded on demand, its
/// chunks in parallel, and every chunk's stored bytes and the decoded tensor are checked
/// against their CRC-32C, so damaged data is reported (naming the tensor), never returned.
public final class PareFile: Sendable {
    public static let magic: [UInt8] = [0x50, 0x41, 0x52, 0x45, 0x0D, 0x0A, 0x1A, 0x0A]
    public static let version = 1
    static let headerSize = 16
    static let footerSize = 32
    /// Chunk alignment within the file.
    static let alignment = 64
    /// The most bytes one chunk may decode to (256 MiB).
    public static let maximumChunkBytes = 1 << 28

    public let path: String
    public let mapping: MappedFile
    /// Tensors in file order.
    public let tensors: [PareTensor]
    /// The safetensors `__metadata__` the file carries.
    public let metadata: [(key: String, value: String)]
    /// Where the index starts.
    public let indexOffset: UInt64
    private let positions: [String: Int]

    private init(path: String, mapping: MappedFile, index: PareIndex, indexOffset: UInt64) {
        self.path = path
        self.mapping = mapping
        tensors = index.tensors
        metadata = index.metadata
        self.indexOffset = indexOffset
        var positions: [String: Int] = [:]
        for (i, tensor) in index.tensors.enumerated() { positions[tensor.name] = i }
        self.positions = positions
    }

    /// Opens `path`, checking the header, the footer and the index.
    public static func open(path: String) throws(PareError) -> PareFile {
        let mapping: MappedFile
        do { mapping = try MappedFile(path: path) } catch { throw .io(error) }
        func fail(_ rule: PareError.Rule, _ detail: String) -> PareError {
            .invalid(path: path, tensor: "", rule: rule, detail: detail)
        }
        let size = mapping.size
        guard size >= headerSize + footerSize else {
            throw fail(.magic, "the file is \(size) bytes, too short for a .pare header and footer")
        }
        let (indexOffset, indexLength) = try mapping.withBytes { bytes throws(PareError) -> (UInt64, UInt64) in
            guard Array(bytes[0..<8]) == magic else { throw fail(.magic, "the file does not start with the .pare magic") }
            let version = bytes.loadLittleEndian(UInt16.self, at: 8)
            guard version == UInt16(Self.version) else {
                throw fail(.version, "the file has format version \(version); this reader knows version \(Self.version)")
            }
            let flags = bytes.loadLittleEndian(UInt16.self, at: 10)
            guard flags == 0 else { throw fail(.flags, "the header has unknown flags 0x\(String(flags, radix: 16))") }
            guard bytes.loadLittleEndian(UInt32.self, at: 12) == 0 else { throw fail(.reserved, "the header's reserved field is not zero") }
            let footer = size - footerSize
            guard Array(bytes[(footer + 24)..<(footer + 32)]) == magic else {
                throw fail(.magic, "the file does not end with the .pare magic (truncated or not a .pare file)")
            }
            let offset = bytes.loadLittleEndian(UInt64.self, at: footer)
            let length = bytes.loadLittleEndian(UInt64.self, at: footer + 8)
            let (end, overflow) = offset.addingReportingOverflow(length)
            guard !overflow, offset >= UInt64(headerSize), end == UInt64(footer) else {
                throw fail(.footer, "the footer puts the index at \(offset) with \(length) bytes, which does not end where the footer starts (\(footer))")
            }
            guard bytes.loadLittleEndian(UInt32.self, at: footer + 20) == 0 else {
                throw fail(.reserved, "the footer's reserved field is not zero")
            }
            let index = UnsafeRawBufferPointer(rebasing: bytes[Int(offset)..<Int(end)])
            let expected = bytes.loadLittleEndian(UInt32.self, at: footer + 16)
            let actual = CRC32C.checksum(index)
            guard actual == expected else {
                throw fail(.indexChecksum, "the index fails its CRC-32C check (stored \(hex(expected)), computed \(hex(actual))): the file is damaged")
            }
            return (offset, length)
        }
        let index = try mapping.withBytes(in: Int(indexOffset)..<Int(indexOffset + indexLength)) { bytes throws(PareError) in
            try PareIndex.parse(bytes, path: path, indexOffset: indexOffset)
        }
        return PareFile(path: path, mapping: mapping, index: index, indexOffset: indexOffset)
    }

    public func tensor(named name: String) -> PareTensor? {
        positions[name].map { tensors[$0] }
    }

    /// Decodes `tensor` into `destination` (exactly `tensor.size` bytes), chunks in
    /// parallel, checking every checksum.
    public func decode(_ tensor: PareTensor, into destination: UnsafeMutableRawBufferPointer) throws(PareError) {
        precondition(destination.count == Int(tensor.size))
        let actual = try decodeChunks(tensor, 0..<tensor.chunks.count, into: destination.baseAddress)
        guard actual == tensor.crc32c else { throw tensorChecksumError(tensor, actual) }
    }

    /// Decodes `tensor` a batch of chunks at a time and hands each batch's decoded bytes to
    /// `body`, in order: memory stays at a few chunks whatever the tensor's size. The
    /// tensor's checksum is checked after the last batch, so `body` may have seen data
    /// before a damaged decode is reported; callers write into staging output only.
    public func forEachBatch<E: Error>(
        of tensor: PareTensor, mapError: (PareError) -> E, _ body: (UnsafeRawBufferPointer) throws(E) -> Void
    ) throws(E) {
        let batch = Self.batchChunks
        let width = tensor.dtype.bitWidth
        let largest = tensor.chunks.map(\.elements).max() ?? 0
        let storage = PageBuffer(bytes: Int(largest) * width / 8 * batch)
        let buffer = storage.pointer
        var crc: UInt32 = 0
        var first = 0
        while first < tensor.chunks.count {
            let range = first..<min(first + batch, tensor.chunks.count)
            let batchCRC: UInt32
            do { batchCRC = try decodeChunks(tensor, range, into: buffer) } catch { throw mapError(error) }
            let bytes = tensor.chunks[range].reduce(0) { $0 + Int($1.elements) * width / 8 }
            let decoded = UnsafeRawBufferPointer(start: buffer, count: bytes)
            crc = first == 0 ? batchCRC : CRC32C.combine(crc, batchCRC, secondLength: bytes)
            try body(decoded)
            first = range.upperBound
        }
        guard crc == tensor.crc32c else { throw mapError(tensorChecksumError(tensor, crc)) }
    }

    /// Chunks decoded at once by `forEachBatch`: enough to keep every core busy.
    static let batchChunks = max(2, 2 * FloatConversion.activeCores)

    private func tensorChecksumError(_ tensor: PareTensor, _ actual: UInt32) -> PareError {
        .invalid(path: path, tensor: tensor.name, rule: .tensorChecksum,
                 detail: "the decoded tensor fails its CRC-32C check (stored \(hex(tensor.crc32c)), computed \(hex(actual)))")
    }

    /// Decodes chunks `range` of `tensor` into `destination`, which receives them
    /// back to back starting with the first chunk of the range, and returns the CRC-32C
    /// of the decoded bytes (each worker checksums its own chunk; the CRCs are joined).
    private func decodeChunks(_ tensor: PareTensor, _ range: Range<Int>, into output: UnsafeMutableRawPointer?) throws(PareError) -> UInt32 {
        guard !range.isEmpty, let output else { return 0 }
        let width = tensor.dtype.bitWidth
        var offsets: [Int] = []
        var offset = 0
        for i in range {
            offsets.append(offset)
            offset += Int(tensor.chunks[i].elements) * width / 8
        }
        // The buffers outlive the work, which finishes before this returns.
        nonisolated(unsafe) let failures = UnsafeMutableBufferPointer<PareError?>.allocate(capacity: range.count)
        failures.initialize(repeating: nil)
        nonisolated(unsafe) let crcs = UnsafeMutableBufferPointer<UInt32>.allocate(capacity: range.count)
        defer {
            _ = failures.deinitialize()
            failures.deallocate()
            crcs.deallocate()
        }
        nonisolated(unsafe) let destination = output
        let starts = offsets
        let work: @Sendable (Int) -> Void = { (k: Int) in
            let i = range.lowerBound + k
            let chunk = tensor.chunks[i]
            let target = destination + starts[k]
            failures[k] = self.decodeChunk(tensor, i, chunk, width: width, into: target)
            crcs[k] = CRC32C.checksum(UnsafeRawBufferPointer(start: target, count: Int(chunk.elements) * width / 8))
        }
        if range.count == 1 || tensor.encoding == .raw && range.count <= 2 {
            for k in 0..<range.count { work(k) }
        } else {
            WorkerPool.shared.perform(range.count, work)
        }
        if let failure = failures.lazy.compactMap({ $0 }).first { throw failure }
        var crc = crcs[0]
        for k in 1..<range.count {
            crc = CRC32C.combine(crc, crcs[k], secondLength: Int(tensor.chunks[range.lowerBound + k].elements) * width / 8)
        }
        return crc
    }

    private func decodeChunk(_ tensor: PareTensor, _ i: Int, _ chunk: PareChunk, width: Int, into target: UnsafeMutableRawPointer) -> PareError? {
        mapping.withBytes(in: Int(chunk.offset)..<Int(chunk.end)) { stored -> PareError? in
            let actual = CRC32C.checksum(stored)
            guard actual == chunk.crc32c else {
                return .invalid(path: path, tensor: tensor.name, rule: .chunkChecksum,
                                detail: "chunk \(i) (bytes \(chunk.offset)..<\(chunk.end)) fails its CRC-32C check (stored \(hex(chunk.crc32c)), computed \(hex(actual))): the file is damaged")
            }
            let problem = ChunkCodec.decode(
                stored, streams: chunk.streams.map { Int($0) }, elements: Int(chunk.elements), width: width / 8,
                encoding: tensor.encoding, into: target)
            return problem.map {
                .invalid(path: path, tensor: tensor.name, rule: .frame, detail: "chunk \(i): \($0)")
            }
        }
    }

    /// Checks that every byte outside chunks, header, index and footer is zero, as the
    /// format requires, so that damage there is caught too. Names the tensor whose chunk
    /// precedes damaged padding.
    public func verifyPadding() throws(PareError) {
        try mapping.withBytes { bytes throws(PareError) in
            var position = Self.headerSize
            var owner = ""
            func check(upTo end: Int) throws(PareError) {
                if position < end, let bad = bytes[position..<end].firstIndex(where: { $0 != 0 }) {
                    let detail = owner.isEmpty
                        ? "padding byte \(bad) after the header is not zero: the file is damaged"
                        : "padding byte \(bad) after the tensor's data is not zero: the file is damaged"
                    throw .invalid(path: path, tensor: owner, rule: .padding, detail: detail)
                }
            }
            for tensor in tensors {
                for chunk in tensor.chunks {
                    try check(upTo: Int(chunk.offset))
                    position = Int(chunk.end)
                    owner = tensor.name
                }
            }
            try check(upTo: Int(indexOffset))
        }
    }

    /// Decodes every tensor and checks the padding: what `pare validate --verify` does.
    public func verify() throws(PareError) {
        try verifyPadding()
        for tensor in tensors {
            try forEachBatch(of: tensor, mapError: { $0 }) { (_: UnsafeRawBufferPointer) throws(PareError) in }
        }
    }
}

func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16)
    return "0x" + String(repeating: "0", count: 8 - digits.count) + digits
}

extension UnsafeRawBufferPointer {
    func loadLittleEndian<T: FixedWidthInteger>(_ type: T.Type, at offset: Int) -> T {
        T(littleEndian: loadUnaligned(fromByteOffset: offset, as: T.self))
    }
}
