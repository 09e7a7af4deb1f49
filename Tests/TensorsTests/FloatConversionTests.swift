import Testing

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
        // Reference: round the f32 to the nearest value with 8 mantissa bits, in Double.
        var rng = SplitMix64(seed: 42)
        for _ in 0..<1_000_000 {
            let bits = UInt32(truncatingIfNeeded: rng.next())
            let value = Float(bitPattern: bits)
            if value.isNaN { continue }
            let lower = bits & 0xFFFF_0000
            let upper = lower &+ 0x1_0000
            let remainder = bits & 0xFFFF
            let expected: UInt32
            if remainder < 0x8000 { expected = lower }
            else if remainder > 0x8000 { expected = upper }
            else { expected = (lower >> 16) & 1 == 0 ? lower : upper }
            #expect(UInt32(FC.f32ToBF16(bits)) == expected >> 16, "f32 bits \(bits)")
        }
        #expect(FC.f32ToBF16(Float.greatestFiniteMagnitude.bitPattern) == 0x7F80)  // overflows to inf
        #expect(FC.f32ToBF16(0x7FA0_0000) & 0x7FC0 == 0x7FC0)  // signalling NaN comes out quiet
        #expect(FC.f32ToBF16(0xFF80_0001) >> 15 == 1)  // NaN keeps its sign
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

/// A small deterministic generator so test inputs are the same on every run.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
