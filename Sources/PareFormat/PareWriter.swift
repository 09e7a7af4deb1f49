import Dispatch
import Tensors

/// Writes a `.pare` file front to back: tensor bytes arrive in order, chunks are encoded
/// in parallel batches as they fill, and the index goes into the footer at the end, so
/// the writer never seeks back and holds a few chunks in memory whatever the tensor.
public final class PareWriter {
    /// A tensor to write, with the encoding chosen for it.
    public struct Entry: Sendable {
        public var name: String
        public var dtype: DType
        public var shape: [UInt64]
        public var encoding: PareEncoding

        public init(name: String, dtype: DType, shape: [UInt64], encoding: PareEncoding) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            self.encoding = encoding
        }

        public var byteCount: Int { Int((Shape.elementCount(shape) ?? 0) * UInt64(dtype.bitWidth) / 8) }
    }

    public struct Options: Sendable {
        /// zstd level (1–22) of the byte streams that carry exponent bits, of masks and of
        /// positions; 0, the default, codes them with entropy coding only, which for these
        /// streams is smaller than levels 1–18 and several times faster. The other byte
        /// streams, mostly mantissa bits, are always entropy-coded only.
        public var level: Int32
        /// Elements per chunk (whole rows are added for N:M tensors).
        public var chunkElements: Int

        public init(level: Int32 = 0, chunkElements: Int = 1 << 20) {
            self.level = level
            self.chunkElements = chunkElements
        }
    }

    public let path: String
    private let file: OutputFile
    private let entries: [Entry]
    private let metadata: [(key: String, value: String)]
    private let options: Options
    private var written: [PareTensor] = []

    // The tensor being received.
    private var current = 0
    private var received = 0
    private var crc: UInt32 = 0
    private var chunks: [PareChunk] = []
    /// Where each chunk of a batch is encoded, reused batch after batch.
    private let outputs = (0..<PareFile.batchChunks).map { _ in ScratchBuffer() }
    /// Received bytes not yet encoded: up to `batchChunks` chunks.
    private let storage: PageBuffer
    private let buffer: UnsafeMutableRawPointer
    private let bufferCapacity: Int
    private var buffered = 0

    /// Creates `path` and writes the header.
    public init(path: String, entries: [Entry], metadata: [(key: String, value: String)], options: Options = Options()) throws(PareError) {
        for entry in entries where !entry.encoding.accepts(entry.dtype) {
            throw .unencodable(path: path, tensor: entry.name, detail: "\(entry.encoding.name) cannot hold \(entry.dtype.name)")
        }
        for entry in entries where Self.chunkBytes(entry, options: options) > PareFile.maximumChunkBytes {
            throw .unencodable(path: path, tensor: entry.name, detail: "one row is more than the \(PareFile.maximumChunkBytes) bytes an N:M chunk may hold")
        }
        self.path = path
        self.entries = entries
        self.metadata = metadata
        self.options = options
        let largestChunk = entries.map { Self.chunkBytes($0, options: options) }.max() ?? 0
        bufferCapacity = max(64, largestChunk * PareFile.batchChunks)
        storage = PageBuffer(bytes: bufferCapacity)
        buffer = storage.pointer
        do { file = try OutputFile(creating: path, writeBehind: true) } catch { throw .io(error) }
        var header = PareFile.magic
        header += [UInt8(PareFile.version), 0, 0, 0, 0, 0, 0, 0]
        try io { () throws(FileError) in try file.write(header) }
        try pad()
        try startTensors()
    }


    /// Elements per chunk of `entry`: whole groups of M for N:M, whole bytes for sub-byte kinds.
    static func chunkElements(_ entry: Entry, options: Options) -> Int {
        var elements = max(8, options.chunkElements / 8 * 8)
        if case .nm = entry.encoding, let last = entry.shape.last, last > 0 {
            let row = Int(last)
            elements = max(1, elements / row) * row
        }
        return elements
    }

    static func chunkBytes(_ entry: Entry, options: Options) -> Int {
        min(entry.byteCount, chunkElements(entry, options: options) * entry.dtype.bitWidth / 8)
    }

    private func io(_ body: () throws(FileError) -> Void) throws(PareError) {
        do { try body() } catch { throw .io(error) }
    }

    /// Zero bytes up to the next multiple of 64.
    private func pad() throws(PareError) {
        let rest = file.offset % PareFile.alignment
        if rest != 0 {
            try io { () throws(FileError) in try file.write([UInt8](repeating: 0, count: PareFile.alignment - rest)) }
        }
    }

    /// Finishes tensors with no bytes, which `write` never sees.
    private func startTensors() throws(PareError) {
        while current < entries.count, entries[current].byteCount == 0 {
            let entry = entries[current]
            written.append(PareTensor(name: entry.name, dtype: entry.dtype, shape: entry.shape, encoding: entry.encoding,
                                      streamLevels: [], size: 0, crc32c: 0, chunks: []))
            current += 1
        }
    }

    /// Appends the next bytes of the tensors, in entry order; a call may span tensors.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(PareError) {
        var rest = bytes
        while !rest.isEmpty {
            guard current < entries.count else {
                precondition(false, "more bytes written than the entries hold")
                return
            }
            let entry = entries[current]
            // Whole chunks of this tensor fill the buffer.
            let chunkBytes = Self.chunkBytes(entry, options: options)
            let limit = min(bufferCapacity / chunkBytes, PareFile.batchChunks) * chunkBytes
            let space = min(limit - buffered, entry.byteCount - received)
            let take = min(space, rest.count)
            (buffer + buffered).copyMemory(from: rest.baseAddress!, byteCount: take)
            crc = CRC32C.checksum(UnsafeRawBufferPointer(rebasing: rest[..<take]), continuing: crc)
            buffered += take
            received += take
            rest = UnsafeRawBufferPointer(rebasing: rest[take...])
            if received == entry.byteCount {
                try flushBuffer()
                written.append(PareTensor(
                    name: entry.name, dtype: entry.dtype, shape: entry.shape, encoding: entry.encoding,
                    streamLevels: levels(entry).map(\.recorded), size: UInt64(entry.byteCount), crc32c: crc, chunks: chunks))
                current += 1
                received = 0
                crc = 0
                chunks = []
                try startTensors()
            } else if buffered == limit {
                try flushBuffer()
            }
        }
    }

    public func write(_ bytes: [UInt8]) throws(PareError) {
        let result = bytes.withUnsafeBytes { raw in Result { () throws(PareError) in try write(raw) } }
        try result.get()
    }

    /// Appends `count` bytes of `mapping` from `offset`.
    public func copy(from mapping: MappedFile, at offset: Int, count: Int) throws(PareError) {
        try mapping.withBytes(in: offset..<(offset + count)) { bytes throws(PareError) in try write(bytes) }
    }

    private func levels(_ entry: Entry) -> [Zstd.Setting] {
        ChunkCodec.levels(encoding: entry.encoding, width: entry.dtype.bitWidth / 8,
                          exponents: options.level == 0 ? .entropy : .level(options.level))
    }

    /// Encodes the buffered bytes (whole chunks, or the tensor's last one) and writes them.
    private func flushBuffer() throws(PareError) {
        guard buffered > 0 else { return }
        let entry = entries[current]
        let chunkBytes = Self.chunkBytes(entry, options: options)
        let count = (buffered + chunkBytes - 1) / chunkBytes
        let width = entry.dtype.bitWidth
        let levels = levels(entry)
        // Shared with the workers, which all finish before this function goes on.
        nonisolated(unsafe) let results = UnsafeMutableBufferPointer<Result<ChunkCodec.Encoded, ChunkCodec.NMViolation>?>.allocate(capacity: count)
        results.initialize(repeating: nil)
        defer {
            _ = results.deinitialize()
            results.deallocate()
        }
        nonisolated(unsafe) let buffer = self.buffer
        let buffered = self.buffered
        let encoding = entry.encoding
        let outputs = self.outputs
        let work: @Sendable (Int) -> Void = { (k: Int) in
            let start = k * chunkBytes
            let bytes = UnsafeRawBufferPointer(start: buffer + start, count: min(chunkBytes, buffered - start))
            results[k] = ChunkCodec.encode(bytes, elements: bytes.count * 8 / width, width: width / 8, encoding: encoding,
                                           levels: levels, output: outputs[k])
        }
        if count == 1 {
            work(0)
        } else {
            WorkerPool.shared.perform(count, work)
        }
        let firstElement = received - buffered
        for k in 0..<count {
            switch results[k]! {
            case .failure(let violation):
                guard case .nm(let pattern) = encoding else { fatalError("only N:M packing can fail") }
                let element = (firstElement + k * chunkBytes) * 8 / width + violation.group * pattern.m
                throw .unencodable(path: path, tensor: entry.name,
                                   detail: "the group of \(pattern.m) elements at element \(element) has more than \(pattern.n) non-zero values, so it is not \(pattern) sparse")
            case .success(let encoded):
                let stored = encoded.bytes
                let offset = UInt64(file.offset)
                try io { () throws(FileError) in try file.write(stored) }
                chunks.append(PareChunk(
                    offset: offset, length: UInt64(stored.count), elements: UInt64(min(chunkBytes, buffered - k * chunkBytes) * 8 / width),
                    crc32c: CRC32C.checksum(stored), streams: encoded.streams.map { UInt64($0) }))
                try pad()
            }
        }
        self.buffered = 0
    }

    /// Writes the index and the footer, then closes (and optionally flushes) the file.
    public func finish(sync: Bool = true) throws(PareError) {
        precondition(current == entries.count, "finish() before every tensor was written")
        let index = PareIndex(metadata: metadata, tensors: written).rendered()
        let indexOffset = UInt64(file.offset)
        var footer: [UInt8] = []
        footer.appendLittleEndian(indexOffset)
        footer.appendLittleEndian(UInt64(index.count))
        footer.appendLittleEndian(CRC32C.checksum(index))
        footer.appendLittleEndian(UInt32(0))
        footer += PareFile.magic
        try io { () throws(FileError) in
            try file.write(index)
            try file.write(footer)
            if sync { try file.sync() }
            try file.close()
        }
    }
}

extension Array where Element == UInt8 {
    mutating func appendLittleEndian<T: FixedWidthInteger>(_ value: T) {
        Swift.withUnsafeBytes(of: value.littleEndian) { append(contentsOf: $0) }
    }
}
