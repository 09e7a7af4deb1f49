import Testing

@testable import Tensors

/// The 2:4 kernel (vector and portable) against the generic N:M rule it must agree with:
/// for each group, the dense output keeps exactly the rule's two elements, the mask has
/// their bits and the values are those elements in order.
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

    typealias Kernel = @Sendable (UnsafePointer<UInt16>, Int, UnsafeMutablePointer<UInt8>?, UnsafeMutablePointer<UInt16>?, UnsafeMutablePointer<UInt16>?) -> Int

    static let kernels: [(String, Kernel)] = [
        ("dispatched", { NMSparsity.selectTwoOfFour($0, groups: $1, mask: $2, values: $3, dense: $4) }),
        ("portable", { NMSparsity.selectTwoOfFourPortable($0, groups: $1, mask: $2, values: $3, dense: $4) }),
    ]

    @Test(arguments: [1, 2, 3, 4, 5, 7, 8, 9, 16, 17, 31, 64, 1001])
    func kernelsAgreeWithTheGenericPruning(groups: Int) {
        for seed in UInt64(1)...6 {
            let source = Self.weights(groups: groups, seed: seed &* 977 &+ UInt64(groups))
            // The generic N:M rule (`keptPositions`, rank counting on the magnitudes as
            // Float scores) gives the expected kept positions of every group.
            var pruned = [UInt16](repeating: 0, count: source.count)
            var expectedMask = [UInt8](repeating: 0, count: (groups + 1) / 2)
            var expectedValues: [UInt16] = []
            var expectedZeros = 0
            for g in 0..<groups {
                let scores = (0..<4).map { Float(source[g * 4 + $0] & 0x7FFF) }
                let kept = scores.withUnsafeBufferPointer { NMSparsity.keptPositions($0.baseAddress!, m: 4, n: 2) }
                #expect(kept.nonzeroBitCount == 2)
                for j in 0..<4 where kept >> UInt32(j) & 1 == 1 {
                    let w = source[g * 4 + j]
                    pruned[g * 4 + j] = w
                    expectedMask[g / 2] |= 1 << UInt8(j + 4 * (g % 2))
                    expectedValues.append(w)
                    if w & 0x7FFF == 0 { expectedZeros += 1 }
                }
            }
            for (name, kernel) in Self.kernels {
                var mask = [UInt8](repeating: 0xAA, count: (groups + 1) / 2)
                var values = [UInt16](repeating: 0xAAAA, count: groups * 2)
                var dense = [UInt16](repeating: 0xAAAA, count: groups * 4)
                let zeros = source.withUnsafeBufferPointer { src in
                    mask.withUnsafeMutableBufferPointer { m in
                        values.withUnsafeMutableBufferPointer { v in
                            dense.withUnsafeMutableBufferPointer { d in kernel(src.baseAddress!, groups, m.baseAddress!, v.baseAddress!, d.baseAddress!) }
                        }
                    }
                }
                #expect(dense == pruned, "\(name), \(groups) groups, seed \(seed)")
                #expect(mask == expectedMask, "\(name), \(groups) groups, seed \(seed)")
                #expect(values == expectedValues, "\(name), \(groups) groups, seed \(seed)")
                #expect(zeros == expectedZeros, "\(name), \(groups) groups, seed \(seed)")
                // Either output alone gives the same bytes.
                var maskOnly = [UInt8](repeating: 0x55, count: (groups + 1) / 2)
                _ = source.withUnsafeBufferPointer { src in
                    maskOnly.withUnsafeMutableBufferPointer { kernel(src.baseAddress!, groups, $0.baseAddress!, nil, nil) }
                }
                #expect(maskOnly == expectedMask, "\(name) mask alone")
            }
        }
    }
}
