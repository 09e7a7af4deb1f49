import Dispatch
import ModelFolder
import SafeTensors

/// Keeps about `bytes` of source ahead of the item being written read in, so the disk
/// reads while the cores work; of a large tensor only its start (the kernel's own
/// read-ahead follows the reading from there).
struct Prefetcher {
    let input: ModelFolder
    let items: [OutputItem]
    /// The first item not yet asked for.
    private var through = 0

    init(input: ModelFolder, items: [OutputItem]) {
        self.input = input
        self.items = items
    }

    /// Source bytes read ahead of the tensor being written.
    static let bytes = 64 << 20

    private static let queue = DispatchQueue(label: "pare.prefetch")

    /// Asks for the items after `index`, the one about to be written, up to `bytes` ahead.
    mutating func advance(to index: Int) {
        func sources(_ item: OutputItem) -> [ModelFolder.Tensor] { item.contents != nil ? [] : [item.source] + item.mergeSources }
        var ahead = 0
        through = max(through, index + 1)
        for item in items[(index + 1)..<through] {
            for source in sources(item) { ahead += min(Int(source.info.byteCount), Self.bytes) }
        }
        while through < items.count, ahead < Self.bytes {
            var pending: [(WeightFile, TensorInfo, Int)] = []
            for source in sources(items[through]) {
                let limit = Self.bytes - ahead
                guard limit > 0 else { break }
                pending.append((input.shards[source.shard], source.info, limit))
                ahead += min(Int(source.info.byteCount), limit)
            }
            // madvise blocks while the kernel queues the reads: not on this thread.
            let work = pending
            Self.queue.async { for (file, info, limit) in work { file.prefetch(info, limit: limit) } }
            through += 1
        }
    }
}
