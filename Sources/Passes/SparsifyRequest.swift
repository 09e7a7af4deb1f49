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

    /// The layout of the sparse weights in the output.
    public enum Format: String, Sendable, CaseIterable {
        /// Ordinary safetensors with zeros in place (what Wanda and SparseGPT write).
        case dense
        /// compressed-tensors' sparse-24-bitmask layout, with `sparsity_config` in config.json.
        case compressedTensors = "compressed-tensors"
        /// Values `[m, k/2]` and metadata as torch's `SparseSemiStructuredTensorCUTLASS` takes them.
        case cutlass
        /// pare's own format, the sparse tensors N:M-packed.
        case pare
    }

    public var pattern: NMPacking.Pattern
    public var score: Score
    /// The statistics safetensors file (`<weight>.input_norm` per target), for `wanda`.
    public var statsPath: String?
    /// Replaces the default targets: every 2-D float tensor whose name this matches.
    public var targets: String?
    /// Leaves out targets whose name this matches.
    public var ignore: String?
    public var format: Format

    public init(
        pattern: NMPacking.Pattern, score: Score = .magnitude, statsPath: String? = nil,
        targets: String? = nil, ignore: String? = nil, format: Format = .dense
    ) {
        self.pattern = pattern
        self.score = score
        self.statsPath = statsPath
        self.targets = targets
        self.ignore = ignore
        self.format = format
    }

    /// Suffix of a statistics tensor after the weight's name.
    public static let statsSuffix = ".input_norm"

}

extension NMPacking.Pattern {
    /// Whether every tensor with this pattern is also 2:4 sparse, which the packed layouts
    /// (compressed-tensors, CUTLASS) hold: 1:2, or N ≤ 2 with M a multiple of 4.
    public var fitsTwoFour: Bool { (m == 2 && n == 1) || (m % 4 == 0 && n <= 2) }

    /// 2:4, the packed layouts' pattern.
    public static let twoFour = NMPacking.Pattern(n: 2, m: 4)!
}
