import ModelFolder
import OrderedJSON
import Tensors

/// compressed-tensors' `sparse-24-bitmask` layout (the format of its 0.14.0.1 release):
/// each 2:4-sparse `<module>.weight [m, k]` becomes `<module>.compressed [m, k/2]` (the
/// kept values, row by row, in position order), `<module>.bitmask [m, ⌈k/8⌉]` (U8, one
/// bit per element, LSB first within each byte, each row padded to whole bytes) and
/// `<module>.shape` (I32 `[2, 1]`: m and k). Decompressing scatters each row's values to
/// its set bits, so the mask must have exactly k/2 bits per row: a group the pruning left
/// with fewer than two non-zeros marks its lowest zero positions as kept.
public enum CompressedTensorsLayout {
    /// The module prefix of a weight name (`a.b.weight` → `a.b`).
    public static func prefix(of name: String) -> String {
        name.hasSuffix(".weight") ? String(name.dropLast(".weight".count)) : name
    }

    /// The `quantization_config` that tells compressed-tensors (and transformers through it)
    /// which modules hold compressed weights: every `Linear` except the modules left dense.
    static func quantizationConfig(targets: [SparsifyPlan.Target], model: ModelFolder, pattern: NMPacking.Pattern) -> JSONValue {
        let sparse = Set(targets.map { prefix(of: $0.name) })
        var ignore: [String] = []
        for tensor in model.tensors where tensor.info.shape.count == 2 && tensor.info.name.hasSuffix(".weight") {
            let module = prefix(of: tensor.info.name)
            if !sparse.contains(module) { ignore.append(module) }
        }
        let total = model.tensors.filter { $0.info.shape.count == 2 }.reduce(UInt64(0)) { $0 + $1.info.elementCount }
        let pruned = targets.reduce(UInt64(0)) { $0 + $1.source.info.elementCount } / UInt64(pattern.m) * UInt64(pattern.m - pattern.n)
        let share: Double = total > 0 ? Double(pruned) / Double(total) : 0
        let ignored: [JSONValue] = ignore.map { JSONValue.string($0) }
        let sparsity: [(key: String, value: JSONValue)] = [
            ("format", .string("sparse-24-bitmask")),
            ("global_sparsity", .number(String(share))),
            ("ignore", .array(ignored)),
            ("registry_requires_subclass", .bool(false)),
            ("sparsity_structure", .string(pattern.description)),
            ("targets", .array([.string("Linear")])),
        ]
        return .object([
            ("quant_method", .string("compressed-tensors")),
            ("sparsity_config", .object(sparsity)),
            ("version", .string("0.14.0.1")),
        ])
    }

    /// One output tensor of the layout, computed from the pruned weight.
    public struct Transform: TensorTransform {
        public enum Part: Sendable { case compressed, bitmask, shape }
        public let prune: NMPruneTransform
        public let part: Part

        public init(prune: NMPruneTransform, part: Part) {
            self.prune = prune
            self.part = part
        }

        public var rowBlock: Int { part == .shape ? 0 : 1 }

        public func apply(source: UnsafeRawBufferPointer, rows: Range<Int>, into output: UnsafeMutableRawPointer) {
            let columns = prune.shape[1]
            if part == .shape {
                output.storeBytes(of: Int32(prune.shape[0]).littleEndian, toByteOffset: 0, as: Int32.self)
                output.storeBytes(of: Int32(columns).littleEndian, toByteOffset: 4, as: Int32.self)
                return
            }
            let width = prune.dtype.bitWidth / 8
            prune.withPrunedRows(source: source, rows: rows) { dense in
                write(dense, rows: rows.count, columns: columns, width: width, into: output)
            }
        }

        /// Packs pruned rows into this part's bytes.
        private func write(_ dense: UnsafeRawPointer, rows: Int, columns: Int, width: Int, into output: UnsafeMutableRawPointer) {
            let pattern = prune.pattern
            let positions = UnsafeMutablePointer<UInt8>.allocate(capacity: max(1, pattern.indexBytes(elements: columns)))
            defer { positions.deallocate() }
            let values = UnsafeMutableRawPointer.allocate(byteCount: max(1, columns / 2 * width), alignment: 64)
            defer { values.deallocate() }
            let maskBytes = (columns + 7) / 8
            for k in 0..<rows {
                let row = dense + k * columns * width
                let failed: Int? = width == 2
                    ? NMPacking.pack(row.assumingMemoryBound(to: UInt16.self), count: columns, pattern: pattern,
                                     values: values.assumingMemoryBound(to: UInt16.self), indices: positions)
                    : NMPacking.pack(row.assumingMemoryBound(to: UInt32.self), count: columns, pattern: pattern,
                                     values: values.assumingMemoryBound(to: UInt32.self), indices: positions)
                precondition(failed == nil, "pruning left a group denser than \(pattern)")
                switch part {
                case .compressed:
                    (output + k * columns / 2 * width).copyMemory(from: values, byteCount: columns / 2 * width)
                case .bitmask:
                    let mask = (output + k * maskBytes).assumingMemoryBound(to: UInt8.self)
                    mask.update(repeating: 0, count: maskBytes)
                    var reader = BitReader(positions)
                    for group in 0..<(columns / pattern.m) {
                        for _ in 0..<pattern.n {
                            let element = group * pattern.m + Int(reader.next(bits: pattern.indexBits))
                            mask[element / 8] |= 1 << UInt8(element % 8)
                        }
                    }
                case .shape:
                    break
                }
            }
        }
    }
}

