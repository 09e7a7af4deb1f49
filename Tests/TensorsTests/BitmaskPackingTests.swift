import Testing
import TestSupport

@testable import Tensors

/// `BitmaskPacking` against its documented layout (and `formats/pare.md`, "bitmask-zstd"):
/// element i is bit (i mod 8) of mask byte ⌊i/8⌋, LSB first, the last byte padded with zero
/// bits; the values are the non-zero elements in order; "zero" means all bits zero.
@Suite struct BitmaskPackingTests {
    static let sentinel: UInt8 = 0xA5

    /// A bit-by-bit packer written from the documentation.
    static func naivePack<T: FixedWidthInteger>(_ source: [T]) -> (mask: [UInt8], values: [T]) {
        var bits: [Bool] = source.map { $0 != 0 }
        while bits.count % 8 != 0 { bits.append(false) }
        var mask: [UInt8] = []
        for byte in 0..<(bits.count / 8) {
            var value = 0
            for bit in 0..<8 where bits[byte * 8 + bit] { value += 1 << bit }
            mask.append(UInt8(value))
        }
        return (mask, source.filter { $0 != 0 })
    }

    /// Runs `BitmaskPacking.pack` with poisoned output buffers (0xFF mask bytes, sentinel
    /// values) and guard space after each, so stale bits and overruns show.
    static func pack<T: FixedWidthInteger & UnsignedInteger>(_ source: [T]) -> (mask: [UInt8], values: [T], returned: Int) {
        let maskBytes = BitmaskPacking.maskBytes(count: source.count)
        var mask = [UInt8](repeating: 0xFF, count: maskBytes + 8)
        let poison = T(truncatingIfNeeded: 0xA5A5_A5A5_A5A5_A5A5 as UInt64)
        var values = [T](repeating: poison, count: source.count + 8)
        let returned = (source + [0]).withUnsafeBufferPointer { src in
            mask.withUnsafeMutableBufferPointer { m in
                values.withUnsafeMutableBufferPointer { v in
                    BitmaskPacking.pack(src.baseAddress!, count: source.count, mask: m.baseAddress!, values: v.baseAddress!)
                }
            }
        }
        #expect(mask[maskBytes...].allSatisfy { $0 == 0xFF }, "pack wrote past the mask's \(maskBytes) bytes")
        #expect(returned >= 0 && returned <= source.count)
        let kept = max(0, min(returned, source.count))
        #expect(values[kept...].allSatisfy { $0 == poison }, "pack wrote more values than it reports")
        return (Array(mask[..<maskBytes]), Array(values[..<kept]), returned)
    }

    static func nonZeroCount<T: FixedWidthInteger & UnsignedInteger>(_ source: [T]) -> Int {
        (source + [0]).withUnsafeBufferPointer { BitmaskPacking.nonZeroCount($0.baseAddress!, count: source.count) }
    }

    static func unpack<T: FixedWidthInteger & UnsignedInteger>(mask: [UInt8], values: [T], count: Int) -> [T] {
        let garbage = T(truncatingIfNeeded: 0x5A5A_5A5A_5A5A_5A5A as UInt64)
        var out = [T](repeating: garbage, count: count + 4)
        (mask + [0]).withUnsafeBufferPointer { m in
            (values + [0]).withUnsafeBufferPointer { v in
                out.withUnsafeMutableBufferPointer { o in
                    BitmaskPacking.unpack(mask: m.baseAddress!, values: v.baseAddress!, count: count, into: o.baseAddress!)
                }
            }
        }
        #expect(out[count...].allSatisfy { $0 == garbage }, "unpack wrote past \(count) elements")
        return Array(out[..<count])
    }

    /// Sparse-ish data: about `zeroShare` all-zero elements, the rest random and non-zero
    /// (with the sign bit alone — a negative zero — among them).
    static func sparse<T: FixedWidthInteger & UnsignedInteger>(_: T.Type, count: Int, zeroShare: Double, seed: UInt64) -> [T] {
        var rng = SplitMix64(seed: seed)
        let signBit = T(1) << (T.bitWidth - 1)
        return (0..<count).map { i in
            if Double(rng.next() % 1000) / 1000 < zeroShare { return 0 }
            if i % 11 == 5 { return signBit }  // -0.0 as a float: a value, not a zero
            let v = T(truncatingIfNeeded: rng.next())
            return v == 0 ? 1 : v
        }
    }

    // MARK: Hand-worked

    @Test func maskBitsAreLeastSignificantFirst() {
        // Non-zero at 1, 4 and 8: byte 0 = bits 1 and 4 = 0x12, byte 1 = bit 0 = 0x01.
        let source: [UInt16] = [0, 5, 0, 0, 7, 0, 0, 0, 9]
        let packed = Self.pack(source)
        #expect(packed.mask == [0x12, 0x01])
        #expect(packed.values == [5, 7, 9])
        #expect(packed.returned == 3)
        #expect(Self.unpack(mask: packed.mask, values: packed.values, count: source.count) == source)
    }

    @Test func negativeZeroIsAValue() {
        // -0.0 in BF16 and F32: only the sign bit set.
        let halves: [UInt16] = [0x8000, 0, 0x0000, 0x8000]
        let packed16 = Self.pack(halves)
        #expect(packed16.mask == [0b1001])
        #expect(packed16.values == [0x8000, 0x8000])
        let words: [UInt32] = [0, 0x8000_0000, 0]
        #expect(Self.pack(words).mask == [0b010])
        #expect(Self.nonZeroCount(words) == 1)
    }

    @Test func allZerosAndNoZeros() {
        let zeros = [UInt32](repeating: 0, count: 13)
        let packedZeros = Self.pack(zeros)
        #expect(packedZeros.mask == [0, 0])
        #expect(packedZeros.values.isEmpty && packedZeros.returned == 0)
        #expect(Self.unpack(mask: packedZeros.mask, values: packedZeros.values, count: 13) == zeros)

        let dense: [UInt32] = Array(1...13)
        let packedDense = Self.pack(dense)
        // 13 set bits: a full byte, then five low bits; the three padding bits stay zero.
        #expect(packedDense.mask == [0xFF, 0x1F])
        #expect(packedDense.values == dense)
    }

    // MARK: Against the naive packer

    @Test(arguments: [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 1000, 1003])
    func packMatchesTheNaivePackerForEveryWidth(count: Int) {
        func check<T: FixedWidthInteger & UnsignedInteger>(_ type: T.Type, zeroShare: Double) {
            let source = Self.sparse(type, count: count, zeroShare: zeroShare, seed: UInt64(count * 7 + T.bitWidth))
            let expected = Self.naivePack(source)
            let packed = Self.pack(source)
            #expect(packed.mask == expected.mask, "\(T.self) count \(count)")
            #expect(packed.values == expected.values, "\(T.self) count \(count)")
            #expect(packed.returned == expected.values.count)
            #expect(Self.nonZeroCount(source) == expected.values.count)
            #expect(Self.unpack(mask: packed.mask, values: packed.values, count: count) == source)
        }
        for share in [0.0, 0.3, 0.6, 1.0] {
            check(UInt16.self, zeroShare: share)
            check(UInt32.self, zeroShare: share)
            check(UInt8.self, zeroShare: share)
            check(UInt64.self, zeroShare: share)
        }
    }

    @Test(arguments: 0...40)
    func maskBytesIsEnoughBitsAndNoMore(count: Int) {
        let bytes = BitmaskPacking.maskBytes(count: count)
        #expect(bytes * 8 >= count)
        #expect(bytes == 0 || (bytes - 1) * 8 < count)
    }

    // MARK: setBits: the value count a mask announces, and damage in its padding

    @Test func setBitsCountsTheMaskAndRejectsSetPaddingBits() {
        func bits(_ mask: [UInt8], _ count: Int) -> Int? {
            (mask + [0]).withUnsafeBufferPointer { BitmaskPacking.setBits(mask: $0.baseAddress!, count: count) }
        }
        #expect(bits([], 0) == 0)
        #expect(bits([0xFF], 8) == 8)  // no padding
        #expect(bits([0xFF, 0x01], 9) == 9)
        #expect(bits([0x12, 0x01], 9) == 3)
        // Count 9: bits 1...7 of byte 1 are padding.
        #expect(bits([0xFF, 0x02], 9) == nil)
        #expect(bits([0x00, 0x80], 9) == nil)
        // Count 3: bits 3...7 of byte 0 are padding.
        #expect(bits([0x07], 3) == 3)
        #expect(bits([0x08], 3) == nil)
        #expect(bits([0x80], 1) == nil)
        // Bytes past the mask are not the mask's business.
        #expect(bits([0x01, 0xFF], 1) == 1)
    }

    @Test(arguments: [1, 5, 8, 12, 33])
    func setBitsAgreesWithPack(count: Int) {
        let source = Self.sparse(UInt16.self, count: count, zeroShare: 0.5, seed: UInt64(count))
        let packed = Self.pack(source)
        let announced = packed.mask.withUnsafeBufferPointer { BitmaskPacking.setBits(mask: $0.baseAddress!, count: count) }
        #expect(announced == packed.returned)
    }

    // MARK: unpack

    @Test func unpackWritesZerosWhereTheMaskIsClear() {
        // Hand-made: mask 0b0000_0101 over 5 elements, values 7 and 9 -> 7, 0, 9, 0, 0,
        // whatever the destination held before.
        #expect(Self.unpack(mask: [0b0000_0101], values: [7, 9] as [UInt32], count: 5) == [7, 0, 9, 0, 0])
        #expect(Self.unpack(mask: [0x00, 0x01], values: [3] as [UInt16], count: 9) == [0, 0, 0, 0, 0, 0, 0, 0, 3])
    }
}
