#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Synchronization

/// The way out when the system refuses memory or a mapping pare cannot run without
/// (under `ulimit -v`, say): one line on stderr, the run's unfinished staging entries
/// removed, exit status 1. Not a trap with a backtrace, and nothing half-written left.
///
/// Staging entries register while they are being written, so that this can find them.
public enum ResourceFailure {
    private static let staging = Mutex<Set<String>>([])

    /// A staging entry being written; removed if the run has to stop here.
    public static func register(_ path: String) { _ = staging.withLock { $0.insert(path) } }

    /// The entry was renamed into place or removed.
    public static func unregister(_ path: String) { _ = staging.withLock { $0.remove(path) } }

    /// Removes the registered staging entries, says `message` on stderr as pare's errors
    /// are said, and exits with status 1.
    public static func fail(_ message: String) -> Never {
        for path in staging.withLock({ $0 }) { try? FileSystem.removeTree(path) }
        let line = Array("pare: error: \(message)\n".utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        _exit(1)
    }
}
