import Testing
import TestSupport

@testable import Tensors

/// The conversions are checked here against the hardware/compiler `Float16` conversion and
/// against exhaustive identities; the interop suite checks them against torch's own casts.
@Suite struct FloatConversionTests {
    typealias FC = FloatConversion

    @Test func f16WidensExactlyForEveryBitPattern() {
        for bits in 0...UInt16.max {
            let wide = FC.f16ToF32(bits)
            let reference = Float(Float16(bitPattern: bits))
            if reference.isNaN {
                #expect(Float(bitPattern: wide).isNaN)
                #expect(wide >> 31 == UInt32(bits >> 15))
            } else {
                #expect(wide == reference.bitPattern, "f16 \(bits)")
            }
        }
    }

    @Test func f16RoundTripsThroughF32AndBF16ThroughF32() {
        for bits in 0...UInt16.max {
            let f16NaN = (bits & 0x7C00) == 0x7C00 && (bits & 0x03FF) != 0
            if !f16NaN { #expect(FC.f32ToF16(FC.f16ToF32(bits)) == bits) }
            let bf16NaN = (bits & 0x7F80) == 0x7F80 && (bits & 0x007F) != 0
            if !bf16NaN { #expect(FC.f32ToBF16(FC.bf16ToF32(bits)) == bits) }
            // NaN stays NaN, sign kept.
            if f16NaN {
                let back = FC.f32ToF16(FC.f16ToF32(bits))
                #expect(back & 0x7C00 == 0x7C00 && back & 0x03FF != 0 && back >> 15 == bits >> 15)
            }
        }
    }

    @Test func f32ToF16MatchesHardwareConversion() {
        var rng = SplitMix64(seed: 0x5EED)
        var checked = 0
        for _ in 0..<2_000_000 {
            let bits = UInt32(truncatingIfNeeded: rng.next())
            let value = Float(bitPattern: bits)
            if value.isNaN { continue }
            #expect(FC.f32ToF16(bits) == Float16(value).bitPattern, "f32 bits \(bits)")
            checked += 1
        }
        #expect(checked > 1_900_000)
    }

    @Test(arguments: [
        (Float(65504), UInt16(0x7BFF)),  // largest finite
        (Float(65519.996), UInt16(0x7BFF)),  // just below the overflow midpoint
        (Float(65520), UInt16(0x7C00)),  // the midpoint rounds to even: infinity
        (Float.infinity, UInt16(0x7C00)),
        (-Float.infinity, UInt16(0xFC00)),
        (Float(bitPattern: 0x3380_0000), UInt16(0x0001)),  // 2^-24, smallest subnormal
        (Float(bitPattern: 0x3300_0000), UInt16(0x0000)),  // 2^-25, a tie: rounds to even 0
        (Float(bitPattern: 0x3340_0000), UInt16(0x0001)),  // 0.75 * 2^-24 rounds up to 2^-24
        (Float(bitPattern: 0x33C0_0000), UInt16(0x0002)),  // 1.5 * 2^-24: tie between 1 and 2 -> even 2
        (Float(bitPattern: 0x3300_0001), UInt16(0x0001)),  // just above 2^-25
        (Float(bitPattern: 0x387F_C000), UInt16(0x03FF)),  // largest subnormal, 1023 * 2^-24
        (Float(bitPattern: 0x387F_E000), UInt16(0x0400)),  // tie between 1023 and 1024: even, a normal
        (Float(-0.0), UInt16(0x8000)),
        (Float(bitPattern: 0x0000_0001), UInt16(0x0000)),  // f32 subnormal underflows
        (Float(1.0009765625), UInt16(0x3C01)),
        (Float(bitPattern: 0x3F80_1000), UInt16(0x3C00)),  // tie to even (down)
        (Float(bitPattern: 0x3F80_3000), UInt16(0x3C02)),  // tie to even (up)
    ])
    func f32ToF16EdgeValues(_ value: Float, _ expected: UInt16) {
        #expect(FC.f32ToF16(value.bitPattern) == expected)
    }

    @Test func f32ToBF16RoundsToNearestEven() {
        // Reference by value, not bits: the bf16 result must be the nearer of the two bf16
        // neighbours of x (compared in Double, exactly), the even one on a tie.
        var rng = SplitMix64(seed: 42)
        for _ in 0..<1_000_000 {
            let bits = UInt32(truncatingIfNeeded: rng.next())
            let value = Float(bitPattern: bits)
            if value.isNaN || value.isInfinite { continue }
            let result = FC.f32ToBF16(bits)
            let got = Double(Float(bitPattern: FC.bf16ToF32(result)))
            let truncated = Double(Float(bitPattern: bits & 0xFFFF_0000))  // toward zero
            // The next bf16 magnitude; past the largest finite one, IEEE rounding measures the
            // distance to 2^128 (where the next binade would start) and calls it infinity.
            var away = Double(Float(bitPattern: (bits & 0xFFFF_0000) &+ 0x1_0000))
            if away.isInfinite { away = value < 0 ? -0x1p128 : 0x1p128 }
            let x = Double(value)
            let dTruncated = abs(x - truncated), dAway = abs(away - x)
            let expected: Double
            if dTruncated < dAway { expected = truncated }
            else if dAway < dTruncated { expected = away }
            else { expected = (bits >> 16) & 1 == 0 ? truncated : away }
            #expect(got == expected || (got.isInfinite && abs(expected) == 0x1p128 && got.sign == expected.sign), "f32 bits \(bits)")
        }
        #expect(FC.f32ToBF16(Float.greatestFiniteMagnitude.bitPattern) == 0x7F80)  // overflows to inf
        #expect(FC.f32ToBF16(0x7FA0_0000) & 0x7FC0 == 0x7FC0)  // signalling NaN comes out quiet
        #expect(FC.f32ToBF16(0xFF80_0001) >> 15 == 1)  // NaN keeps its sign
    }

    @Test(arguments: [(DType.f32, DType.f16), (.f32, .bf16), (.f16, .f32), (.bf16, .f32), (.f16, .bf16), (.bf16, .f16), (.f32, .f32)])
    func bulkConversionMatchesScalarKernelsOnEveryPath(_ from: DType, _ to: DType) {
        var rng = SplitMix64(seed: 7)
        let count = 10_001  // odd, so no path relies on pairs
        let inBytes = from.bitWidth / 8, outBytes = to.bitWidth / 8
        let source = (0..<count * inBytes).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var output = [UInt8](repeating: 0, count: count * outBytes + 1)  // +1: misaligned by a byte
        source.withUnsafeBytes { src in
            output.withUnsafeMutableBytes { dst in
                FC.convert(count: count, from: from, src.baseAddress!, to: to, dst.baseAddress! + 1)
            }
        }
        func load(_ bytes: [UInt8], _ i: Int, _ width: Int, offset: Int = 0) -> UInt32 {
            var v: UInt32 = 0
            for b in 0..<width { v |= UInt32(bytes[offset + i * width + b]) << (8 * b) }
            return v
        }
        func toF32(_ bits: UInt32, _ dtype: DType) -> UInt32 {
            switch dtype {
            case .f16: return FC.f16ToF32(UInt16(bits))
            case .bf16: return FC.bf16ToF32(UInt16(bits))
            default: return bits
            }
        }
        func fromF32(_ bits: UInt32, _ dtype: DType) -> UInt32 {
            switch dtype {
            case .f16: return UInt32(FC.f32ToF16(bits))
            case .bf16: return UInt32(FC.f32ToBF16(bits))
            default: return bits
            }
        }
        for i in 0..<count {
            let expected = from == to ? load(source, i, inBytes) : fromF32(toF32(load(source, i, inBytes), from), to)
            #expect(load(output, i, outBytes, offset: 1) == expected)
        }
    }

    @Test func bulkConversionMatchesScalarKernels() {
        let values: [Float] = [0, -1.5, 3.14159, 65504, 1e-8, -1e30, .infinity]
        var f16 = [UInt16](repeating: 0, count: values.count)
        values.withUnsafeBytes { src in
            f16.withUnsafeMutableBytes { dst in
                FC.convert(count: values.count, from: .f32, src.baseAddress!, to: .f16, dst.baseAddress!)
            }
        }
        #expect(f16 == values.map { FC.f32ToF16($0.bitPattern) })
        var bf16 = [UInt16](repeating: 0, count: values.count)
        f16.withUnsafeBytes { src in
            bf16.withUnsafeMutableBytes { dst in
                FC.convert(count: values.count, from: .f16, src.baseAddress!, to: .bf16, dst.baseAddress!)
            }
        }
        #expect(bf16 == f16.map { FC.f32ToBF16(FC.f16ToF32($0)) })
    }
}

@Suite struct ParallelConversionTests {
    @Test(arguments: [1, 2, 3, 8])
    func parallelMatchesSerial(_ cores: Int) {
        var rng = SplitMix64(seed: UInt64(cores))
        let count = 200_003
        let source = (0..<count).map { _ in UInt32(truncatingIfNeeded: rng.next()) }
        var serial = [UInt16](repeating: 0, count: count)
        var parallel = [UInt16](repeating: 0, count: count)
        source.withUnsafeBytes { src in
            serial.withUnsafeMutableBytes { FloatConversion.convert(count: count, from: .f32, src.baseAddress!, to: .bf16, $0.baseAddress!) }
            parallel.withUnsafeMutableBytes {
                FloatConversion.convertInParallel(count: count, from: .f32, src.baseAddress!, to: .bf16, $0.baseAddress!, cores: cores)
            }
        }
        #expect(serial == parallel)
    }
}
