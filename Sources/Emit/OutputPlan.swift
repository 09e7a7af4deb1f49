import ModelFolder
import SafeTensors
import Tensors

/// The weight files of an output and the tensors each holds, decided before anything is
/// written: shards packed as transformers packs them, named as it names them.
public struct OutputPlan: Sendable {
    /// An output file and the tensors it holds.
    public struct Shard: Sendable {
        public var fileName: String
        public var items: [OutputItem]
        public var tensorBytes: Int { items.reduce(0) { $0 + $1.entry.byteCount } }
    }

    public let format: WeightFormat
    public let shards: [Shard]
    /// Whether the output is a bare weight file rather than a folder.
    public let writesSingleFile: Bool
    /// Every weight file's `__metadata__`.
    public let metadata: [(key: String, value: String)]

    /// Lays `items` (in order) out in shards of at most `maxShardSize` tensor bytes each,
    /// refusing a layout readers would not accept.
    init(input: ModelFolder, output: String, items: [OutputItem], format: WeightFormat, maxShardSize: Int) throws(EmitError) {
        self.format = format
        metadata = Self.outputMetadata(input.shards.first?.metadata)
        writesSingleFile = input.layout == .singleFile && output.hasSuffix(format.fileExtension)
        // Groups of positions, not of items: an item is a few hundred bytes, and a model of
        // a million tensors held every one twice while the groups grew.
        let groups = Self.packShards(items, limit: maxShardSize)
        if groups.count == 1 {
            let name = writesSingleFile ? PathName.lastComponent(output) : format.singleFileName
            // One group holds every item in order: the plan keeps the caller's array.
            shards = [Shard(fileName: name, items: items)]
        } else {
            if writesSingleFile { throw .singleFileNeedsShards(path: output, shards: groups.count) }
            shards = groups.enumerated().map { k, positions in
                Shard(fileName: format.shardName(k + 1, of: groups.count), items: positions.map { items[$0] })
            }
        }
        for shard in shards where format == .safetensors {
            let length = SafeTensorsWriter.headerLength(entries: shard.items.map(\.entry), metadata: metadata)
            if UInt64(length) > SafeTensorsHeader.maximumHeaderLength {
                throw .headerTooLarge(shard: shard.fileName, bytes: length)
            }
        }
    }

    /// Total tensor bytes of the output.
    public var tensorBytes: Int { shards.reduce(0) { $0 + $1.tensorBytes } }

    /// Splits tensors into shards exactly as huggingface_hub's `split_state_dict_into_shards`
    /// (which transformers' `save_pretrained` uses): greedy in tensor order, a new shard when
    /// the next tensor would push the current one over the limit, and a tensor larger than
    /// the limit alone in a shard of its own, placed where it was met, while the current
    /// shard stays open. Returns each shard's positions in `items`.
    static func packShards(_ items: [OutputItem], limit: Int) -> [[Int]] {
        var groups: [[Int]] = []
        var current: [Int] = []
        var currentSize = 0
        for (position, item) in items.enumerated() {
            let size = item.entry.byteCount
            if size > limit {
                groups.append([position])
                continue
            }
            if currentSize + size > limit {
                groups.append(current)
                current = []
                currentSize = 0
            }
            current.append(position)
            currentSize += size
        }
        if !current.isEmpty || groups.isEmpty { groups.append(current) }
        return groups
    }

    /// The input's `__metadata__`, with `format: pt` added when missing (transformers
    /// refuses a file without a format).
    static func outputMetadata(_ metadata: [(key: String, value: String)]?) -> [(key: String, value: String)] {
        var result = metadata ?? []
        if !result.contains(where: { $0.key == "format" }) {
            result.insert(("format", "pt"), at: 0)
        }
        return result
    }
}
