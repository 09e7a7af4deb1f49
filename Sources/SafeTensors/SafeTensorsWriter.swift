import OrderedJSON
import Tensors

/// Writes one safetensors file, streaming: the header first, then each tensor's bytes as
/// the caller produces them.
///
/// The caller declares every tensor (name, dtype, shape) up front, so the header is known
/// before any data is written and nothing needs to be seeked back to. Output is
/// deterministic: tensors are laid out in the order given, the header is compact JSON with
/// `__metadata__` first, padded with spaces to a multiple of 8 bytes as the reference does
/// (which keeps every tensor's data 8-byte aligned in the file).
public final class SafeTensorsWriter {
    public struct Entry: Sendable, Hashable {
        public var name: String
        public var dtype: DType
        public var shape: [UInt64]
        public var byteCount: Int

        public init(name: String, dtype: DType, shape: [UInt64]) {
            self.name = name
            self.dtype = dtype
            self.shape = shape
            let elements = Shape.elementCount(shape) ?? 0
            if case .bytes(let count) = dtype.byteCount(elements: elements) {
                self.byteCount = Int(count)
            } else {
                preconditionFailure("tensor \(name) has no whole-byte size")
            }
        }
    }

    public let path: String
    public let entries: [Entry]
    private let output: OutputFile
    private var nextEntry = 0
    private var writtenInEntry = 0

    /// Bytes of header (length prefix + JSON + padding) for these entries and metadata.
    public static func headerBytes(entries: [Entry], metadata: [(key: String, value: String)]) -> [UInt8] {
        let text = headerText(entries: entries, metadata: metadata)
        let length = paddedLength(text)
        // One copy of the text's bytes, after the length prefix, padded in place.
        var bytes = withUnsafeBytes(of: UInt64(length).littleEndian) { Array($0) }
        bytes.reserveCapacity(8 + length)
        bytes.append(contentsOf: text.utf8)
        bytes.append(contentsOf: repeatElement(UInt8(ascii: " "), count: 8 + length - bytes.count))
        return bytes
    }

    /// The length of the header's JSON with its padding (without the 8-byte prefix): what a
    /// plan checks against the largest header readers accept, without the bytes.
    public static func headerLength(entries: [Entry], metadata: [(key: String, value: String)]) -> Int {
        paddedLength(headerText(entries: entries, metadata: metadata))
    }

    private static func paddedLength(_ text: String) -> Int {
        let count = text.utf8.count
        return count + (8 - count % 8) % 8
    }

    private static func headerText(entries: [Entry], metadata: [(key: String, value: String)]) -> String {
        // Written straight as text, as `JSONValue.serialized(.compact)` would lay out the
        // same object: a tree of a million entries cost several times the header's size.
        var text = "{"
        text.reserveCapacity(16 + entries.count * 64)
        if !metadata.isEmpty {
            text += "\"__metadata__\":"
            text += JSONValue.object(metadata.map { ($0.key, .string($0.value)) }).serialized(.compact)
        }
        var offset = 0
        for (k, entry) in entries.enumerated() {
            if k > 0 || !metadata.isEmpty { text += "," }
            let end = offset + entry.byteCount
            JSONValue.appendCompactString(entry.name, to: &text)
            text += ":{\"dtype\":"
            JSONValue.appendCompactString(entry.dtype.name, to: &text)
            text += ",\"shape\":["
            for (d, size) in entry.shape.enumerated() {
                if d > 0 { text += "," }
                text += String(size)
            }
            text += "],\"data_offsets\":["
            text += String(offset)
            text += ","
            text += String(end)
            text += "]}"
            offset = end
        }
        text += "}"
        return text
    }

    /// Creates `path` (which must not exist) and writes the header. `writeBehind` writes
    /// from a background thread around the page cache (see `OutputFile`): for files whose
    /// bytes are computed rather than copied.
    public init(path: String, entries: [Entry], metadata: [(key: String, value: String)], writeBehind: Bool = false) throws(FileError) {
        let file = try OutputFile(creating: path, writeBehind: writeBehind)
        try file.write(Self.headerBytes(entries: entries, metadata: metadata))
        self.path = path
        self.entries = entries
        output = file
        skipEmptyEntries()
    }

    /// The tensor whose bytes are expected next, or `nil` when all are written.
    public var currentEntry: Entry? { nextEntry < entries.count ? entries[nextEntry] : nil }

    /// Appends bytes of the current tensor. A tensor may be written in any number of pieces;
    /// the writer moves on to the next one when the declared size is reached.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(FileError) {
        guard bytes.count > 0 else { return }
        precondition(nextEntry < entries.count, "more bytes than the declared tensors hold")
        precondition(writtenInEntry + bytes.count <= entries[nextEntry].byteCount, "tensor \(entries[nextEntry].name) overrun")
        try output.write(bytes)
        advance(by: bytes.count)
    }

    /// Lets `body` produce the next `count` bytes of the current tensor in place (at most
    /// `OutputFile.maximumSpace`), with no copy after where the file is written behind.
    public func withSpace(_ count: Int, _ body: (UnsafeMutableRawPointer) -> Void) throws(FileError) {
        guard count > 0 else { return }
        precondition(nextEntry < entries.count, "more bytes than the declared tensors hold")
        precondition(writtenInEntry + count <= entries[nextEntry].byteCount, "tensor \(entries[nextEntry].name) overrun")
        try output.withSpace(count, body)
        advance(by: count)
    }

    /// Appends `count` bytes of the current tensor copied straight from a mapped file.
    public func copy(from source: MappedFile, at offset: Int, count: Int) throws(FileError) {
        guard count > 0 else { return }
        precondition(nextEntry < entries.count && writtenInEntry + count <= entries[nextEntry].byteCount)
        try output.copy(from: source, at: offset, count: count)
        advance(by: count)
    }

    private func advance(by count: Int) {
        writtenInEntry += count
        if writtenInEntry == entries[nextEntry].byteCount {
            nextEntry += 1
            writtenInEntry = 0
            skipEmptyEntries()
        }
    }

    private func skipEmptyEntries() {
        while nextEntry < entries.count && entries[nextEntry].byteCount == 0 { nextEntry += 1 }
    }

    /// Closes the file, flushing it to the device first when `sync` (callers writing many
    /// files may close them unsynced and flush them all at the end, so the disk writes one
    /// file while the next is produced). Fails if any declared tensor is incomplete.
    public func finish(sync: Bool = true) throws(FileError) {
        precondition(nextEntry == entries.count, "tensor \(currentEntry?.name ?? "?") was not fully written")
        if sync { try output.sync() }
        try output.close()
    }
}
