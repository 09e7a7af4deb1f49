#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A read-only memory mapping of a whole file, released when the value goes away.
///
/// Tensor bytes are read through the mapping, so they are file-backed pages the kernel can
/// drop at will rather than memory pare owns: a model far larger than RAM can be streamed.
public final class MappedFile: @unchecked Sendable {
    // Unchecked Sendable: the mapping is read-only and never remapped after init.
    public let path: String
    public let size: Int
    /// The file's permission bits, so copies keep them.
    public let permissions: mode_t
    private let base: UnsafeMutableRawPointer?
    /// Kept open so that data can also be moved with `copy_file_range`.
    public let descriptor: Int32

    /// Opens and maps `path`. An empty file gets no mapping and an empty buffer.
    public init(path: String) throws(FileError) {
        // O_NONBLOCK: opening a FIFO must not hang; it is refused below as not a file.
        let fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard fd >= 0 else { throw FileError(.open, path: path) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            let error = FileError(.stat, path: path)
            close(fd)
            throw error
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            close(fd)
            throw FileError(.open, path: path, cause: .notARegularFile)
        }
        let size = Int(info.st_size)
        var mapping: UnsafeMutableRawPointer?
        if size > 0 {
            let pointer = mmap(nil, size, PROT_READ, MAP_PRIVATE, fd, 0)
            guard let pointer, pointer != MAP_FAILED else {
                let error = FileError(.map, path: path)
                close(fd)
                throw error
            }
            mapping = pointer
        }
        self.path = path
        self.size = size
        self.permissions = info.st_mode & 0o7777
        self.descriptor = fd
        self.base = mapping
    }

    deinit {
        if let base { munmap(base, size) }
        close(descriptor)
    }

    /// Calls `body` with the bytes in `range` (which must lie inside the file).
    public func withBytes<R, E: Error>(
        in range: Range<Int>, _ body: (UnsafeRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        precondition(range.lowerBound >= 0 && range.upperBound <= size, "range outside the mapping")
        guard let base else { return try body(UnsafeRawBufferPointer(start: nil, count: 0)) }
        return try body(UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count))
    }

    /// Calls `body` with the whole file.
    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        try withBytes(in: 0..<size, body)
    }

    /// Tells the kernel the range will be read once, front to back.
    public func adviseSequential(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = range.lowerBound / page * page
        _ = madvise(base + start, range.upperBound - start, MADV_SEQUENTIAL)
        adviseWillNeed(range)
    }

    /// Asks the kernel to start reading `range` into the page cache now, without waiting,
    /// so the pages are there by the time they are touched.
    public func adviseWillNeed(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = range.lowerBound / page * page
        _ = madvise(base + start, range.upperBound - start, MADV_WILLNEED)
    }

    /// Tells the kernel the pages in `range` will not be read again, so they stop
    /// counting toward this process even while the page cache keeps them.
    public func adviseDone(_ range: Range<Int>) {
        guard let base, !range.isEmpty else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let start = (range.lowerBound + page - 1) / page * page
        let end = range.upperBound / page * page
        guard end > start else { return }
        _ = madvise(base + start, end - start, MADV_DONTNEED)
    }
}
