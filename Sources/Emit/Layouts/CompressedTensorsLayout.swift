import ModelFolder
import ModelGraph
import OrderedJSON
import Tensors

/// compressed-tensors' `sparse-24-bitmask` layout (the format of its 0.14.0.1 release):
/// each 2:4-sparse `<module>.weight [m, k]` becomes `<module>.compressed [m, k/2]` (the
/// kept values, row by row, in position order), `<module>.bitmask [m, ⌈k/8⌉]` (U8, one
/// bit per element, LSB first within each byte, each row padded to whole bytes) and
/// `<module>.shape` (I64 `[2, 1]`: m and k). Decompressing scatters each row's values to
/// its set bits, so the mask must have exactly k/2 bits per row: a group the pruning left
/// with fewer than two non-zeros marks zero positions as kept, the ones the package's own
/// compressor picks (`sparseGroupPositions`).
public struct CompressedTensorsLayout: SparseLayout {
    public init() {}

    public var name: String { "compressed-tensors" }

    public func check(_ pattern: NMPacking.Pattern) throws(LayoutError) {
        try checkTwoFour(pattern)
    }

    public func check(_ target: SparseTarget) throws(LayoutError) {
        try checkNotTransposed(target)
        guard target.role?.isLinearModule ?? false else {
            throw .shapeUnsupported(tensor: target.name, shape: target.source.info.shape, format: name,
                                    reason: "compressed-tensors decompresses nn.Linear modules only, and the architecture descriptor does not name this tensor a linear weight")
        }
    }

    public func items(for target: SparseTarget, pruning prune: NMPruneTransform) -> [OutputItem] {
        let info = target.source.info
        let prefix = Self.prefix(of: info.name)
        let rows = info.shape[0], columns = info.shape[1]
        let parts: [(String, DType, [UInt64], Transform.Part)] = [
            ("shape", .i64, [2, 1], .shape),
            ("compressed", info.dtype, [rows, columns / 2], .compressed),
            ("bitmask", .u8, [rows, (columns + 7) / 8], .bitmask),
        ]
        return parts.map { suffix, dtype, shape, part in
            OutputItem(source: target.source, entry: .init(name: "\(prefix).\(suffix)", dtype: dtype, shape: shape),
                       transform: Transform(prune: prune, part: part))
        }
    }

    /// Adds `quantization_config` with the `sparsity_config` compressed-tensors reads.
    public func rewrite(_ config: inout ModelConfig?, targets: [SparseTarget], model: ModelFolder, graph: ModelGraph?) -> [String] {
        let quantization = Self.quantizationConfig(targets: targets, model: model, graph: graph)
        config?.edit { $0.set("quantization_config", to: quantization, appendIfMissing: true) }
        return ["current vLLM releases no longer run compressed-tensors' sparse-24-bitmask format, and transformers 5 with compressed-tensors ≥ 0.20 loads it without error but with random weights; it is read correctly by compressed-tensors 0.14.0.1 with transformers 4.57. For today's runtimes use --format dense"]
    }

    /// The module prefix of a weight name (`a.b.weight` → `a.b`).
    public static func prefix(of name: String) -> String {
        name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name
    }

    /// The `quantization_config` compressed-tensors 0.14.0.1 writes for a sparse-only
    /// model: `targets: ["Linear"]` and every other `nn.Linear` module in `ignore` —
    /// including ones without a tensor in the file (a tied `lm_head`), since transformers
    /// 4.57 replaces every matched module's weight and fails on one it cannot fill.
    static func quantizationConfig(targets: [SparseTarget], model: ModelFolder, graph: ModelGraph?) -> JSONValue {
        let compressed = Set(targets.map { prefix(of: $0.name) })
        var ignore: [String] = []
        if let graph {
            for (index, spec) in graph.descriptor.tensors.enumerated() {
                guard spec.role.isLinearModule, spec.name.hasSuffix(".weight") else { continue }
                for name in graph.instances(ofTemplate: index) where !compressed.contains(prefix(of: name)) {
                    ignore.append(prefix(of: name))
                }
            }
        }
        let pruned = targets.reduce(UInt64(0)) { total, target in
            let pattern = NMPacking.Pattern.twoFour
            return total + target.source.info.elementCount / UInt64(pattern.m) * UInt64(pattern.m - pattern.n)
        }
        // Informational only (compressed-tensors never reads it): the share of zeros the
        // pruning made, over every parameter.
        let share: Double = model.parameterCount > 0 ? Double(pruned) / Double(model.parameterCount) : 0
        let sparsity: [(key: String, value: JSONValue)] = [
            ("format", .string("sparse-24-bitmask")),
            ("global_sparsity", .number(String(share))),
            ("ignore", .array(ignore.map { JSONValue.string($0) })),
            ("registry_requires_subclass", .bool(false)),
            ("sparsity_structure", .string("2:4")),
            ("targets", .array([.string("Linear")])),
        ]
        return .object([
            ("quant_method", .string("compressed-tensors")),
            ("sparsity_config", .object(sparsity)),
            ("transform_config", .object([])),
            ("version", .string("0.14.0.1")),
        ])
    }

    /// The two kept positions of a group with fewer than two non-zero elements, as
    /// compressed-tensors' CPU `topk(2)` of the magnitudes picks them (measured on torch
    /// 2.13 for every such pattern), indexed by the non-zero flags (bit j = position j).
    /// With these, pare's files equal the package's own, byte for byte.
    static let sparseGroupPositions: [UInt8: (Int, Int)] = [
        0b0000: (2, 3), 0b1000: (2, 3), 0b0100: (2, 3), 0b0010: (1, 3), 0b0001: (0, 2),
    ]

    /// The two kept positions of every non-zero pattern of a group (bit j = position j),
    /// as `(first, second)` packed in a byte: the non-zero pair itself, or the package's
    /// pick when fewer than two are non-zero. Patterns with more than two never occur.
    static let positionsByFlags: [UInt8] = (0..<16).map { flags -> UInt8 in
        let f = UInt8(flags)
        if f.nonzeroBitCount == 2 { return UInt8(f.trailingZeroBitCount) | UInt8((f & (f - 1)).trailingZeroBitCount) << 4 }
        guard let pair = sparseGroupPositions[f] else { return 0 }
        return UInt8(pair.0) | UInt8(pair.1) << 4
    }

    /// One output tensor of the layout, computed from the pruned weight.
    public struct Transform: TensorTransform {
        public enum Part: Sendable { case compressed, bitmask, shape }
        public let prune: NMPruneTransform
        public let part: Part

        public var rowBlock: Int { part == .shape ? 0 : 1 }

        public func apply(source: UnsafeRawBufferPointer, rows: Range<Int>, into output: UnsafeMutableRawPointer) {
            let columns = prune.shape[1]
            if part == .shape {
                output.storeBytes(of: Int64(prune.shape[0]).littleEndian, toByteOffset: 0, as: Int64.self)
                output.storeBytes(of: Int64(columns).littleEndian, toByteOffset: 8, as: Int64.self)
                return
            }
            let width = prune.dtype.bitWidth / 8
            if width == 2, prune.norms == nil, prune.pattern == .twoFour, prune.input == .last {
                writeFused(source, rows: rows, columns: columns, into: output)
                return
            }
            prune.withPrunedRows(source: source, rows: rows) { dense in
                write(dense, rows: rows.count, columns: columns, width: width, into: output)
            }
        }

        /// `write` fused with 2:4 magnitude pruning of 16-bit weights, straight from the
        /// source rows: the same bytes without the pruned copy in between. The vector kernel
        /// does each row; a row where it keeps an element of zero magnitude goes the general
        /// way (pruned, then packed by `write`), since the package then picks positions of
        /// its own (`sparseGroupPositions`).
        private func writeFused(_ source: UnsafeRawBufferPointer, rows: Range<Int>, columns: Int, into output: UnsafeMutableRawPointer) {
            let rowBytes = part == .compressed ? columns : (columns + 7) / 8
            for (k, row) in rows.enumerated() {
                let src = source.baseAddress!.assumingMemoryBound(to: UInt16.self) + row * columns
                let out = output + k * rowBytes
                let zeros = part == .compressed
                    ? NMSparsity.selectTwoOfFour(src, groups: columns / 4, mask: nil, values: out.assumingMemoryBound(to: UInt16.self))
                    : NMSparsity.selectTwoOfFour(src, groups: columns / 4, mask: out.assumingMemoryBound(to: UInt8.self), values: nil)
                if zeros > 0 {
                    prune.withPrunedRows(source: source, rows: row..<(row + 1)) { dense in
                        write(dense, rows: 1, columns: columns, width: 2, into: out)
                    }
                }
            }
        }

        /// Packs pruned rows into this part's bytes: per group of four, the positions of its
        /// two non-zero elements, or `sparseGroupPositions`' pick when it has fewer.
        /// "Non-zero" is numeric here (|x| ≠ 0), as the package sees it, so a kept −0.0
        /// the table does not pick becomes the +0.0 of another position, exactly as in
        /// the package's own files.
        private func write(_ dense: UnsafeRawPointer, rows: Int, columns: Int, width: Int, into output: UnsafeMutableRawPointer) {
            let maskBytes = (columns + 7) / 8
            let magnitudeBits: UInt64 = width == 2 ? 0x7FFF : 0x7FFF_FFFF
            for k in 0..<rows {
                let row = dense + k * columns * width
                let values = output + k * columns / 2 * width
                let mask = (output + k * maskBytes).assumingMemoryBound(to: UInt8.self)
                if part == .bitmask { mask.update(repeating: 0, count: maskBytes) }
                var kept = 0
                for group in 0..<(columns / 4) {
                    var flags: UInt8 = 0
                    for j in 0..<4 {
                        let offset = (group * 4 + j) * width
                        let bits = width == 2 ? UInt64(row.loadUnaligned(fromByteOffset: offset, as: UInt16.self))
                                              : UInt64(row.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
                        if bits & magnitudeBits != 0 { flags |= 1 << UInt8(j) }
                    }
                    let pair = positionsByFlags[Int(flags)]
                    let first = group * 4 + Int(pair & 0xF), second = group * 4 + Int(pair >> 4)
                    switch part {
                    case .compressed:
                        (values + kept * width).copyMemory(from: row + first * width, byteCount: width)
                        (values + (kept + 1) * width).copyMemory(from: row + second * width, byteCount: width)
                    case .bitmask:
                        mask[first / 8] |= 1 << UInt8(first % 8)
                        mask[second / 8] |= 1 << UInt8(second % 8)
                    case .shape:
                        break
                    }
                    kept += 2
                }
            }
        }
    }
}

