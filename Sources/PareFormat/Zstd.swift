import Tensors
import CZstd
import Synchronization

/// One-shot zstd frames over caller-owned buffers, with contexts reused across calls.
///
/// A context per call would be allocated and freed per chunk; with several worker threads
/// glibc keeps those freed megabytes in per-thread arenas, and a 2.5 GB conversion then
/// held 2 GB of anonymous memory. Pooled contexts are allocated once per concurrent user.
enum Zstd {
    /// How a stream is compressed.
    enum Setting: Hashable {
        /// Entropy coding only: the fast strategy with the longest minimum match and a tiny
        /// hash table, so virtually no matches are searched and bytes are Huffman-coded.
        /// For float byte streams this beats every standard level up to about 19, at
        /// hundreds of MB/s (see BENCHMARKS.md).
        case entropy
        /// A standard zstd level (1–22).
        case level(Int32)

        /// The number recorded in `stream_levels` (0 for entropy coding only).
        var recorded: Int { if case .level(let n) = self { return Int(n) } else { return 0 } }
    }

    /// The largest frame `count` input bytes can compress to.
    static func bound(_ count: Int) -> Int { ZSTD_compressBound(count) }

    /// Compresses `source` as one frame into `destination` (at least `bound` bytes) and
    /// returns the frame's length. Cannot fail with a big enough destination.
    static func compress(_ source: UnsafeRawBufferPointer, setting: Setting, into destination: UnsafeMutableRawPointer, capacity: Int) -> Int {
        compressors.withContext { context in
            let cctx = context.pointer
            _ = ZSTD_CCtx_reset(cctx, ZSTD_reset_session_and_parameters)
            switch setting {
            case .entropy:
                _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1)
                _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_strategy, Int32(ZSTD_fast.rawValue))
                _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_minMatch, 7)
                _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_hashLog, 6)
                _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_searchLog, 1)
            case .level(let level):
                _ = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, level)
            }
            let written = ZSTD_compress2(cctx, destination, capacity, source.baseAddress, source.count)
            // With a destination of ZSTD_compressBound bytes, only its own workspace can fail.
            if ZSTD_isError(written) != 0 {
                ResourceFailure.fail("zstd could not compress: \(String(cString: ZSTD_getErrorName(written))) (is the address space limited, as by ulimit -v?)")
            }
            return written
        }
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
        let produced = decompressors.withContext { context in
            ZSTD_decompressDCtx(context.pointer, destination, expected, frame.baseAddress, frame.count)
        }
        if ZSTD_isError(produced) != 0 {
            if ZSTD_getErrorCode(produced) == ZSTD_error_memory_allocation {
                ResourceFailure.fail("zstd could not decompress: out of memory (is the address space limited, as by ulimit -v?)")
            }
            return "does not decompress (\(String(cString: ZSTD_getErrorName(produced))))"
        }
        if produced != expected { return "decompresses to \(produced) bytes where \(expected) were expected" }
        return nil
    }

    private static let compressors = ObjectPool<CompressionContext>()
    private static let decompressors = ObjectPool<DecompressionContext>()
}

/// An object a pool creates on demand and hands to one user at a time.
protocol PooledObject: AnyObject, Sendable {
    init()
}

/// A zstd compression context; released when the object goes.
final class CompressionContext: PooledObject, @unchecked Sendable {
    let pointer: OpaquePointer
    init() {
        guard let context = ZSTD_createCCtx() else { ResourceFailure.fail("out of memory: zstd could not make a compression context") }
        pointer = context
    }
    deinit { ZSTD_freeCCtx(pointer) }
}

/// A zstd decompression context; released when the object goes.
final class DecompressionContext: PooledObject, @unchecked Sendable {
    let pointer: OpaquePointer
    init() {
        guard let context = ZSTD_createDCtx() else { ResourceFailure.fail("out of memory: zstd could not make a decompression context") }
        pointer = context
    }
    deinit { ZSTD_freeDCtx(pointer) }
}

/// Objects handed to one user at a time: as many exist as were ever in use at once.
final class ObjectPool<Object: PooledObject>: Sendable {
    private let idle = Mutex<[Object]>([])

    func withContext<R>(_ body: (Object) -> R) -> R {
        let object = idle.withLock { $0.popLast() } ?? Object()
        defer { idle.withLock { $0.append(object) } }
        return body(object)
    }
}
