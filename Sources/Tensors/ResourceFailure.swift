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
    private static let failing = Atomic<Bool>(false)

    /// A staging entry being written; removed if the run has to stop here.
    public static func register(_ path: String) { _ = staging.withLock { $0.insert(path) } }

    /// The entry was renamed into place or removed.
    public static func unregister(_ path: String) { _ = staging.withLock { $0.remove(path) } }

    /// Removes the registered staging entries, says `message` on stderr as pare's errors
    /// are said, and exits with status 1.
    public static func fail(_ message: String) -> Never {
        // Workers can run out together: the first one speaks and ends the process.
        if failing.exchange(true, ordering: .acquiringAndReleasing) {
            while true { pause() }
        }
        holdTrapsWhileFailing()
        for path in staging.withLock({ $0 }) { try? FileSystem.removeTree(path) }
        let line = Array("pare: error: \(message)\n".utf8)
        _ = line.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        _exit(1)
    }

    /// While one thread removes the staging, another may still allocate and find no memory
    /// left; the Swift runtime then traps (SIGILL or SIGTRAP) and its backtrace would
    /// replace the one line. Such a thread now waits for the exit instead. A trap before
    /// any failure is left to the runtime's own handler.
    private static func holdTrapsWhileFailing() {
        for sig in [SIGILL, SIGTRAP, SIGABRT, SIGSEGV, SIGBUS] {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { _ in while true { pause() } }
            sigemptyset(&action.sa_mask)
            sigaction(sig, &action, nil)
        }
    }
}
