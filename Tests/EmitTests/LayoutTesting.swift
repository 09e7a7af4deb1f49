import Emit
import ModelGraph
import SafeTensors
import Tensors
import TestSupport

@testable import ModelFolder

/// What the layout tests share: targets without a model, float rows in any float dtype,
/// and transforms run over a whole tensor.
enum LayoutTesting {
    /// A `[rows, columns]` weight of `dtype`, as a sparsify plan would target it.
    static func target(
        rows: Int, columns: Int, dtype: DType, input: NMSparsity.InputDimension = .last, role: Role? = .down,
        name: String = "model.layers.0.mlp.down_proj.weight"
    ) -> SparseTarget {
        let bytes = UInt64(rows * columns * dtype.bitWidth / 8)
        let info = TensorInfo(name: name, dtype: dtype, shape: [UInt64(rows), UInt64(columns)], dataOffsets: 0..<bytes)
        return SparseTarget(source: ModelFolder.Tensor(info: info, shard: 0), input: input, role: role)
    }

    /// 2:4 magnitude pruning of `target`, as `pare sparsify --pattern 2:4` does.
    static func prune(_ target: SparseTarget, pattern: NMPacking.Pattern = .twoFour) -> NMPruneTransform {
        let info = target.source.info
        return NMPruneTransform(pattern: pattern, dtype: info.dtype, shape: info.shape.map { Int($0) }, input: target.input, norms: nil)
    }

    /// The bytes of `values` stored as `dtype` (exact for values the dtype holds).
    static func bytes(_ values: [Float], as dtype: DType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count * dtype.bitWidth / 8)
        values.withUnsafeBytes { source in
            out.withUnsafeMutableBytes { FloatConversion.convert(count: values.count, from: .f32, source.baseAddress!, to: dtype, $0.baseAddress!) }
        }
        return out
    }

    /// The values of `bytes` of `dtype`, widened to F32.
    static func floats(_ bytes: [UInt8], of dtype: DType) -> [Float] {
        let count = bytes.count / (dtype.bitWidth / 8)
        var out = [Float](repeating: 0, count: count)
        bytes.withUnsafeBytes { source in
            out.withUnsafeMutableBytes { FloatConversion.convert(count: count, from: dtype, source.baseAddress!, to: .f32, $0.baseAddress!) }
        }
        return out
    }

    /// Runs `transform` over every row of `source` into an output of `count` bytes, in
    /// `slices` calls of consecutive rows when its output is laid out by rows (as the
    /// writer's steps and cores do).
    static func run(_ transform: some TensorTransform, source: [UInt8], rows: Int, outputBytes count: Int, slices: Int = 1) -> [UInt8] {
        var out = [UInt8](repeating: 0xA5, count: count)
        let parts = transform.rowBlock > 0 ? max(1, min(slices, rows)) : 1
        source.withUnsafeBytes { source in
            out.withUnsafeMutableBytes { output in
                var start = 0
                for part in 0..<parts {
                    let end = rows * (part + 1) / parts
                    transform.apply(source: source, rows: start..<end, into: output.baseAddress! + count / rows * start)
                    start = end
                }
            }
        }
        return out
    }

    /// Random rows with about one element in `zeroEvery` exactly +0.0 (so that groups with
    /// fewer than two non-zeros occur), each value exact in every float dtype.
    static func randomRows(count: Int, zeroEvery: Int, seed: UInt64) -> [Float] {
        var random = SplitMix64(seed: seed)
        return (0..<count).map { _ in
            if Int.random(in: 0..<zeroEvery, using: &random) == 0 { return 0 }
            // Eight significant bits at most: exact in BF16, F16 and F32.
            let value = Float(Int.random(in: 1...255, using: &random)) / 32
            return Bool.random(using: &random) ? value : -value
        }
    }
}
