import ModelFolder
import OrderedJSON
import Tensors

/// An expected checkpoint: its config and a manifest of every tensor (name, dtype, shape,
/// SHA-256 of the bytes). `pare validate --golden` compares a model against one.
///
/// Goldens record what a trim of a fixture must produce, so any change in pare's output
/// (a different kept index, a config key, a byte) fails a test until the golden is
/// deliberately regenerated (`tools/make_goldens.sh`).
public struct Golden: Sendable {
    /// Config keys that legitimately differ between runs and are not compared.
    public static let ignoredConfigKeys: Set<String> = ["transformers_version", "_name_or_path"]

    public struct Entry: Sendable, Equatable {
        public var name: String
        public var dtype: String
        public var shape: [UInt64]
        public var sha256: String
    }

    public var config: JSONValue
    public var tensors: [Entry]
    /// Whatever else the file carries (e.g. which fixture and recipe it is for).
    public var extra: [(key: String, value: JSONValue)]

    /// The golden of `model` as it is now (reads every tensor's bytes to hash them).
    public init(of model: ModelFolder, extra: [(key: String, value: JSONValue)] = []) throws(ModelFolderError) {
        config = model.config?.json ?? .null
        tensors = try model.tensors.map { (tensor: ModelFolder.Tensor) throws(ModelFolderError) in
            Entry(name: tensor.info.name, dtype: tensor.info.dtype.name, shape: tensor.info.shape,
                  sha256: try TensorHasher.sha256(of: tensor, in: model))
        }.sorted { $0.name < $1.name }
        self.extra = extra
    }

    public var json: JSONValue {
        .object(extra + [
            ("ignored_config_keys", .array(Self.ignoredConfigKeys.sorted().map { .string($0) })),
            ("config", config),
            ("tensors", .array(tensors.map { entry in
                .object([("name", .string(entry.name)), ("dtype", .string(entry.dtype)),
                         ("shape", .array(entry.shape.map { .integer($0) })), ("sha256", .string(entry.sha256))])
            })),
        ])
    }

    public init(json: JSONValue, source: String) throws(GraphError) {
        func fail(_ problem: String) -> GraphError { .descriptorInvalid(source: source, problem: problem) }
        guard let config = json["config"], config.objectMembers != nil else { throw fail("a golden needs a \"config\" object") }
        guard let items = json["tensors"]?.arrayValue else { throw fail("a golden needs a \"tensors\" list") }
        var tensors: [Entry] = []
        for item in items {
            guard let name = item["name"]?.stringValue, let dtype = item["dtype"]?.stringValue,
                let shape = item["shape"]?.arrayValue?.compactMap(\.uint64Value), let sha = item["sha256"]?.stringValue
            else { throw fail("every tensor entry needs name, dtype, shape and sha256") }
            tensors.append(Entry(name: name, dtype: dtype, shape: shape, sha256: sha))
        }
        self.config = config
        self.tensors = tensors
        self.extra = (json.objectMembers ?? []).filter { !["config", "tensors", "ignored_config_keys"].contains($0.key) }
    }

    /// Every way `actual` differs from this golden, each as one sentence.
    public func differences(from actual: Golden) -> [String] {
        var result: [String] = []
        let expectedConfig = (config.objectMembers ?? []).filter { !Self.ignoredConfigKeys.contains($0.key) }
        let actualConfig = (actual.config.objectMembers ?? []).filter { !Self.ignoredConfigKeys.contains($0.key) }
        let actualByKey = Dictionary(actualConfig.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
        let expectedByKey = Dictionary(expectedConfig.map { ($0.key, $0.value) }, uniquingKeysWith: { $1 })
        for (key, value) in expectedConfig {
            guard let other = actualByKey[key] else {
                result.append("config.json lacks '\(key)' (expected \(value.serialized()))")
                continue
            }
            if !Self.same(other, value) { result.append("config.json '\(key)' is \(other.serialized()), expected \(value.serialized())") }
        }
        for (key, value) in actualConfig where expectedByKey[key] == nil {
            result.append("config.json has unexpected '\(key)' = \(value.serialized())")
        }
        let actualTensors = Dictionary(actual.tensors.map { ($0.name, $0) }, uniquingKeysWith: { $1 })
        let expectedNames = Set(tensors.map(\.name))
        for entry in tensors {
            guard let other = actualTensors[entry.name] else {
                result.append("tensor '\(entry.name)' is missing")
                continue
            }
            if other.dtype != entry.dtype || other.shape != entry.shape {
                result.append("tensor '\(entry.name)' is \(other.dtype) \(other.shape), expected \(entry.dtype) \(entry.shape)")
            } else if other.sha256 != entry.sha256 {
                result.append("tensor '\(entry.name)' has different bytes (sha256 \(other.sha256.prefix(12))…, expected \(entry.sha256.prefix(12))…)")
            }
        }
        for entry in actual.tensors where !expectedNames.contains(entry.name) {
            result.append("tensor '\(entry.name)' is not in the golden")
        }
        return result
    }
}

extension Golden {
    /// JSON equality with numbers compared by value (`1e-05` and `1e-5` are the same
    /// number; tools spell them differently).
    static func same(_ a: JSONValue, _ b: JSONValue) -> Bool {
        switch (a, b) {
        case let (.number(x), .number(y)): return x == y || (Double(x) != nil && Double(x) == Double(y))
        case let (.array(x), .array(y)): return x.count == y.count && zip(x, y).allSatisfy { same($0, $1) }
        case let (.object(x), .object(y)):
            return x.count == y.count && zip(x, y).allSatisfy { $0.key == $1.key && same($0.value, $1.value) }
        default: return a == b
        }
    }
}
