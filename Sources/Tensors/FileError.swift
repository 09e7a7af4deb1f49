#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed file operation, with the path and the reason in words.
///
/// Kept to three words of storage: with Swift 6.3 on Linux, a larger typed error thrown
/// from a class initialiser crashed at run time, so causes are an enum, not free text.
public struct FileError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Operation: String, Sendable {
        case open, stat, map, read, write, sync, rename, remove, createDirectory = "create directory"
        case list, copy, link
    }

    /// Why the operation failed.
    public enum Cause: Sendable, Equatable {
        /// The system's error code.
        case system(Int32)
        /// The path names a directory, FIFO, socket or device where a file was expected.
        case notARegularFile
        /// The file ended before data its header promised (it changed while being read).
        case fileShrank
    }

    public var operation: Operation
    public var path: String
    public var cause: Cause

    public init(_ operation: Operation, path: String, code: Int32 = errno) {
        self.init(operation, path: path, cause: .system(code))
    }

    public init(_ operation: Operation, path: String, cause: Cause) {
        self.operation = operation
        self.path = path
        self.cause = cause
    }

    /// Why it failed, in words, e.g. "No such file or directory".
    public var reason: String {
        switch cause {
        case .system(let code): return String(cString: strerror(code))
        case .notARegularFile: return "not a regular file"
        case .fileShrank: return "the file got shorter while pare was reading it"
        }
    }

    public var description: String { "could not \(operation.rawValue) '\(path)': \(reason)" }
}
