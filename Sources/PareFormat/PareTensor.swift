import Tensors

/// One tensor of a `.pare` file, as its index describes it.
public struct PareTensor: Sendable, Hashable {
    public var name: String
    public var dtype: DType
    public var shape: [UInt64]
    public var encoding: PareEncoding
    /// The zstd level of each frame, as the writer recorded it (information only).
    public var streamLevels: [Int]
    /// Decoded bytes.
    public var size: UInt64
    /// CRC-32C of the decoded bytes.
    public var crc32c: UInt32
    public var chunks: [PareChunk]

    public var elementCount: UInt64 { Shape.elementCount(shape) ?? 0 }

    /// Bytes the chunks occupy in the file (without padding).
    public var storedBytes: UInt64 { chunks.reduce(0) { $0 + $1.length } }

    /// Where chunk `i`'s decoded bytes start within the tensor.
    public func decodedOffset(ofChunk i: Int) -> Int {
        Int(chunks[..<i].reduce(0) { $0 + $1.elements } * UInt64(dtype.bitWidth) / 8)
    }
}

/// A run of a tensor's elements, stored and checked on its own.
public struct PareChunk: Sendable, Hashable {
    /// Where the stored bytes start in the file (a multiple of 64).
    public var offset: UInt64
    /// Stored bytes.
    public var length: UInt64
    /// Elements of the tensor the chunk holds.
    public var elements: UInt64
    /// CRC-32C of the stored bytes.
    public var crc32c: UInt32
    /// Lengths of the zstd frames in the stored bytes, in order (empty for `raw`).
    public var streams: [UInt64]

    public var end: UInt64 { offset + length }
}
