#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// An exclusive `flock` on a folder (or file) that a run is about to replace, released
/// when the value goes. Two runs that would both swap a new model into one place take it
/// in turn, so neither's update is lost; runs that only read never take it.
///
/// The lock is on the folder's inode, and a swap puts a new inode at the path. A run that
/// waited therefore checks, once it holds the lock, that the path still names the inode it
/// locked, and starts over on the new one if not: it then plans from the model the other
/// run wrote.
public final class FileLock: @unchecked Sendable {
    public let path: String
    private let descriptor: Int32

    public enum Failure: Error, Sendable, Equatable {
        /// Another process holds it (`pid` when /proc/locks names it) and waiting was not wanted.
        case held(path: String, pid: Int32?)
        case interrupted(path: String)
        case io(FileError)
    }

    private init(path: String, descriptor: Int32) {
        self.path = path
        self.descriptor = descriptor
    }

    deinit {
        flock(descriptor, LOCK_UN)
        close(descriptor)
    }

    /// Locks `path`. When another process holds it: with `wait`, calls `waiting` once with
    /// the holder's PID and polls until it is free or `interrupted()` says stop; without,
    /// fails at once.
    public static func acquire(
        _ path: String, wait: Bool, interrupted: () -> Bool = { false }, waiting: (Int32?) -> Void = { _ in }
    ) throws(Failure) -> FileLock {
        var told = false
        while true {
            let fd = open(path, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw .io(FileError(.open, path: path)) }
            var locked = stat()
            guard fstat(fd, &locked) == 0 else {
                let error = FileError(.stat, path: path)
                close(fd)
                throw .io(error)
            }
            while flock(fd, LOCK_EX | LOCK_NB) != 0 {
                let code = errno
                guard code == EWOULDBLOCK || code == EINTR else {
                    close(fd)
                    throw .io(FileError(.open, path: path, code: code))
                }
                if code == EINTR { continue }
                let pid = holder(device: locked.st_dev, inode: locked.st_ino)
                guard wait else {
                    close(fd)
                    throw .held(path: path, pid: pid)
                }
                if !told {
                    waiting(pid)
                    told = true
                }
                if interrupted() {
                    close(fd)
                    throw .interrupted(path: path)
                }
                usleep(100_000)
            }
            var now = stat()
            if stat(path, &now) == 0, now.st_dev == locked.st_dev, now.st_ino == locked.st_ino {
                return FileLock(path: path, descriptor: fd)
            }
            // Swapped while we waited: lock what is there now.
            flock(fd, LOCK_UN)
            close(fd)
        }
    }

    /// The PID /proc/locks gives for a flock on this inode, if it names one.
    static func holder(device: dev_t, inode: ino_t) -> Int32? {
        guard let file = fopen("/proc/locks", "r") else { return nil }
        defer { fclose(file) }
        let dev = UInt64(device)
        let major = ((dev >> 8) & 0xFFF) | ((dev >> 32) & ~UInt64(0xFFF))
        let minor = (dev & 0xFF) | ((dev >> 12) & ~UInt64(0xFF))
        let wanted = "\(String(major, radix: 16, uppercase: false).leftPadded(2)):\(String(minor, radix: 16).leftPadded(2)):\(inode)"
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            // "1: FLOCK  ADVISORY  WRITE 12345 08:01:123456 0 EOF" (blocked waiters: "1: -> FLOCK …")
            let fields = String(cString: line).split(separator: " ", omittingEmptySubsequences: true)
            guard let kind = fields.firstIndex(of: "FLOCK"), fields.count > kind + 4, fields[kind - 1] != "->" else { continue }
            if fields[kind + 4] == wanted { return Int32(fields[kind + 3]) }
        }
        return nil
    }
}

extension String {
    fileprivate func leftPadded(_ width: Int) -> String {
        count >= width ? self : String(repeating: "0", count: width - count) + self
    }
}
