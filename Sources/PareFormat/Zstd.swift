import CZstd

/// One-shot zstd frames over caller-owned buffers.
enum Zstd {
    /// The largest frame `count` input bytes can compress to.
    static func bound(_ count: Int) -> Int { ZSTD_compressBound(count) }

    /// Compresses `source` as one frame into `destination` (at least `bound` bytes) and
    /// returns the frame's length. Cannot fail with a big enough destination.
    static func compress(_ source: UnsafeRawBufferPointer, level: Int32, into destination: UnsafeMutableRawPointer, capacity: Int) -> Int {
        let written = ZSTD_compress(destination, capacity, source.baseAddress, source.count, level)
        precondition(ZSTD_isError(written) == 0, "zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))")
        return written
    }

    /// Decompresses one frame into exactly `expected` bytes. Returns a reason on failure:
    /// not a frame, a damaged frame, or a frame of another length.
    static func decompress(_ frame: UnsafeRawBufferPointer, into destination: UnsafeMutableRawPointer, expected: Int) -> String? {
        // ZSTD_CONTENTSIZE_ERROR and ZSTD_CONTENTSIZE_UNKNOWN, macros Swift does not import.
        let contentSizeError = UInt64.max - 1, contentSizeUnknown = UInt64.max
        let declared = ZSTD_getFrameContentSize(frame.baseAddress, frame.count)
        if declared == contentSizeError { return "is not a zstd frame" }
        if declared != contentSizeUnknown, declared != UInt64(expected) {
            return "declares \(declared) bytes where \(expected) were expected"
        }
        // An empty output buffer may have no address; zstd wants a valid pointer anyway.
        let produced = ZSTD_decompress(destination, expected, frame.baseAddress, frame.count)
        if ZSTD_isError(produced) != 0 { return "does not decompress (\(String(cString: ZSTD_getErrorName(produced))))" }
        if produced != expected { return "decompresses to \(produced) bytes where \(expected) were expected" }
        return nil
    }
}
