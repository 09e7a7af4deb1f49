#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A large scratch buffer mapped straight from the kernel and unmapped when the object
/// goes.
///
/// pare streams multi-megabyte buffers through worker threads. Taken from malloc and
/// freed one after another, they make glibc raise its mmap threshold and keep the freed
/// memory in its heaps: a 2.5 GB run held 0.7–2 GB of anonymous memory that way. Pages
/// mapped and unmapped here go back to the system at once.
public final class PageBuffer: @unchecked Sendable {
    public let pointer: UnsafeMutableRawPointer
    public let capacity: Int

    /// `bytes` zero-filled bytes (at least one page), 64-byte aligned.
    public init(bytes: Int) {
        let size = max(1, bytes)
        let mapped = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
        guard let mapped, mapped != MAP_FAILED else {
            ResourceFailure.fail("out of memory: could not map \(size) bytes of scratch space (is the address space limited, as by ulimit -v?)")
        }
        pointer = mapped
        capacity = size
    }

    deinit { munmap(pointer, capacity) }

    public var bytes: UnsafeMutableRawBufferPointer { UnsafeMutableRawBufferPointer(start: pointer, count: capacity) }
}
