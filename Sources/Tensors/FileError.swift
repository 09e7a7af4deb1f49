#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A failed file operation, with the path and the system's reason in words.
public struct FileError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Operation: String, Sendable {
        case open, stat, map, read, write, sync, rename, remove, createDirectory = "create directory"
        case list, copy, link
    }

    public var operation: Operation
    public var path: String
    public var code: Int32

    public init(_ operation: Operation, path: String, code: Int32 = errno) {
        self.operation = operation
        self.path = path
        self.code = code
    }

    /// The system's text for the error code, e.g. "No such file or directory".
    public var reason: String { String(cString: strerror(code)) }

    public var description: String { "could not \(operation.rawValue) '\(path)': \(reason)" }
}
