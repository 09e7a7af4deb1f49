import Testing

@testable import Tensors

/// The vector 2:4 kernel against the generic N:M pruning it must agree with: for each
/// group, the mask bits are the non-zero positions of the pruned row's kept elements and
/// the values are those elements in order.
@Suite struct SelectTwoOfFourTests {
    /// Weights from a small alphabet so magnitudes tie often (ties go to the lower
    /// index), with signed zeros, both signs of each value, infinities and NaNs.
    static func weights(groups: Int, seed: UInt64) -> [UInt16] {
        let alphabet: [UInt16] = [0x0000, 0x8000, 0x3F80, 0xBF80, 0x3F81, 0x4000, 0xC000, 0x7F80, 0xFF80, 0x7FC1, 0x0001, 0x8001]
        var state = seed
        return (0..<(groups * 4)).map { _ in
            state = state &* 6364136223846793005 &+ 1442695040888963407
            let r = state >> 33
            // Half the draws from the alphabet, half any bit pattern.
            return r & 1 == 0 ? alphabet[Int(r >> 1) % alphabet.count] : UInt16(truncatingIfNeeded: r >> 7)
        }
    }

    typealias Kernel = @Sendable (UnsafePointer<UInt16>, Int, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt16>?) -> Int

    static let kernels: [(String, Kernel)] = [
        ("dispatched", { NMSparsity.selectTwoOfFour($0, groups: $1, mask: $2, values: $3) }),
        ("portable", { NMSparsity.selectTwoOfFourPortable($0, groups: $1, mask: $2, values: $3) }),
    ]

    @Test(arguments: [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 64, 1001])
    func kernelsAgreeWithTheGenericPruning(groups: Int) {
        for seed in UInt64(1)...6 {
            let source = Self.weights(groups: groups, seed: seed &* 977 &+ UInt64(groups))
            var pruned = [UInt16](repeating: 0xFFFF, count: source.count)
            source.withUnsafeBytes { src in
                pruned.withUnsafeMutableBytes { dst in
                    NMSparsity.prune(src.baseAddress!, dtype: .bf16, columns: source.count, input: .last, rows: 0..<1,
                                     n: 2, m: 4, norms: nil, into: dst.baseAddress!)
                }
            }
            // Expected: kept = the positions the generic pruning left untouched.
            var expectedMask = [UInt8](repeating: 0, count: (groups + 1) / 2)
            var expectedValues: [UInt16] = []
            var expectedZeros = 0
            for g in 0..<groups {
                var kept: [Int] = []
                for j in 0..<4 where pruned[g * 4 + j] == source[g * 4 + j] && (source[g * 4 + j] & 0x7FFF != 0 || keptZero(source, g, j)) {
                    kept.append(j)
                }
                #expect(kept.count == 2, "group \(g) of seed \(seed)")
                for j in kept {
                    expectedMask[g / 2] |= 1 << UInt8(j + 4 * (g % 2))
                    expectedValues.append(source[g * 4 + j])
                    if source[g * 4 + j] & 0x7FFF == 0 { expectedZeros += 1 }
                }
            }
            for (name, kernel) in Self.kernels {
                var mask = [UInt8](repeating: 0xAA, count: (groups + 1) / 2)
                var values = [UInt16](repeating: 0xAAAA, count: groups * 2)
                let zeros = source.withUnsafeBufferPointer { src in
                    mask.withUnsafeMutableBufferPointer { m in
                        values.withUnsafeMutableBufferPointer { v in kernel(src.baseAddress!, groups, m.baseAddress!, v.baseAddress!) }
                    }
                }
                #expect(mask == expectedMask, "\(name), \(groups) groups, seed \(seed)")
                #expect(values == expectedValues, "\(name), \(groups) groups, seed \(seed)")
                #expect(zeros == expectedZeros, "\(name), \(groups) groups, seed \(seed)")
                // Either output alone gives the same bytes.
                var maskOnly = [UInt8](repeating: 0x55, count: (groups + 1) / 2)
                _ = source.withUnsafeBufferPointer { src in
                    maskOnly.withUnsafeMutableBufferPointer { kernel(src.baseAddress!, groups, $0.baseAddress!, nil) }
                }
                #expect(maskOnly == expectedMask, "\(name) mask alone")
            }
        }
    }

    /// Whether the zero-magnitude element `j` of group `g` is among the kept two (the
    /// pruned row cannot tell a kept zero from a dropped one): fewer than two elements of
    /// the group outrank it.
    func keptZero(_ source: [UInt16], _ g: Int, _ j: Int) -> Bool {
        let m = (0..<4).map { source[g * 4 + $0] & 0x7FFF }
        let outranked = (0..<4).filter { i in i != j && (m[i] > m[j] || (m[i] == m[j] && i < j)) }.count
        return outranked < 2
    }
}
