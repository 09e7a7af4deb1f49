import ModelFolder
import ModelGraph
import Tensors

/// The 2:4 layout torch's `SparseSemiStructuredTensorCUTLASS` takes for F16/BF16 weights:
/// the kept values `[m, k/2]` and 16-bit metadata `[m, k/16]`, reordered the way CUTLASS's
/// sparse GEMM reads it (`torch.sparse._semi_structured_conversions`, proven bit-exact
/// against `sparse_semi_structured_from_dense_cutlass` in the interop suite).
///
/// Each group of four gives two positions (i0, i1) and a nibble `i0 | i1 << 2`; four groups
/// of a row make one 16-bit metadata element. Which positions a group gives is decided
/// by its non-zero flags alone, by the same boolean formulas torch uses, so groups with
/// fewer than two non-zeros encode exactly as torch encodes them.
public struct CutlassLayout: SparseLayout {
    public init() {}

    public var name: String { "cutlass" }

    public func check(_ pattern: NMPacking.Pattern) throws(LayoutError) {
        try checkTwoFour(pattern)
    }

    public func check(_ target: SparseTarget) throws(LayoutError) {
        try checkNotTransposed(target)
        let dtype = target.source.info.dtype
        guard dtype == .f16 || dtype == .bf16 else {
            throw .unsupportedDType(tensor: target.name, dtype: dtype.name, format: name,
                                    fix: "CUTLASS 2:4 kernels take F16 or BF16; convert first with pare convert --dtype bf16")
        }
        let shape = target.source.info.shape
        if let reason = Self.unsupportedShape(rows: Int(shape[0]), columns: Int(shape[1])) {
            throw .shapeUnsupported(tensor: target.name, shape: shape, format: name, reason: reason)
        }
    }

    /// `<W>.values` and `<W>.meta` in place of `W`.
    public func items(for target: SparseTarget, pruning prune: NMPruneTransform) -> [OutputItem] {
        let info = target.source.info
        let rows = info.shape[0], columns = info.shape[1]
        return [
            OutputItem(source: target.source, entry: .init(name: info.name + ".values", dtype: info.dtype, shape: [rows, columns / 2]),
                       transform: Transform(prune: prune, part: .values)),
            OutputItem(source: target.source, entry: .init(name: info.name + ".meta", dtype: .i16, shape: [rows, columns / 16]),
                       transform: Transform(prune: prune, part: .metadata)),
        ]
    }

    public func rewrite(_ config: inout ModelConfig?, targets: [SparseTarget], model: ModelFolder, graph: ModelGraph?) -> [String] {
        ["the cutlass layout is not a checkpoint transformers loads: tools/load_cutlass.py builds torch's SparseSemiStructuredTensorCUTLASS from it (on a GPU)"]
    }

    /// Why a `[rows, columns]` weight cannot take this layout, or `nil`.
    public static func unsupportedShape(rows: Int, columns: Int) -> String? {
        // torch's SparseSemiStructuredTensorCUTLASS takes F16/BF16 weights of at least
        // 32 × 64, in multiples of those (its dense shape constraints).
        if rows % 32 != 0 { return "torch's CUTLASS 2:4 tensors need a row count divisible by 32, and it has \(rows); leave it out with --ignore" }
        if columns % 64 != 0 { return "torch's CUTLASS 2:4 tensors need a column count divisible by 64, and it has \(columns); leave it out with --ignore" }
        return nil
    }

    /// The two positions a group encodes, from its non-zero flags.
    @inline(__always)
    static func positions(_ nz0: Bool, _ nz1: Bool, _ nz3: Bool) -> (Int, Int) {
        let expr0 = nz0 && nz1, expr1 = !nz0 && nz1, expr2 = !nz0 && !nz1
        let bit0 = expr1, bit1 = expr2
        let bit2 = expr0 || expr2 || nz3
        let bit3 = expr1 || !nz1
        return ((bit0 ? 1 : 0) | (bit1 ? 2 : 0), (bit2 ? 1 : 0) | (bit3 ? 2 : 0))
    }

    /// Whether a 16-bit float is non-zero as torch's `!= 0` sees it (negative zero is zero).
    @inline(__always)
    static func isNonZero(_ bits: UInt16) -> Bool { bits & 0x7FFF != 0 }

    /// Writes rows `rows` of the values `[m, k/2]` of a 2:4-sparse `[m, k]` 16-bit tensor.
    static func values(_ dense: UnsafePointer<UInt16>, columns: Int, rows: Range<Int>, into output: UnsafeMutablePointer<UInt16>) {
        var out = output
        for row in rows {
            let line = dense + row * columns
            var g = 0
            while g < columns {
                let (i0, i1) = positions(isNonZero(line[g]), isNonZero(line[g + 1]), isNonZero(line[g + 3]))
                out[0] = line[g + i0]
                out[1] = line[g + i1]
                out += 2
                g += 4
            }
        }
    }

    /// Writes the reordered metadata `[m, k/16]` (int16) of a 2:4-sparse `[m, k]` tensor.
    static func metadata(_ dense: UnsafePointer<UInt16>, rows m: Int, columns: Int, into output: UnsafeMutablePointer<UInt16>) {
        let metaColumns = columns / 16
        for r in 0..<m {
            let line = dense + r * columns
            for c in 0..<metaColumns {
                var element: UInt16 = 0
                for q in 0..<4 {
                    let g = (c * 4 + q) * 4
                    let (i0, i1) = positions(isNonZero(line[g]), isNonZero(line[g + 1]), isNonZero(line[g + 3]))
                    element |= UInt16(i0 | i1 << 2) << UInt16(4 * q)
                }
                output[scatterOffset(row: r, column: c, rows: m)] = element
            }
        }
    }

    /// Where metadata element (row, column) goes: CUTLASS's row interleaving within groups
    /// of 32 rows, a swap inside 2×2 blocks, then a column-major layout interleaved by 2.
    @inline(__always)
    static func scatterOffset(row: Int, column: Int, rows m: Int) -> Int {
        let group = 32, interweave = 4
        var r = row / group * group + (row % 8) * interweave + (row % group) / 8
        var c = column
        let topRight = r % 2 == 0 && c % 2 == 1
        let bottomLeft = r % 2 == 1 && c % 2 == 0
        if topRight { r += 1; c -= 1 }
        if bottomLeft { r -= 1; c += 1 }
        return (c / 2) * m * 2 + r * 2 + c % 2
    }

    /// One output tensor of the layout, computed from the pruned weight.
    public struct Transform: TensorTransform {
        public enum Part: Sendable { case values, metadata }
        public let prune: NMPruneTransform
        public let part: Part

        public var rowBlock: Int { part == .values ? 1 : 0 }

        public func apply(source: UnsafeRawBufferPointer, rows: Range<Int>, into output: UnsafeMutableRawPointer) {
            let columns = prune.shape[1]
            let out = output.assumingMemoryBound(to: UInt16.self)
            prune.withPrunedRows(source: source, rows: rows) { pruned in
                let dense = pruned.assumingMemoryBound(to: UInt16.self)
                switch part {
                case .values: CutlassLayout.values(dense, columns: columns, rows: 0..<rows.count, into: out)
                case .metadata: CutlassLayout.metadata(dense, rows: rows.count, columns: columns, into: out)
                }
            }
        }
    }
}
