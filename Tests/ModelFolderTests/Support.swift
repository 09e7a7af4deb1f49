#if canImport(Glibc)
import Glibc
#endif
import Tensors

/// A fresh directory under /tmp, removed when the value goes away.
final class TemporaryDirectory {
    let path: String

    init() {
        var template = Array("/tmp/pare-test-XXXXXX".utf8CString)
        path = template.withUnsafeMutableBufferPointer { String(cString: mkdtemp($0.baseAddress!)!) }
    }

    deinit { try? FileSystem.removeTree(path) }

    func file(_ name: String) -> String { path + "/" + name }
}

/// Builds a safetensors file's bytes from a header text and a data section.
func safetensorsBytes(header: String, data: [UInt8], declaredLength: UInt64? = nil) -> [UInt8] {
    let json = Array(header.utf8)
    var bytes = withUnsafeBytes(of: (declaredLength ?? UInt64(json.count)).littleEndian) { Array($0) }
    bytes += json
    bytes += data
    return bytes
}

func writeBytes(_ bytes: [UInt8], to path: String) throws {
    let file = try OutputFile(creating: path)
    try file.write(bytes)
    try file.close()
}

func readBytes(_ path: String) throws -> [UInt8] {
    try MappedFile(path: path).withBytes { Array($0) }
}

/// The committed fixtures, found from this file's location so tests run from any directory.
enum Fixtures {
    static let root: String = {
        var path = #filePath
        for _ in 0..<3 { path = PathName.parent(path) }  // .../Tests/ModelFolderTests/Support.swift -> repo
        return path + "/Tests/Fixtures/models"
    }()

    static func model(_ name: String) -> String { root + "/" + name }

    static let all = ["llama-gqa-f32", "llama-gqa-bf16", "llama-sharded", "qwen3", "mixtral", "qwen2-moe", "gpt2", "bert"]
}

/// Every file below `path` with its bytes, for before/after comparisons.
func snapshot(_ path: String) throws -> [String: [UInt8]] {
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
