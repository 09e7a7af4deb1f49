#if canImport(Glibc)
import Glibc
#endif

/// Unbuffered writes to the standard streams.
enum StandardStream {
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
