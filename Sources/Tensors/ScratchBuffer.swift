/// A page-mapped buffer that is reused and only grows: work done a piece at a time
/// allocates nothing per piece (fresh pages would be zeroed by the kernel each time), and
/// what it holds stays at the largest piece's size.
public final class ScratchBuffer: @unchecked Sendable {
    private var storage: PageBuffer

    public init(capacity: Int = 64) { storage = PageBuffer(bytes: capacity) }

    /// At least `bytes` bytes; the contents are not kept when it grows.
    public func reserve(_ bytes: Int) -> UnsafeMutableRawPointer {
        if bytes > storage.capacity { storage = PageBuffer(bytes: bytes) }
        return storage.pointer
    }
}
