#if canImport(Glibc)
import Glibc
#endif
import Tensors

/// A fresh directory under /tmp, removed when the value goes away.
public final class TemporaryDirectory {
    public let path: String

    /// `root` is the parent: /tmp by default, /dev/shm to test on tmpfs.
    public init(under root: String = "/tmp") {
        var template = Array((root + "/pare-test-XXXXXX").utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    deinit { try? FileSystem.removeTree(path) }

    public func file(_ name: String) -> String { path + "/" + name }
}

/// Builds a safetensors file's bytes from a header text and a data section.
public func safetensorsBytes(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    let json = Array(header.utf8)
    var bytes = withUnsafeBytes(of: (declaredLength ?? UInt64(json.count)).littleEndian) { Array($0) }
    bytes += json
    bytes += data
    return bytes
}

public func writeBytes(_ bytes: [UInt8], to path: String) throws {
    try FileSystem.writeFile(bytes, to: path)
}

public func readBytes(_ path: String) throws -> [UInt8] {
    try MappedFile(path: path).withBytes { Array($0) }
}

/// The committed fixtures, found from this file's location so tests run from any directory.
public enum Fixtures {
    public static let root: String = {
        var path = #filePath
        for _ in 0..<3 { path = PathName.parent(path) }  // .../Tests/TestSupport/TestSupport.swift -> repo
        return path + "/Tests/Fixtures/models"
    }()

    public static func model(_ name: String) -> String { root + "/" + name }

    public static let all = ["llama-gqa-f32", "llama-gqa-bf16", "llama-sharded", "qwen3", "mixtral", "qwen2-moe", "gpt2", "bert"]
}

/// Every file below `path` with its bytes, for before/after comparisons.
public func snapshot(_ path: String) throws -> [String: [UInt8]] {
    var result: [String: [UInt8]] = [:]
    func visit(_ relative: String) throws {
        let absolute = relative.isEmpty ? path : path + "/" + relative
        for name in try FileSystem.list(absolute) {
            let child = relative.isEmpty ? name : relative + "/" + name
            if FileSystem.kind(of: path + "/" + child) == .directory {
                try visit(child)
            } else {
                result[child] = try readBytes(path + "/" + child)
            }
        }
    }
    try visit("")
    return result
}

