import ModelFolder
import PareFormat
import Tensors

/// pare's own format, the pruned weights N:M-packed (the dense tensor comes back on reading).
public struct PareLayout: SparseLayout {
    public init() {}

    public var name: String { "pare" }
    public var weightFormat: WeightFormat { .pare }

    public func items(for target: SparseTarget, pruning prune: NMPruneTransform) -> [OutputItem] {
        var item = OutputItem(copying: target.source)
        item.encoding = Self.encoding(pattern: prune.pattern, input: target.input)
        item.transform = prune
        return [item]
    }

    /// The `.pare` encoding of a weight pruned along `input`. Groups run along the last
    /// dimension only for nn.Linear; a pruned Conv1D weight is half zeros in no row
    /// pattern, which the bitmask stores.
    public static func encoding(pattern: NMPacking.Pattern, input: NMSparsity.InputDimension) -> PareEncoding {
        input == .last ? .nm(pattern) : .bitmask
    }
}
