#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSystemShims
import Dispatch
import Synchronization

/// Writes a file's bytes from a background thread, around the page cache where the
/// filesystem allows it (`O_DIRECT`).
///
/// Written through the page cache, every output byte is copied by the kernel into fresh
/// cache pages and written back later by kernel threads, on the same cores that prune,
/// pack and compress: on a 2-core machine that copy took as much time as the work itself.
/// Here the caller's bytes are gathered into a few page-aligned buffers, and each full
/// buffer goes to the device from a serial queue while the caller fills the next one.
///
/// Direct writes need aligned offsets and lengths, so every buffer but the last is whole,
/// and the last is written padded to a block and the file cut back to its length. Where
/// the filesystem refuses direct I/O (tmpfs, some network filesystems) the same writes go
/// through the page cache. An error of a background write is thrown by the next `write`
/// or by `finish`.
final class WriteBehind: @unchecked Sendable {
    static let bufferBytes = 8 << 20
    static let bufferCount = 3
    /// Alignment of direct writes: the largest logical block size in common use.
    static let blockBytes = 4096

    var path: String { device.path }
    private let device: Device
    private let buffers: [PageBuffer]
    private let queue = SerialWorker()
    /// Buffers not being written: the caller takes one before filling it.
    private let available = DispatchSemaphore(value: WriteBehind.bufferCount)

    private var current = 0
    private var holding = false
    private var filled = 0
    private var bufferOffset = 0
    private var finished = false

    init(descriptor: Int32, path: String) {
        device = Device(descriptor: descriptor, path: path)
        buffers = (0..<Self.bufferCount).map { _ in PageBuffer(bytes: Self.bufferBytes) }
    }

    deinit {
        // Abandoned after an error: let queued writes end before the descriptor closes,
        // and give back a buffer still held (libdispatch traps on a semaphore freed below
        // its initial value).
        queue.sync()
        if holding { available.signal() }
    }

    /// Bytes taken so far.
    var length: Int { bufferOffset + filled }

    /// The most `withSpace` hands out at once.
    static let maximumSpace = bufferBytes - blockBytes

    /// Copies `bytes` into the buffers, handing each full one to the queue.
    func write(_ bytes: UnsafeRawBufferPointer) throws(FileError) {
        precondition(!finished, "write after finish")
        try check()
        guard var source = bytes.baseAddress else { return }
        var remaining = bytes.count
        while remaining > 0 {
            try take()
            let count = min(remaining, Self.bufferBytes - filled)
            (buffers[current].pointer + filled).copyMemory(from: source, byteCount: count)
            filled += count
            source += count
            remaining -= count
            if filled == Self.bufferBytes { submit(filled) }
        }
    }

    /// Lets `body` produce the next `count` bytes of the file in place, in a buffer, with
    /// no copy after (`count` at most `maximumSpace`).
    ///
    /// When the current buffer has no room, its whole blocks go to the queue and the few
    /// bytes after them move to the start of the next buffer, so direct writes stay
    /// block-aligned.
    func withSpace(_ count: Int, _ body: (UnsafeMutableRawPointer) -> Void) throws(FileError) {
        precondition(!finished, "write after finish")
        precondition(count <= Self.maximumSpace, "more space than a buffer holds")
        try check()
        try take()
        if filled + count > Self.bufferBytes {
            let whole = filled / Self.blockBytes * Self.blockBytes
            let tail = filled - whole
            let previous = buffers[current].pointer
            submit(whole)
            // The queue only reads the submitted buffer, so its tail can be copied out.
            try take()
            buffers[current].pointer.copyMemory(from: previous + whole, byteCount: tail)
            filled = tail
        }
        body(buffers[current].pointer + filled)
        filled += count
        if filled == Self.bufferBytes { submit(filled) }
    }

    /// Makes sure a buffer is held, waiting for the queue to free one.
    private func take() throws(FileError) {
        guard !holding else { return }
        available.wait()
        holding = true
        try check()
    }

    /// Writes what is left, waits for every write, and cuts the last block's padding.
    func finish() throws(FileError) {
        guard !finished else { return try check() }
        finished = true
        let total = length
        if filled > 0 {
            submit(filled)
        } else if holding {
            available.signal()
            holding = false
        }
        queue.sync()
        try check()
        if total % Self.blockBytes != 0, ftruncate(device.descriptor, off_t(total)) != 0 {
            let error = FileError(.write, path: path)
            device.failure.withLock { $0 = $0 ?? error }
            throw error
        }
    }

    private func check() throws(FileError) {
        if let error = device.failure.withLock({ $0 }) { throw error }
    }

    /// Hands the first `count` bytes of the current buffer to the queue.
    private func submit(_ count: Int) {
        let buffer = buffers[current]
        let offset = bufferOffset
        let padded = (count + Self.blockBytes - 1) / Self.blockBytes * Self.blockBytes
        // Stale bytes of an earlier use would otherwise land in the padding, briefly.
        if padded > count { (buffer.pointer + count).initializeMemory(as: UInt8.self, repeating: 0, count: padded - count) }
        // The block holds what it needs, not `self`: the last release of `self` must
        // not happen on the queue its deinit waits for.
        let device = device, available = available
        queue.async {
            defer { available.signal() }
            device.write(buffer, count: padded, at: offset)
        }
        current = (current + 1) % buffers.count
        holding = false
        bufferOffset += count
        filled = 0
    }
}

/// The descriptor and the state the queue's writes share with the caller.
private final class Device: @unchecked Sendable {
    let descriptor: Int32
    let path: String
    /// The first failed write's error; later buffers are then skipped.
    let failure = Mutex<FileError?>(nil)
    /// Only touched on the queue.
    private var direct: Bool

    init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
        direct = pare_set_direct(descriptor, 1) == 0
    }

    /// On the queue: writes all of a buffer, leaving direct I/O for good if the filesystem
    /// turns out to refuse it only when writing.
    func write(_ buffer: PageBuffer, count: Int, at offset: Int) {
        guard failure.withLock({ $0 == nil }) else { return }
        var done = 0
        while done < count {
            let n = pwrite(descriptor, buffer.pointer + done, count - done, off_t(offset + done))
            if n == 0 {
                // No progress and no error: the device will not take more.
                failure.withLock { $0 = $0 ?? FileError(.write, path: path, code: EIO) }
                return
            }
            if n < 0 {
                let code = errno
                if code == EINTR { continue }
                if code == EINVAL, direct {
                    direct = false
                    if pare_set_direct(descriptor, 0) == 0 { continue }
                }
                failure.withLock { $0 = $0 ?? FileError(.write, path: path, code: code) }
                return
            }
            done += n
        }
    }
}
