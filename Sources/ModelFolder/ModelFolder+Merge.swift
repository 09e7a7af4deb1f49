import ModelFolder
import SafeTensors
import Tensors

extension ModelFolder {
    /// Calls `body` with the bytes of several tensors at once (zero-copy views of
    /// safetensors shards; decoded copies for `.pare`).
    public func withBytes<R>(of tensors: [Tensor], _ body: ([UnsafeRawPointer]) -> R) throws(ModelFolderError) -> R {
        func nest(_ rest: ArraySlice<Tensor>, _ pointers: [UnsafeRawPointer]) -> Result<R, ModelFolderError> {
            guard let first = rest.first else { return .success(body(pointers)) }
            do {
                return try shards[first.shard].withBytes(of: first.info) { nest(rest.dropFirst(), pointers + [$0.baseAddress!]) }
            } catch {
                return .failure(error)
            }
        }
        return try nest(ArraySlice(tensors), []).get()
    }

    /// The LaCo merge of `base` with `others` (θ + Σ(θ_k − θ) in F32, see `LayerMerge`),
    /// rounded back to `base`'s dtype: the bytes a merged tensor is written with. Holds one
    /// tensor's F32 sum in memory.
    public func mergedBytes(base: Tensor, others: [Tensor]) throws(ModelFolderError) -> [UInt8] {
        let dtype = base.info.dtype
        let count = Int(base.info.elementCount)
        var sum = [Float](repeating: 0, count: count)
        try withBytes(of: [base] + others) { pointers in
            sum.withUnsafeMutableBufferPointer { out in
                LayerMerge.merge(count: count, dtype: dtype, base: pointers[0], others: Array(pointers.dropFirst()), into: out.baseAddress!)
            }
        }
        var result = [UInt8](repeating: 0, count: count * dtype.bitWidth / 8)
        sum.withUnsafeBytes { source in
            result.withUnsafeMutableBytes { destination in
                FloatConversion.convert(count: count, from: .f32, source.baseAddress!, to: dtype, destination.baseAddress!)
            }
        }
        return result
    }
}
