/// Bit-exact conversions between F32, F16 and BF16.
///
/// Finite values round to nearest, ties to even, exactly as IEEE 754 and torch's CPU casts
/// do, including subnormal results and overflow to infinity. Infinities stay infinities.
/// A NaN stays a NaN of the same sign, quieted, with the top bits of its payload kept (the
/// behaviour of hardware conversion such as x86 F16C); torch itself is not consistent on
/// NaN payloads across its cast paths, so only NaN-ness is promised to match it.
///
/// Conversions between F16 and BF16 go through F32, which holds both exactly, so they round
/// once.
public enum FloatConversion {
    // MARK: Scalar kernels

    @inlinable @inline(__always)
    public static func bf16ToF32(_ h: UInt16) -> UInt32 { UInt32(h) << 16 }

    @inlinable @inline(__always)
    public static func f32ToBF16(_ f: UInt32) -> UInt16 {
        if f & 0x7FFF_FFFF > 0x7F80_0000 {
            // NaN: keep sign and top payload bits, force the quiet bit.
            return UInt16(truncatingIfNeeded: f >> 16) | 0x0040
        }
        // Round to nearest even on the 16 dropped bits; carries into the exponent give the
        // right answer, including overflow to infinity.
        let lsb = (f >> 16) & 1
        let rounded = f &+ 0x7FFF &+ lsb
        return UInt16(truncatingIfNeeded: rounded >> 16)
    }

    @inlinable @inline(__always)
    public static func f16ToF32(_ h: UInt16) -> UInt32 {
        let sign = UInt32(h & 0x8000) << 16
        let exponent = UInt32(h >> 10) & 0x1F
        let mantissa = UInt32(h & 0x03FF)
        if exponent == 0x1F {
            // Inf, or NaN: payload to the top of the f32 mantissa, quieted.
            return sign | 0x7F80_0000 | (mantissa << 13) | (mantissa != 0 ? 0x0040_0000 : 0)
        }
        if exponent != 0 {
            return sign | ((exponent + 112) << 23) | (mantissa << 13)
        }
        if mantissa == 0 { return sign }
        // Subnormal f16: normalise. value = mantissa * 2^-24.
        let shift = UInt32(mantissa.leadingZeroBitCount) - 21  // bring the top set bit to bit 10
        let normalized = (mantissa << shift) & 0x03FF
        let e = 113 - shift  // biased f32 exponent
        return sign | (e << 23) | (normalized << 13)
    }

    @inlinable @inline(__always)
    public static func f32ToF16(_ f: UInt32) -> UInt16 {
        let sign = UInt16(truncatingIfNeeded: (f >> 16) & 0x8000)
        let magnitude = f & 0x7FFF_FFFF
        if magnitude >= 0x7F80_0000 {
            if magnitude == 0x7F80_0000 { return sign | 0x7C00 }
            return sign | 0x7E00 | UInt16(truncatingIfNeeded: (magnitude >> 13) & 0x03FF)
        }
        // 65520 = 0x477FF000 is the first magnitude that rounds to infinity.
        if magnitude >= 0x477F_F000 { return sign | 0x7C00 }
        if magnitude >= 0x3880_0000 {
            // Normal f16 result: rebias the exponent (127 -> 15) and round 13 bits away.
            let rebased = magnitude &- 0x3800_0000
            let lsb = (rebased >> 13) & 1
            let rounded = (rebased &+ 0x0FFF &+ lsb) >> 13
            return sign | UInt16(truncatingIfNeeded: rounded)
        }
        // Subnormal (or zero) f16 result: value / 2^-24, rounded to nearest even.
        let exponent = magnitude >> 23
        if exponent < 102 { return sign }  // below half of the smallest subnormal: +-0
        let mantissa = (magnitude & 0x007F_FFFF) | 0x0080_0000
        let shift = 126 - exponent  // 14...24
        let kept = mantissa >> shift
        let remainder = mantissa & ((1 << shift) - 1)
        let half: UInt32 = 1 << (shift - 1)
        var result = kept
        if remainder > half || (remainder == half && kept & 1 == 1) { result += 1 }
        return sign | UInt16(truncatingIfNeeded: result)
    }

    // MARK: Bulk conversion

    /// Converts `count` elements from `source` (dtype `from`) into `destination` (dtype `to`).
    ///
    /// Both buffers are raw little-endian bytes and need no alignment. Same-dtype conversion
    /// is a copy.
    public static func convert(
        count: Int, from: DType, _ source: UnsafeRawPointer,
        to: DType, _ destination: UnsafeMutableRawPointer
    ) {
        precondition(from.isCastable && to.isCastable, "pare casts only F32, F16 and BF16")
        if from == to {
            destination.copyMemory(from: source, byteCount: count * from.bitWidth / 8)
            return
        }
        switch (from, to) {
        case (.f32, .bf16): map(count, source, destination, f32ToBF16)
        case (.f32, .f16): map(count, source, destination, f32ToF16)
        case (.bf16, .f32): map(count, source, destination, bf16ToF32)
        case (.f16, .f32): map(count, source, destination, f16ToF32)
        case (.f16, .bf16): map(count, source, destination) { f32ToBF16(f16ToF32($0)) }
        case (.bf16, .f16): map(count, source, destination) { f32ToF16(bf16ToF32($0)) }
        default: preconditionFailure("unreachable cast \(from) -> \(to)")
        }
    }

    /// Applies a bit-pattern kernel element by element (specialised per pair of widths).
    @inline(__always)
    private static func map<In: FixedWidthInteger, Out: FixedWidthInteger>(
        _ count: Int, _ source: UnsafeRawPointer, _ destination: UnsafeMutableRawPointer,
        _ op: (In) -> Out
    ) {
        for i in 0..<count {
            let bits = In(littleEndian: source.loadUnaligned(fromByteOffset: i * MemoryLayout<In>.size, as: In.self))
            destination.storeBytes(of: op(bits).littleEndian, toByteOffset: i * MemoryLayout<Out>.size, as: Out.self)
        }
    }
}
