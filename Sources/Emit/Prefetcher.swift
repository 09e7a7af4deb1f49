import Dispatch
import ModelFolder
import SafeTensors
import Tensors

/// Keeps about `bytes` of source ahead of the item being written read in, so the disk
/// reads while the cores work; of a large tensor only its start (the kernel's own
/// read-ahead follows the reading from there).
struct Prefetcher {
    let input: ModelFolder
    let items: [OutputItem]
    /// The first item not yet asked for.
    private var through = 0
    /// The item being written.
    private var current = -1
    /// The bytes asked for each item; their sum over the items after `current` is `ahead`.
    private var requested: [Int]
    private var ahead = 0

    init(input: ModelFolder, items: [OutputItem]) {
        self.input = input
        self.items = items
        requested = Array(repeating: 0, count: items.count)
    }

    /// Source bytes read ahead of the tensor being written.
    static let bytes = 64 << 20

    private static let queue = SerialWorker()

    /// Asks for the items after `index`, the one about to be written, up to `bytes` ahead.
    mutating func advance(to index: Int) {
        // A running sum, not a walk over the items ahead: with many small tensors the
        // window holds thousands of them, and walking it per item was quadratic.
        while current < index {
            current += 1
            if current < through { ahead -= requested[current] }
        }
        through = max(through, index + 1)
        while through < items.count, ahead < Self.bytes {
            var pending: [(WeightFile, TensorInfo, Int)] = []
            var asked = 0
            if items[through].contents == nil {
                for source in [items[through].source] + items[through].mergeSources {
                    let limit = Self.bytes - ahead - asked
                    guard limit > 0 else { break }
                    pending.append((input.shards[source.shard], source.info, limit))
                    asked += min(Int(source.info.byteCount), limit)
                }
            }
            requested[through] = asked
            ahead += asked
            // madvise blocks while the kernel queues the reads: not on this thread.
            if !pending.isEmpty {
                let work = pending
                Self.queue.async { for (file, info, limit) in work { file.prefetch(info, limit: limit) } }
            }
            through += 1
        }
    }
}
