/// The LaCo layer merge, θ_l + Σ_k (θ_{l+k} − θ_l), element by element.
///
/// Computed in F32 from the original weights of every layer (never in place: updating
/// θ_l while summing would turn later differences into differences from the updated
/// value, which is not the formula). Terms are added in layer order, so the result is
/// reproducible bit for bit: `acc = θ_l; acc += (θ_{l+1} − θ_l); acc += (θ_{l+2} − θ_l); ...`
public enum LayerMerge {
    /// Merges `count` elements of dtype `dtype` (F32, F16 or BF16) into F32 `result`.
    public static func merge(
        count: Int, dtype: DType, base: UnsafeRawPointer, others: [UnsafeRawPointer],
        into result: UnsafeMutablePointer<Float>
    ) {
        precondition(dtype.isCastable, "LaCo merges float tensors only")
        func load(_ pointer: UnsafeRawPointer, _ i: Int) -> Float {
            switch dtype {
            case .f32: return Float(bitPattern: UInt32(littleEndian: pointer.loadUnaligned(fromByteOffset: i * 4, as: UInt32.self)))
            case .bf16: return Float(bitPattern: FloatConversion.bf16ToF32(UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))))
            default: return Float(bitPattern: FloatConversion.f16ToF32(UInt16(littleEndian: pointer.loadUnaligned(fromByteOffset: i * 2, as: UInt16.self))))
            }
        }
        for i in 0..<count {
            let b = load(base, i)
            var acc = b
            for other in others { acc += load(other, i) - b }
            result[i] = acc
        }
    }
}
