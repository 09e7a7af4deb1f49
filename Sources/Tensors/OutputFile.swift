#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSystemShims

/// A new file opened for sequential writing, closed when the value goes away.
///
/// By default writes go straight to the descriptor (callers pass large, already-assembled
/// spans), so the file never holds more than the caller's buffer in memory. With
/// `writeBehind`, they are gathered into a few buffers written from a background thread
/// around the page cache (see `WriteBehind`): for files whose bytes pare computes, where
/// the kernel's copy into the cache would compete with the computing for the cores.
public final class OutputFile {
    public let path: String
    private var descriptor: Int32
    private var behind: WriteBehind?
    /// Bytes written so far.
    public private(set) var offset: Int = 0

    /// Creates `path`; fails if it exists, so nothing is ever overwritten by accident.
    public init(creating path: String, permissions: mode_t = 0o644, writeBehind: Bool = false) throws(FileError) {
        self.path = path
        descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, permissions)
        guard descriptor >= 0 else { throw FileError(.open, path: path) }
        if writeBehind { behind = WriteBehind(descriptor: descriptor, path: path) }
    }

    deinit {
        behind = nil
        if descriptor >= 0 { Glibc.close(descriptor) }
    }

    /// Writes all of `bytes`, retrying short writes and interruptions.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(FileError) {
        if let behind {
            try behind.write(bytes)
            offset += bytes.count
            return
        }
        guard var pointer = bytes.baseAddress else { return }
        var remaining = bytes.count
        while remaining > 0 {
            let n = Glibc.write(descriptor, pointer, remaining)
            if n < 0 {
                if errno == EINTR { continue }
                throw FileError(.write, path: path)
            }
            pointer += n
            remaining -= n
            offset += n
        }
    }

    /// The most `withSpace` hands out at once.
    public static let maximumSpace = WriteBehind.maximumSpace

    /// Lets `body` produce the next `count` bytes of the file in place (at most
    /// `maximumSpace`), at a 16-byte aligned address: straight into a write-behind buffer
    /// when the file's length is a multiple of 16 (its buffers start at block offsets), or
    /// into a scratch buffer then written.
    public func withSpace(_ count: Int, _ body: (UnsafeMutableRawPointer) -> Void) throws(FileError) {
        if let behind, offset % 16 == 0 {
            try behind.withSpace(count, body)
            offset += count
            return
        }
        let space = scratch.reserve(count)
        body(space)
        try write(UnsafeRawBufferPointer(start: space, count: count))
    }

    private lazy var scratch = ScratchBuffer()

    public func write(_ bytes: [UInt8]) throws(FileError) {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(FileError) in try write(buffer) }
        }
        try result.get()
    }

    /// Copies `count` bytes of `source` at `sourceOffset` in the kernel, without passing them
    /// through user memory. Where the kernel cannot (other filesystems, old kernels, a
    /// write-behind file), writes them from the source's mapping instead, releasing each
    /// piece once written so memory stays flat.
    public func copy(
        from source: MappedFile, at sourceOffset: Int, count: Int
    ) throws(FileError) {
        var inputOffset = Int64(sourceOffset)
        var remaining = count
        while remaining > 0, behind == nil {
            let n = pare_copy_file_range(source.descriptor, &inputOffset, descriptor, nil, remaining, 0)
            if n > 0 {
                remaining -= n
                offset += n
                continue
            }
            if n == 0 {
                // End of file before the span ends: the input shrank while being read.
                throw FileError(.read, path: source.path, cause: .fileShrank)
            }
            if errno == EINTR { continue }
            guard [EXDEV, ENOSYS, EOPNOTSUPP, EINVAL, EBADF, EPERM].contains(errno) else {
                throw FileError(.copy, path: path)
            }
            break
        }
        var position = sourceOffset + (count - remaining)
        let end = sourceOffset + count
        let piece = 8 << 20
        while position < end {
            let range = position..<min(end, position + piece)
            try source.withBytes(in: range) { bytes throws(FileError) in try write(bytes) }
            source.adviseDone(range)
            position = range.upperBound
        }
    }

    /// Flushes the file's data to the device.
    public func sync() throws(FileError) {
        try behind?.finish()
        guard fsync(descriptor) == 0 else { throw FileError(.sync, path: path) }
    }

    /// Closes the descriptor now, reporting any deferred write error.
    public func close() throws(FileError) {
        guard descriptor >= 0 else { return }
        do { try behind?.finish() } catch {
            behind = nil
            Glibc.close(descriptor)
            descriptor = -1
            throw error
        }
        behind = nil
        let result = Glibc.close(descriptor)
        descriptor = -1
        guard result == 0 else { throw FileError(.write, path: path) }
    }
}
