import Emit
import Testing
import Tensors

/// The CUTLASS 2:4 layout against its spec (the doc comment of `CutlassLayout` and
/// tools/interop/SPARSE_FORMATS.md §2): torch's worked example and tables, with the
/// expected bits worked out by hand.
@Suite struct CutlassLayoutTests {
    let layout = CutlassLayout()

    /// The `.values` and `.meta` elements of a `[rows, values.count / rows]` weight of
    /// `dtype` after 2:4 magnitude pruning.
    func pack(_ values: [Float], rows: Int, dtype: DType, slices: Int = 1) -> (values: [UInt16], meta: [UInt16]) {
        let target = LayoutTesting.target(rows: rows, columns: values.count / rows, dtype: dtype)
        let items = layout.items(for: target, pruning: LayoutTesting.prune(target))
        let source = LayoutTesting.bytes(values, as: dtype)
        let parts = items.map { item in
            LayoutTesting.run(item.transform!, source: source, rows: rows, outputBytes: item.entry.byteCount, slices: slices)
                .withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)).map(UInt16.init(littleEndian:)) }
        }
        return (parts[0], parts[1])
    }

    func bits(_ values: [Float], _ dtype: DType) -> [UInt16] {
        LayoutTesting.bytes(values, as: dtype).withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)).map(UInt16.init(littleEndian:)) }
    }

    /// A `[32, 64]` weight, zero but for `row`.
    func weight(row: Int, _ values: [Float]) -> [Float] {
        var weight = [Float](repeating: 0, count: 32 * 64)
        weight.replaceSubrange(row * 64..<(row * 64 + values.count), with: values)
        return weight
    }

    @Test(arguments: [DType.f16, .bf16])
    func encodesTorchsWorkedExample(_ dtype: DType) {
        // Patterns 0101, 1001, 0011, 1010 → positions (1,3) (0,3) (2,3) (0,2) → nibbles
        // 0xD, 0xC, 0xE, 0x8 → 0x8ECD; every all-zero group gives 0xE, so 0xEEEE elsewhere.
        let parts = pack(weight(row: 0, [0, 1.5, 0, -2, 3, 0, 0, 4, 0, 0, 5, 6, 7, 0, 8, 0]), rows: 32, dtype: dtype)
        #expect(parts.values.count == 32 * 32)
        #expect(Array(parts.values[0..<8]) == bits([1.5, -2, 3, 4, 5, 6, 7, 8], dtype))
        #expect(parts.values[8...].allSatisfy { $0 == 0 })
        #expect(parts.meta.count == 32 * 4)
        #expect(parts.meta[0] == 0x8ECD)
        #expect(parts.meta[1...].allSatisfy { $0 == 0xEEEE })
    }

    /// torch's table: non-zero pattern (positions 0-3) → kept positions and nibble.
    static let patterns: [(String, Int, Int, UInt16)] = [
        ("1100", 0, 1, 0b0100), ("1010", 0, 2, 0b1000), ("1001", 0, 3, 0b1100), ("0110", 1, 2, 0b1001),
        ("0101", 1, 3, 0b1101), ("0011", 2, 3, 0b1110), ("0000", 2, 3, 0b1110), ("0001", 2, 3, 0b1110),
        ("0010", 2, 3, 0b1110), ("0100", 1, 2, 0b1001), ("1000", 0, 2, 0b1000),
    ]

    @Test(arguments: patterns)
    func encodesEachGroupPatternAsTorchDoes(_ pattern: String, _ first: Int, _ second: Int, _ nibble: UInt16) {
        // Every group of row 0 has the pattern, its non-zeros 1, 2 (or 2 alone).
        var group = [Float](repeating: 0, count: 4)
        var next: Float = pattern.filter { $0 == "1" }.count == 1 ? 2 : 1
        for (j, flag) in pattern.enumerated() where flag == "1" {
            group[j] = next
            next += 1
        }
        let parts = pack(weight(row: 0, Array(repeating: group, count: 16).flatMap { $0 }), rows: 32, dtype: .f16)
        #expect(Array(parts.values[0..<32]) == bits(Array(repeating: [group[first], group[second]], count: 16).flatMap { $0 }, .f16))
        // Row 0's four metadata elements sit at offsets 0, 2, 64, 66 (see the next test).
        let element = nibble | nibble << 4 | nibble << 8 | nibble << 12
        #expect([0, 2, 64, 66].map { parts.meta[$0] } == Array(repeating: element, count: 4))
    }

    @Test(arguments: [
        (0, [(0, 0), (0, 2), (16, 0), (16, 2)]), (8, [(0, 1), (0, 3), (16, 1), (16, 3)]),
        (16, [(1, 0), (1, 2), (17, 0), (17, 2)]), (1, [(2, 0), (2, 2), (18, 0), (18, 2)]),
        (31, [(15, 1), (15, 3), (31, 1), (31, 3)]),
    ])
    func reordersMetadataAsCutlassReadsIt(_ row: Int, _ places: [(Int, Int)]) {
        // m = 32, k = 64: metadata [32, 4]. Element c of the row's unordered metadata (its
        // groups 4c..4c+3) must land at meta[places[c]]. Each c gets its own pattern:
        // 1100, 1010, 1001, 0110 → nibbles 0x4, 0x8, 0xC, 0x9, repeated four times.
        let groups: [[Float]] = [[1, 2, 0, 0], [1, 0, 2, 0], [1, 0, 0, 2], [0, 1, 2, 0]]
        let elements: [UInt16] = [0x4444, 0x8888, 0xCCCC, 0x9999]
        let values = groups.flatMap { Array(repeating: $0, count: 4).flatMap { $0 } }
        let parts = pack(weight(row: row, values), rows: 32, dtype: .bf16)
        #expect(places.map { parts.meta[$0.0 * 4 + $0.1] } == elements)
        let others = Set(parts.meta.indices).subtracting(places.map { $0.0 * 4 + $0.1 })
        #expect(others.allSatisfy { parts.meta[$0] == 0xEEEE })
    }

    @Test(arguments: [(32, 64, DType.f16), (64, 128, .bf16), (96, 192, .f16), (32, 256, .bf16)])
    func decodesToThePrunedWeight(_ rows: Int, _ columns: Int, _ dtype: DType) {
        let values = LayoutTesting.randomRows(count: rows * columns, zeroEvery: 4, seed: UInt64(rows * 7 + columns))
        let target = LayoutTesting.target(rows: rows, columns: columns, dtype: dtype)
        let source = LayoutTesting.bytes(values, as: dtype)
        let pruned = LayoutTesting.run(LayoutTesting.prune(target), source: source, rows: rows, outputBytes: source.count)
            .withUnsafeBytes { Array($0.bindMemory(to: UInt16.self)).map(UInt16.init(littleEndian:)) }
        let parts = pack(values, rows: rows, dtype: dtype, slices: 4)

        // torch's sparse_semi_structured_to_dense_cutlass, from the spec: find each row's
        // metadata element through CUTLASS's reordering, then scatter the values to the
        // positions its nibbles name.
        let metaColumns = columns / 16
        var dense = [UInt16](repeating: 0, count: rows * columns)
        var seen = Set<Int>()
        var unordered = 0
        for r in 0..<rows {
            for c in 0..<metaColumns {
                var dr = (r / 32) * 32 + (r % 8) * 4 + (r % 32) / 8
                var dc = c
                if dr % 2 == 0 && dc % 2 == 1 {
                    dr += 1; dc -= 1
                } else if dr % 2 == 1 && dc % 2 == 0 {
                    dr -= 1; dc += 1
                }
                let offset = (dc / 2) * rows * 2 + dr * 2 + dc % 2
                seen.insert(offset)
                let element = parts.meta[offset]
                for q in 0..<4 {
                    let nibble = Int(element >> (4 * q) & 0xF)
                    let (i0, i1) = (nibble & 3, nibble >> 2)
                    if i0 >= i1 { unordered += 1 }
                    let group = (4 * c + q) * 4, value = r * columns / 2 + (4 * c + q) * 2
                    dense[r * columns + group + i0] = parts.values[value]
                    dense[r * columns + group + i1] = parts.values[value + 1]
                }
            }
        }
        #expect(seen.count == rows * metaColumns, "the reordering is not a permutation")
        #expect(unordered == 0, "groups whose nibbles do not name two positions in order")
        let difference = dense.indices.first { dense[$0] != pruned[$0] }
        #expect(difference == nil, "first difference at row \((difference ?? 0) / columns), column \((difference ?? 0) % columns)")
    }

    @Test func writesValuesAndMetadataInPlaceOfTheWeight() {
        let target = LayoutTesting.target(rows: 64, columns: 128, dtype: .bf16)
        let items = layout.items(for: target, pruning: LayoutTesting.prune(target))
        #expect(items.map(\.entry.name) == ["model.layers.0.mlp.down_proj.weight.values", "model.layers.0.mlp.down_proj.weight.meta"])
        #expect(items.map(\.entry.dtype) == [.bf16, .i16])
        #expect(items.map(\.entry.shape) == [[64, 64], [64, 8]])
    }

    @Test(arguments: [
        (32, 64, DType.f16, NMSparsity.InputDimension.last, nil), (64, 128, .bf16, .last, nil),
        (64, 96, .bf16, .last, "format-shape"), (48, 64, .f16, .last, "format-shape"),
        (32, 64, .f32, .last, "sparsify-dtype"), (32, 64, .f16, .first, "format-transposed"),
    ] as [(Int, Int, DType, NMSparsity.InputDimension, String?)])
    func refusesWhatTorchCannotTake(_ rows: Int, _ columns: Int, _ dtype: DType, _ input: NMSparsity.InputDimension, _ rule: String?) {
        let target = LayoutTesting.target(rows: rows, columns: columns, dtype: dtype, input: input)
        let refusal: LayoutError?
        do { try layout.check(target); refusal = nil } catch { refusal = error }
        #expect(refusal?.rule == rule)
        let name = "model.layers.0.mlp.down_proj.weight"
        switch (rows, columns, dtype) {
        case (64, 96, _):
            #expect(refusal?.description == "\(name): shape [64, 96] does not fit the cutlass layout: torch's CUTLASS 2:4 tensors need a column count divisible by 64, and it has 96; leave it out with --ignore [rule: format-shape]")
        case (48, _, _):
            #expect(refusal?.description == "\(name): shape [48, 64] does not fit the cutlass layout: torch's CUTLASS 2:4 tensors need a row count divisible by 32, and it has 48; leave it out with --ignore [rule: format-shape]")
        case (_, _, .f32):
            #expect(refusal?.description == "\(name): the cutlass format cannot hold F32 weights; CUTLASS 2:4 kernels take F16 or BF16; convert first with pare convert --dtype bf16 [rule: sparsify-dtype]")
        default:
            break
        }
    }

    @Test(arguments: [("2:4", nil), ("1:4", nil), ("4:8", "format-pattern"), ("2:3", "format-pattern")] as [(String, String?)])
    func holdsTwoFourPatternsOnly(_ pattern: String, _ rule: String?) {
        let refusal: LayoutError?
        do { try layout.check(NMPacking.Pattern(pattern)!); refusal = nil } catch { refusal = error }
        #expect(refusal?.rule == rule)
    }
}
