#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Ctrl-C and SIGTERM during long work: the first one asks the running job to stop at its
/// next step, so it can remove its staging files; a second one kills the process at once.
enum Interruption {
    /// The signal received, or 0.
    private static let signalNumber = Atomic<Int32>(0)

    static var isRequested: Bool { signalNumber.load(ordering: .relaxed) != 0 }

    /// The shell's exit status for a job stopped by the signal received: 128 + its number
    /// (130 for Ctrl-C, 143 for SIGTERM).
    static var exitStatus: Int32 { 128 + max(signalNumber.load(ordering: .relaxed), SIGINT) }

    /// Seconds a run may take to stop after the first signal before it is ended anyway
    /// (a worker stuck in a system call never reaches its next step).
    static let grace: UInt32 = 10

    static func install() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { number in
                Interruption.signalNumber.store(number, ordering: .relaxed)
                signal(number, SIG_DFL)
                alarm(Interruption.grace)
            }
        }
        // Only async-signal-safe calls here: the next run removes what is left behind.
        signal(SIGALRM) { _ in
            let message = "pare: error: did not stop within \(Interruption.grace) s of the signal; ended\n"
            message.utf8CString.withUnsafeBufferPointer { _ = write(2, $0.baseAddress, $0.count - 1) }
            _exit(128 + Interruption.signalNumber.load(ordering: .relaxed))
        }
    }
}
