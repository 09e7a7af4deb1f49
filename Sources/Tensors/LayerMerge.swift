/// The LaCo layer merge, θ_l + Σ_k (θ_{l+k} − θ_l), element by element.
///
/// Computed in F32 from the original weights of every layer (never in place: updating
/// θ_l while summing would turn later differences into differences from the updated
/// value, which is not the formula). Terms are added in layer order, so the result is
/// reproducible bit for bit: `acc = θ_l; acc += (θ_{l+1} − θ_l); acc += (θ_{l+2} − θ_l); ...`
public enum LayerMerge {
    /// Elements widened per step: the scratch buffers stay small whatever the tensor.
    static let step = 1 << 16

    /// Merges `count` elements of dtype `dtype` (F32, F16 or BF16) into F32 `result`.
    public static func merge(
        count: Int, dtype: DType, base: UnsafeRawPointer, others: [UnsafeRawPointer],
        into result: UnsafeMutablePointer<Float>
    ) {
        precondition(dtype.isCastable, "LaCo merges float tensors only")
        let width = dtype.bitWidth / 8
        // Widen in bulk (the vectorised cast kernels) rather than per element.
        let baseScratch = UnsafeMutablePointer<Float>.allocate(capacity: step)
        let otherScratch = UnsafeMutablePointer<Float>.allocate(capacity: step)
        defer {
            baseScratch.deallocate()
            otherScratch.deallocate()
        }
        var start = 0
        while start < count {
            let n = min(step, count - start)
            FloatConversion.convert(count: n, from: dtype, base + start * width, to: .f32, baseScratch)
            let acc = result + start
            acc.update(from: baseScratch, count: n)
            for other in others {
                FloatConversion.convert(count: n, from: dtype, other + start * width, to: .f32, otherScratch)
                for i in 0..<n { acc[i] += otherScratch[i] - baseScratch[i] }
            }
            start += n
        }
    }
}
