import Tensors

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
