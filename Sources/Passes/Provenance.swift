import ModelFolder
import OrderedJSON
import Tensors

/// What a run writes beside its output so the output can be audited and replayed: the
/// tool, the input, the command line, the resolved plan and, for a trim, the input's files
/// and tensor hashes. `pare-trim.json` is also a recipe (`--recipe`).
public struct Provenance: Sendable {
    /// `pare <version>`.
    public var tool: String
    /// The input as the user named it.
    public var input: String
    /// The command line, without the executable.
    public var request: String

    public init(tool: String, input: String, request: String) {
        self.tool = tool
        self.input = input
        self.request = request
    }

    /// The record: tool, input, request and plan, then `extra` members in order.
    public func record(plan: JSONValue, extra: [(key: String, value: JSONValue)] = []) -> JSONValue {
        .object([("tool", .string(tool)), ("input", .string(input)), ("request", .string(request)), ("plan", plan)] + extra)
    }

    /// The input's weight files (name and size), as a trim records them.
    public static func inputFiles(of model: ModelFolder) -> JSONValue {
        .array(model.shards.enumerated().map { i, shard in
            .object([("file", .string(PathName.lastComponent(model.shardNames[i]))), ("bytes", .integer(shard.fileSize))])
        })
    }

    /// Tensor digests as a trim records them.
    public static func tensorHashes(_ digests: [(name: String, sha256: String)]) -> JSONValue {
        .array(digests.map { .object([("name", .string($0.name)), ("sha256", .string($0.sha256))]) })
    }

    /// A record as the file the writer adds to the output folder.
    public static func file(_ name: String, _ record: JSONValue) -> (name: String, bytes: [UInt8]) {
        (name, Array((record.serialized(.pretty) + "\n").utf8))
    }
}
