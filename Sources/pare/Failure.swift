import ArgumentParser
import ModelFolder

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
        FileHandleOutput.standardError.write("pare: error: \(message)\n")
        // 130 = 128 + SIGINT, the shell's convention for a job stopped by Ctrl-C.
        if case ModelFolderError.interrupted? = error as? ModelFolderError { throw ExitCode(130) }
        throw ExitCode(1)
    }
}

/// Unbuffered writes to the standard streams.
enum FileHandleOutput {
    case standardOutput, standardError

    var descriptor: Int32 { self == .standardOutput ? 1 : 2 }

    func write(_ text: String) {
        var bytes = Array(text.utf8)
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.write(descriptor, $0.baseAddress! + offset, $0.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                return
            }
            offset += n
        }
    }

    var isTerminal: Bool { isatty(descriptor) == 1 }
}
