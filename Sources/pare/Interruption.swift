#if canImport(Glibc)
import Glibc
#endif
import Synchronization

/// Ctrl-C and SIGTERM during long work: the first one asks the running job to stop at its
/// next step, so it can remove its staging files; a second one kills the process at once.
enum Interruption {
    private static let requested = Atomic<Bool>(false)

    static var isRequested: Bool { requested.load(ordering: .relaxed) }

    static func install() {
        for sig in [SIGINT, SIGTERM] {
            signal(sig) { number in
                Interruption.requested.store(true, ordering: .relaxed)
                signal(number, SIG_DFL)
            }
        }
    }
}
