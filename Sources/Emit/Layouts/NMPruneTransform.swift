import ModelFolder
import Tensors

/// The dense N:M-sparse form of a weight: its bytes with all but N of every M elements
/// along the input dimension set to zero (see `NMSparsity`).
public struct NMPruneTransform: TensorTransform {
    public let pattern: NMPacking.Pattern
    public let dtype: DType
    public let shape: [Int]
    public let input: NMSparsity.InputDimension
    /// Wanda's per-input-channel activation norms; `nil` scores by magnitude.
    public let norms: [Float]?

    public init(pattern: NMPacking.Pattern, dtype: DType, shape: [Int], input: NMSparsity.InputDimension, norms: [Float]?) {
        self.pattern = pattern
        self.dtype = dtype
        self.shape = shape
        self.input = input
        self.norms = norms
    }

    public var rowBlock: Int { input == .first ? pattern.m : 1 }

    public func apply(source: UnsafeRawBufferPointer, rows: Range<Int>, into output: UnsafeMutableRawPointer) {
        prune(source: source, rows: rows, into: output)
    }

    /// Calls `body` with the pruned rows `rows` (in a scratch buffer), for layouts that
    /// repack them.
    public func withPrunedRows<R>(source: UnsafeRawBufferPointer, rows: Range<Int>, _ body: (UnsafeRawPointer) -> R) -> R {
        let dense = PageBuffer(bytes: rows.count * shape[1] * dtype.bitWidth / 8)
        prune(source: source, rows: rows, into: dense.pointer)
        return body(dense.pointer)
    }

    /// Writes the pruned rows `rows` into `output`.
    public func prune(source: UnsafeRawBufferPointer, rows: Range<Int>, into output: UnsafeMutableRawPointer) {
        func run(_ norms: UnsafePointer<Float>?) {
            NMSparsity.prune(source.baseAddress!, dtype: dtype, columns: shape[1], input: input, rows: rows,
                             n: pattern.n, m: pattern.m, norms: norms, into: output)
        }
        if let norms {
            norms.withUnsafeBufferPointer { run($0.baseAddress) }
        } else {
            run(nil)
        }
    }
}
