import ModelFolder
import ModelGraph
import Tensors

/// How pruned weights are stored in the output: one value of `pare sparsify --format`.
///
/// A layout refuses the patterns and targets it cannot hold, says which tensors each target
/// becomes (computed from the pruned weight as it is written), and changes config.json to
/// match. Adding one is a type conforming to this protocol plus a line in `LayoutRegistry`.
public protocol SparseLayout: Sendable {
    /// The `--format` name.
    var name: String { get }
    /// The format of the weight files written.
    var weightFormat: WeightFormat { get }
    /// Refuses a pattern the layout cannot hold, before any target is looked at.
    func check(_ pattern: NMPacking.Pattern) throws(LayoutError)
    /// Refuses a target the layout cannot hold.
    func check(_ target: SparseTarget) throws(LayoutError)
    /// The tensors written in place of `target`, each computed from the weight that `prune`
    /// prunes.
    func items(for target: SparseTarget, pruning prune: NMPruneTransform) -> [OutputItem]
    /// Makes `config` describe the output (every target of the model is given) and returns
    /// what the user should know about it, one sentence each.
    func rewrite(_ config: inout ModelConfig?, targets: [SparseTarget], model: ModelFolder, graph: ModelGraph?) -> [String]
}

extension SparseLayout {
    public var weightFormat: WeightFormat { .safetensors }
    public func check(_ pattern: NMPacking.Pattern) throws(LayoutError) {}
    public func check(_ target: SparseTarget) throws(LayoutError) {}
    public func rewrite(_ config: inout ModelConfig?, targets: [SparseTarget], model: ModelFolder, graph: ModelGraph?) -> [String] { [] }

    /// Refuses patterns that can keep more than two of an aligned group of four, for the
    /// layouts that store 2:4 groups.
    func checkTwoFour(_ pattern: NMPacking.Pattern) throws(LayoutError) {
        guard pattern.fitsTwoFour else { throw .formatNeedsPattern(format: name, pattern: pattern.description, needed: "2:4") }
    }

    /// Refuses Conv1D weights (groups down the columns), for the layouts defined on
    /// nn.Linear's `[out, in]`.
    func checkNotTransposed(_ target: SparseTarget) throws(LayoutError) {
        guard target.input == .last else { throw .transposedUnsupported(tensor: target.name, format: name) }
    }
}
