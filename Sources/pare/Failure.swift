import ArgumentParser
import Emit

#if canImport(Glibc)
import Glibc
#endif

/// Runs a command body, turning pare's errors into one line on stderr and exit status 1.
///
/// Usage errors never reach here: ArgumentParser reports them and exits with 64.
func reportingFailures(_ body: () throws -> Void) throws {
    do {
        try body()
    } catch let error as ExitCode {
        throw error
    } catch {
        let message = "\(error)".split(separator: "\n").joined(separator: " ")
        StandardStream.standardError.write("pare: error: \(message)\n")
        if case EmitError.interrupted? = error as? EmitError { throw ExitCode(Interruption.exitStatus) }
        if case .interrupted? = (error as? LockFailure)?.failure { throw ExitCode(Interruption.exitStatus) }
        throw ExitCode(1)
    }
}
