import Emit
import Tensors

/// What `pare sparsify` was asked: the pattern, how to score, which tensors, which layout.
public struct SparsifyRequest: Sendable {
    /// How elements are ranked inside a group.
    public enum Score: String, Sendable, CaseIterable {
        /// `|w|`.
        case magnitude
        /// `|w| · ‖x_j‖₂`, with per-input-channel activation norms from a statistics file.
        case wanda
    }

    public var pattern: NMPacking.Pattern
    public var score: Score
    /// The statistics safetensors file (`<weight>.input_norm` per target), for `wanda`.
    public var statsPath: String?
    /// Replaces the default targets: every 2-D float tensor whose name this matches.
    public var targets: String?
    /// Leaves out targets whose name this matches.
    public var ignore: String?
    /// How the sparse weights are stored (`--format`, see `LayoutRegistry`).
    public var layout: any SparseLayout

    public init(
        pattern: NMPacking.Pattern, score: Score = .magnitude, statsPath: String? = nil,
        targets: String? = nil, ignore: String? = nil, layout: any SparseLayout = DenseLayout()
    ) {
        self.pattern = pattern
        self.score = score
        self.statsPath = statsPath
        self.targets = targets
        self.ignore = ignore
        self.layout = layout
    }

    /// Suffix of a statistics tensor after the weight's name.
    public static let statsSuffix = ".input_norm"
}
