import OrderedJSON
import Tensors

/// A `config.json`, kept as read: key order, unknown keys and number spellings survive.
public struct ModelConfig: Sendable, Equatable {
    /// The parsed file; change it through `edit` (or `setDType`), which marks it for rewriting.
    public private(set) var json: JSONValue
    /// The file's original bytes, written back unchanged when nothing was edited.
    public let originalBytes: [UInt8]
    public private(set) var isModified = false

    public init(bytes: [UInt8], path: String) throws(ModelFolderError) {
        originalBytes = bytes
        do {
            json = try JSONParser.parse(bytes)
        } catch {
            throw .configNotJSON(path: path, reason: error.description)
        }
        guard json.objectMembers != nil else { throw .configNotObject(path: path) }
    }

    public static func read(path: String) throws(ModelFolderError) -> ModelConfig {
        do {
            let file = try MappedFile(path: path)
            let bytes = file.withBytes { Array($0) }
            return try ModelConfig(bytes: bytes, path: path)
        } catch let error as FileError {
            throw .io(error)
        } catch let error as ModelFolderError {
            throw error
        } catch {
            throw .configNotObject(path: path)
        }
    }

    /// The bytes to write: the original file when untouched, else the edited JSON laid out
    /// as transformers lays it out (two-space indent, trailing newline).
    public var bytes: [UInt8] {
        isModified ? Array((json.serialized(.pretty) + "\n").utf8) : originalBytes
    }

    /// Edits the JSON; the file is rewritten (laid out as transformers writes it) only if
    /// the edit changed something.
    public mutating func edit(_ body: (inout JSONValue) throws -> Void) rethrows {
        var copy = json
        try body(&copy)
        if copy != json {
            json = copy
            isModified = true
        }
    }

    /// Rewrites every `torch_dtype`/`dtype` entry (top level and nested sub-configs) that
    /// names a float dtype to `dtype`. Returns how many entries changed.
    @discardableResult
    public mutating func setDType(_ dtype: DType) -> Int {
        guard let name = dtype.torchName else { return 0 }
        var changed = 0
        json = Self.rewriteDType(json, to: name, changed: &changed)
        if changed > 0 { isModified = true }
        return changed
    }

    private static let floatNames: Set<String> = ["float32", "float16", "bfloat16", "float64", "float", "half"]

    private static func rewriteDType(_ value: JSONValue, to name: String, changed: inout Int) -> JSONValue {
        guard case .object(var members) = value else { return value }
        for i in members.indices {
            let key = members[i].key
            if key == "torch_dtype" || key == "dtype", let current = members[i].value.stringValue,
                floatNames.contains(current.hasPrefix("torch.") ? String(current.dropFirst(6)) : current)
            {
                if current != name {
                    members[i].value = .string(name)
                    changed += 1
                }
            } else if members[i].value.objectMembers != nil {
                members[i].value = rewriteDType(members[i].value, to: name, changed: &changed)
            }
        }
        return .object(members)
    }
}
