import Emit
import Tensors

/// Why a run could not take the lock on what it replaces.
struct LockFailure: Error, CustomStringConvertible {
    let failure: FileLock.Failure

    var description: String {
        switch failure {
        case let .held(path, pid):
            return "\(path) is being replaced by another pare run (\(pid.map { "PID \($0)" } ?? "its PID unknown")); run again once it is done, or without --no-wait to wait for it"
        case let .interrupted(path):
            return "interrupted while waiting for another pare run to finish with \(path); nothing was written"
        case let .io(error):
            return "\(error)"
        }
    }
}

extension OutputOptions {
    /// Takes the lock on `path` (a model folder or file this run will swap a new one into)
    /// if it exists, so that two runs replacing the same place take turns and neither's
    /// update is lost. Waits, saying so once, unless `--no-wait`. Hold the result until the
    /// swap is done.
    func lock(replacing path: String) throws -> FileLock? {
        guard FileSystem.exists(path) else { return nil }
        Interruption.install()
        do {
            return try FileLock.acquire(
                PathName.trimTrailingSlashes(path), wait: !noWait, interrupted: { Interruption.isRequested },
                waiting: { pid in
                    let holder = pid.map { "PID \($0)" } ?? "another process"
                    StandardStream.standardError.write("pare: waiting for \(holder), which is replacing \(path) (--no-wait to fail instead)\n")
                })
        } catch {
            throw LockFailure(failure: error)
        }
    }
}
