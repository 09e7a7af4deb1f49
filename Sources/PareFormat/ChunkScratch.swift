import Tensors

/// A page-mapped buffer that is reused and only grows: chunk work allocates nothing per
/// chunk, and what it holds stays at a few chunks' size.
final class ScratchBuffer: @unchecked Sendable {
    private var storage: PageBuffer

    init(capacity: Int = 64) { storage = PageBuffer(bytes: capacity) }

    /// At least `bytes` bytes; the contents are not kept when it grows.
    func reserve(_ bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > storage.capacity { storage = PageBuffer(bytes: bytes) }
        return storage.pointer
    }
}

/// The scratch space one chunk encode or decode needs, taken from a pool so that each
/// concurrent worker reuses its own.
final class ChunkScratch: PooledObject, @unchecked Sendable {
    /// Byte planes of grouped streams.
    let planes = ScratchBuffer()
    /// Packed or unpacked values.
    let values = ScratchBuffer()
    /// N:M positions or a bitmask.
    let side = ScratchBuffer()

    init() {}

    static let pool = ObjectPool<ChunkScratch>()
}
