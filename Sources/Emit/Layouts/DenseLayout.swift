/// Ordinary safetensors with the pruned elements zero in place (what Wanda and SparseGPT
/// write): loads anywhere, saves nothing on disk.
public struct DenseLayout: SparseLayout {
    public init() {}

    public var name: String { "dense" }

    public func items(for target: SparseTarget, pruning prune: NMPruneTransform) -> [OutputItem] {
        var item = OutputItem(copying: target.source)
        item.transform = prune
        return [item]
    }
}
