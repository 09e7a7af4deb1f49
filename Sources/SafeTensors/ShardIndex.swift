import OrderedJSON
import Tensors

/// A `model.safetensors.index.json`: which shard holds each tensor.
public struct ShardIndex: Sendable, Equatable {
    public static let fileName = "model.safetensors.index.json"

    /// Tensor name → shard file name, in the index's order.
    public var weightMap: [(tensor: String, shard: String)]
    /// The `metadata` object as read (e.g. `total_size`), kept for inspection.
    public var metadata: JSONValue?

    public static func == (lhs: ShardIndex, rhs: ShardIndex) -> Bool {
        lhs.weightMap.map(\.tensor) == rhs.weightMap.map(\.tensor)
            && lhs.weightMap.map(\.shard) == rhs.weightMap.map(\.shard) && lhs.metadata == rhs.metadata
    }

    public init(weightMap: [(tensor: String, shard: String)], metadata: JSONValue?) {
        self.weightMap = weightMap
        self.metadata = metadata
    }

    /// The shard file names, de-duplicated and sorted by name, so that
    /// `model-00001-of-00003` comes before `model-00002-of-00003`.
    public var shardNames: [String] {
        Array(Set(weightMap.map(\.shard))).sorted()
    }

    /// Reads and checks an index file's structure (not yet the shards it names).
    public static func read(path: String) throws(SafeTensorsError) -> ShardIndex {
        let json: JSONValue
        do {
            let file = try MappedFile(path: path)
            json = try file.withBytes { bytes throws(JSONParseError) in try JSONParser.parse(bytes) }
        } catch let error as FileError {
            throw .io(error)
        } catch let error as JSONParseError {
            throw .indexMalformed(path: path, problem: "the index is not valid JSON (\(error))")
        } catch {
            throw .indexMalformed(path: path, problem: "\(error)")
        }
        guard let map = json["weight_map"]?.objectMembers else {
            throw .indexMalformed(path: path, problem: "the index has no \"weight_map\" object")
        }
        var entries: [(tensor: String, shard: String)] = []
        var seen = Set<String>()
        for (tensor, shard) in map {
            guard let shardName = shard.stringValue else {
                throw .indexMalformed(path: path, problem: "weight_map['\(tensor)'] is not a file name")
            }
            guard !shardName.contains("/"), shardName != "..", shardName != ".", !shardName.isEmpty else {
                throw .indexMalformed(path: path, problem: "weight_map['\(tensor)'] names '\(shardName)', which is not a file beside the index")
            }
            guard seen.insert(tensor).inserted else {
                throw .indexMalformed(path: path, problem: "weight_map names tensor '\(tensor)' twice")
            }
            entries.append((tensor, shardName))
        }
        if let total = json["metadata"]?["total_size"], total.uint64Value == nil {
            throw .indexMalformed(path: path, problem: "metadata.total_size is \(total.serialized()), not a byte count")
        }
        return ShardIndex(weightMap: entries, metadata: json["metadata"])
    }

    /// The index as transformers writes it: `metadata.total_size`, then `weight_map` sorted by tensor name.
    public static func render(weightMap: [(tensor: String, shard: String)], totalSize: Int, totalParameters: UInt64) -> String {
        let sorted = weightMap.sorted { $0.tensor < $1.tensor }
        let json = JSONValue.object([
            ("metadata", .object([
                ("total_parameters", .integer(totalParameters)),
                ("total_size", .integer(totalSize)),
            ])),
            ("weight_map", .object(sorted.map { ($0.tensor, .string($0.shard)) })),
        ])
        return json.serialized(.pretty) + "\n"
    }

    /// `model-00002-of-00005.safetensors` (or another extension, e.g. `pare`).
    public static func shardName(_ index: Int, of count: Int, extension fileExtension: String = "safetensors") -> String {
        func pad(_ n: Int) -> String {
            let s = String(n)
            return String(repeating: "0", count: max(0, 5 - s.count)) + s
        }
        return "model-\(pad(index))-of-\(pad(count)).\(fileExtension)"
    }
}
