import Emit
import ModelGraph
import Testing
import Tensors

/// compressed-tensors' `sparse-24-bitmask` layout against its spec (the doc comment of
/// `CompressedTensorsLayout` and tools/interop/SPARSE_FORMATS.md §1): the package's own
/// examples, with the expected bytes worked out by hand.
@Suite struct CompressedTensorsLayoutTests {
    let layout = CompressedTensorsLayout()

    /// The `.shape`, `.compressed` and `.bitmask` bytes of a `[rows, values.count / rows]`
    /// weight of `dtype` after 2:4 magnitude pruning.
    func pack(_ values: [Float], rows: Int, dtype: DType, slices: Int = 1) -> (shape: [UInt8], compressed: [UInt8], bitmask: [UInt8]) {
        let target = LayoutTesting.target(rows: rows, columns: values.count / rows, dtype: dtype)
        let items = layout.items(for: target, pruning: LayoutTesting.prune(target))
        let source = LayoutTesting.bytes(values, as: dtype)
        let parts = items.map { LayoutTesting.run($0.transform!, source: source, rows: rows, outputBytes: $0.entry.byteCount, slices: slices) }
        return (parts[0], parts[1], parts[2])
    }

    /// Little-endian I64s.
    func int64s(_ values: [Int64]) -> [UInt8] { values.flatMap { withUnsafeBytes(of: $0.littleEndian) { Array($0) } } }

    // F16 and F32 take the general path, BF16 (and F16) the fused 16-bit one.
    static let dtypes: [DType] = [.bf16, .f16, .f32]

    @Test(arguments: dtypes)
    func packsTheSpecsRowOfEight(_ dtype: DType) {
        // Already 2:4: groups keep {0, 3} and {0, 1} → bits 0, 3, 4, 5 = 1 + 8 + 16 + 32.
        let parts = pack([0.5, 0, 0, -0.9, 0.3, 0.4, 0, 0], rows: 1, dtype: dtype)
        #expect(parts.bitmask == [0x39])
        #expect(parts.compressed == LayoutTesting.bytes([0.5, -0.9, 0.3, 0.4], as: dtype))
        #expect(parts.shape == int64s([1, 8]))
        if dtype == .bf16 {
            // The values the package prints for this row.
            #expect(LayoutTesting.floats(parts.compressed, of: .bf16) == [0.5, -0.8984375, 0.30078125, 0.400390625])
        }
    }

    @Test(arguments: dtypes)
    func padsEachRowsMaskToWholeBytes(_ dtype: DType) {
        // Columns 9 and 11 of the third group are bits 1 and 3 of the second byte; its
        // high bits (columns 12-15, which do not exist) stay zero.
        let row: [Float] = [0.5, 0, 0, -0.9, 0.3, 0.4, 0, 0, 0, -0.25, 0, 0.125]
        let parts = pack(row + row.map { $0 == 0 ? 0 : -$0 }, rows: 2, dtype: dtype)
        #expect(parts.bitmask == [0x39, 0x0A, 0x39, 0x0A])
        let kept: [Float] = [0.5, -0.9, 0.3, 0.4, -0.25, 0.125]
        #expect(parts.compressed == LayoutTesting.bytes(kept + kept.map { -$0 }, as: dtype))
        #expect(parts.shape == int64s([2, 12]))
    }

    @Test(arguments: dtypes)
    func groupsWithFewerThanTwoNonZerosKeepThePackagesPositions(_ dtype: DType) {
        // Non-zero patterns 0000, 0001, 0010, 0100, 1000 keep {2,3} {2,3} {2,3} {1,3} {0,2}:
        // columns 2,3,6,7 | 10,11,13,15 | 16,18 → 0xCC, 0xAC, 0x05.
        let row: [Float] = [0, 0, 0, 0, 0, 0, 0, 0.75, 0, 0, 0.75, 0, 0, 0.75, 0, 0, 0.75, 0, 0, 0]
        let parts = pack(row, rows: 1, dtype: dtype)
        #expect(parts.bitmask == [0xCC, 0xAC, 0x05])
        #expect(parts.compressed == LayoutTesting.bytes([0, 0, 0, 0.75, 0.75, 0, 0.75, 0, 0.75, 0], as: dtype))
    }

    @Test(arguments: dtypes)
    func aKeptNegativeZeroTheTableDoesNotPickBecomesPositiveZero(_ dtype: DType) {
        // Pruning keeps 0.5 and the first zero, −0.0; numerically the group has one non-zero
        // at position 3, so the package keeps {2, 3}: +0.0 and 0.5.
        let parts = pack([-0.0, 0, 0, 0.5], rows: 1, dtype: dtype)
        #expect(parts.bitmask == [0x0C])
        #expect(parts.compressed == LayoutTesting.bytes([0, 0.5], as: dtype))
    }

    @Test(arguments: [(16, 64, DType.bf16), (8, 40, .f16), (5, 20, .f32), (9, 12, .bf16), (3, 36, .f16)])
    func decompressesToThePrunedWeight(_ rows: Int, _ columns: Int, _ dtype: DType) {
        let values = LayoutTesting.randomRows(count: rows * columns, zeroEvery: 3, seed: UInt64(rows * 1000 + columns))
        let target = LayoutTesting.target(rows: rows, columns: columns, dtype: dtype)
        let source = LayoutTesting.bytes(values, as: dtype)
        let pruned = LayoutTesting.run(LayoutTesting.prune(target), source: source, rows: rows, outputBytes: source.count)
        let parts = pack(values, rows: rows, dtype: dtype, slices: 3)
        #expect(parts.shape == int64s([Int64(rows), Int64(columns)]))

        // compressed-tensors' decompression: `dense[mask] = compressed`, the mask unpacked
        // LSB first, row by row.
        let width = dtype.bitWidth / 8
        let maskBytes = (columns + 7) / 8
        var dense = [UInt8](repeating: 0, count: rows * columns * width)
        for r in 0..<rows {
            var next = r * columns / 2
            for c in 0..<columns where parts.bitmask[r * maskBytes + c / 8] >> (c % 8) & 1 == 1 {
                dense.replaceSubrange((r * columns + c) * width..<(r * columns + c + 1) * width,
                                      with: parts.compressed[next * width..<(next + 1) * width])
                next += 1
            }
            #expect(next == (r + 1) * columns / 2, "row \(r) does not have k/2 bits set")
            for group in 0..<(columns / 4) {
                let bits = (0..<4).filter { j in parts.bitmask[r * maskBytes + (group * 4 + j) / 8] >> ((group * 4 + j) % 8) & 1 == 1 }
                #expect(bits.count == 2, "row \(r), group \(group)")
            }
            for c in columns..<(maskBytes * 8) {
                #expect(parts.bitmask[r * maskBytes + c / 8] >> (c % 8) & 1 == 0, "padding bit set in row \(r)")
            }
        }
        let difference = dense.indices.first { dense[$0] != pruned[$0] }
        #expect(difference == nil, "first difference at byte \(difference ?? 0)")
    }

    @Test func writesThreeTensorsInPlaceOfTheWeight() {
        let target = LayoutTesting.target(rows: 6, columns: 20, dtype: .bf16)
        let items = layout.items(for: target, pruning: LayoutTesting.prune(target))
        #expect(items.map(\.entry.name) == ["model.layers.0.mlp.down_proj.shape", "model.layers.0.mlp.down_proj.compressed", "model.layers.0.mlp.down_proj.bitmask"])
        #expect(items.map(\.entry.dtype) == [.i64, .bf16, .u8])
        #expect(items.map(\.entry.shape) == [[2, 1], [6, 10], [6, 3]])
        #expect(items.allSatisfy { $0.source == target.source && $0.transform != nil })
    }

    @Test(arguments: [("1:2", nil), ("1:4", nil), ("2:4", nil), ("2:8", nil), ("3:4", "format-pattern"), ("4:8", "format-pattern")] as [(String, String?)])
    func holdsTwoFourPatternsOnly(_ pattern: String, _ rule: String?) {
        let refusal: LayoutError?
        do { try layout.check(NMPacking.Pattern(pattern)!); refusal = nil } catch { refusal = error }
        #expect(refusal?.rule == rule)
        if rule != nil {
            #expect(refusal?.description == "the compressed-tensors format holds 2:4 sparsity only, not \(pattern); use --pattern 2:4 or another --format (dense, pare) [rule: format-pattern]")
        }
    }

    @Test(arguments: [
        (NMSparsity.InputDimension.last, Role.down, nil), (.last, .lmHead, nil), (.last, .router, nil),
        (.first, .down, "format-transposed"), (.last, .norm, "format-shape"), (.last, nil, "format-shape"),
    ] as [(NMSparsity.InputDimension, Role?, String?)])
    func refusesWhatItCannotDecompress(_ input: NMSparsity.InputDimension, _ role: Role?, _ rule: String?) {
        let target = LayoutTesting.target(rows: 8, columns: 16, dtype: .f16, input: input, role: role)
        let refusal: LayoutError?
        do { try layout.check(target); refusal = nil } catch { refusal = error }
        #expect(refusal?.rule == rule)
        if rule == "format-transposed" {
            #expect(refusal?.description == "model.layers.0.mlp.down_proj.weight: a GPT-2 Conv1D weight is stored [in, out], and the compressed-tensors layout is defined for nn.Linear's [out, in]; use --format dense or pare, or leave it out with --ignore [rule: format-transposed]")
        }
    }
}
