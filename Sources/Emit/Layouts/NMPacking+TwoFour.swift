import Tensors

extension NMPacking.Pattern {
    /// Whether every tensor with this pattern is also 2:4 sparse, which the packed layouts
    /// (compressed-tensors, CUTLASS) hold: 1:2, or N ≤ 2 with M a multiple of 4.
    public var fitsTwoFour: Bool { (m == 2 && n == 1) || (m % 4 == 0 && n <= 2) }

    /// 2:4, the packed layouts' pattern.
    public static let twoFour = NMPacking.Pattern(n: 2, m: 4)!
}
