import Testing
import TestSupport

@testable import Tensors

/// `ByteGrouping` against `formats/pare.md` ("bytegroup-zstd"): stream `k` holds byte `k`
/// of every element, in element order, byte 0 being the least significant (little-endian).
@Suite struct ByteGroupingTests {
    /// Guard bytes after every buffer, to catch writes past the end.
    static let guardBytes = 16
    static let sentinel: UInt8 = 0xA5

    /// Splits `source` (a whole number of `width`-byte elements) with `ByteGrouping.split`
    /// into `width` separate buffers; fails the test if any write leaves its stream.
    static func split(_ source: [UInt8], width: Int) -> [[UInt8]] {
        let count = source.count / width
        let buffers = (0..<width).map { _ in UnsafeMutableRawPointer.allocate(byteCount: count + guardBytes, alignment: 16) }
        defer { buffers.forEach { $0.deallocate() } }
        for b in buffers { b.initializeMemory(as: UInt8.self, repeating: sentinel, count: count + guardBytes) }
        // One spare byte so that even an empty source has an address.
        (source + [sentinel]).withUnsafeBytes { src in
            ByteGrouping.split(src.baseAddress!, count: count, width: width, into: buffers)
        }
        let streams = buffers.map { Array(UnsafeRawBufferPointer(start: $0, count: count + guardBytes)) }
        for k in 0..<width {
            #expect(streams[k][count...].allSatisfy { $0 == sentinel }, "split wrote past the end of stream \(k)")
        }
        return streams.map { Array($0[..<count]) }
    }

    /// Interleaves `streams` (all of one length) with `ByteGrouping.interleave`; fails the
    /// test if it writes past `count * width` bytes.
    static func interleave(_ streams: [[UInt8]], width: Int) -> [UInt8] {
        let count = streams.first?.count ?? 0
        let pointers = streams.map { stream -> UnsafeMutableRawPointer in
            let p = UnsafeMutableRawPointer.allocate(byteCount: max(1, count), alignment: 16)
            stream.withUnsafeBytes { if count > 0 { p.copyMemory(from: $0.baseAddress!, byteCount: count) } }
            return p
        }
        defer { pointers.forEach { $0.deallocate() } }
        var out = [UInt8](repeating: sentinel, count: count * width + guardBytes)
        out.withUnsafeMutableBytes { dst in
            ByteGrouping.interleave(pointers.map { UnsafeRawPointer($0) }, count: count, width: width, into: dst.baseAddress!)
        }
        #expect(out[(count * width)...].allSatisfy { $0 == sentinel }, "interleave wrote past the end")
        return Array(out[..<(count * width)])
    }

    /// The transposition the spec describes, by nested loops.
    static func naivePlanes(_ source: [UInt8], width: Int) -> [[UInt8]] {
        let count = source.count / width
        var planes = [[UInt8]](repeating: [], count: width)
        for k in 0..<width {
            for i in 0..<count { planes[k].append(source[i * width + k]) }
        }
        return planes
    }

    static func randomBytes(_ count: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        return (0..<count).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    // MARK: Hand-made buffers

    @Test func fourByteElementsGoByteByByteToFourPlanes() {
        // Element i has byte k = 16*i + k: plane k must read k, 16+k, 32+k.
        let source: [UInt8] = [0x00, 0x01, 0x02, 0x03, 0x10, 0x11, 0x12, 0x13, 0x20, 0x21, 0x22, 0x23]
        let planes = Self.split(source, width: 4)
        #expect(planes == [[0x00, 0x10, 0x20], [0x01, 0x11, 0x21], [0x02, 0x12, 0x22], [0x03, 0x13, 0x23]])
        #expect(Self.interleave(planes, width: 4) == source)
    }

    @Test func planeZeroIsTheLeastSignificantByte() {
        // Little-endian values: plane 0 holds the low bytes, the last plane the high bytes
        // (where a float's sign and exponent live).
        let halves: [UInt16] = [0xABCD, 0x3F80, 0x0001]
        let bytes16 = halves.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
        #expect(Self.split(bytes16, width: 2) == [[0xCD, 0x80, 0x01], [0xAB, 0x3F, 0x00]])

        let words: [UInt32] = [0x3F80_0000, 0xC020_1234]  // 1.0 and a negative float
        let bytes32 = words.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
        #expect(Self.split(bytes32, width: 4) == [[0x00, 0x34], [0x00, 0x12], [0x80, 0x20], [0x3F, 0xC0]])

        let long: [UInt64] = [0x0807_0605_0403_0201]
        let bytes64 = long.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
        #expect(Self.split(bytes64, width: 8) == (1...8).map { [UInt8($0)] })
    }

    @Test func interleaveRebuildsElementsFromHandMadePlanes() {
        // Two 3-byte elements (the generic path): 0x030201 and 0x060504.
        #expect(Self.interleave([[0x01, 0x04], [0x02, 0x05], [0x03, 0x06]], width: 3) == [0x01, 0x02, 0x03, 0x04, 0x05, 0x06])
        // Two-byte elements from a low and a high plane.
        #expect(Self.interleave([[0xCD, 0x00], [0xAB, 0x80]], width: 2) == [0xCD, 0xAB, 0x00, 0x80])
    }

    // MARK: Against the naive transposition, every width

    /// Widths with a fast path (1, 2, 4) and the generic one (3, 5, 8, 16); counts around
    /// the 8- and 16-element boundaries that unrolled code tends to get wrong.
    @Test(arguments: [1, 2, 3, 4, 5, 8, 16], [0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 1001])
    func splitIsTheNaiveTranspositionAndInterleaveItsInverse(width: Int, count: Int) {
        let source = Self.randomBytes(count * width, seed: UInt64(width * 10_000 + count))
        let planes = Self.split(source, width: width)
        #expect(planes.count == width)
        #expect(planes.allSatisfy { $0.count == count })
        #expect(planes == Self.naivePlanes(source, width: width))
        #expect(Self.interleave(planes, width: width) == source)
    }

    /// Streams that are slices of one buffer, back to back, as the chunk codec lays them
    /// out: each stream is exactly `count` bytes and none spills into the next.
    @Test(arguments: [1, 2, 4, 8])
    func streamsBackToBackInOneBufferStayApart(width: Int) {
        let count = 37
        let source = Self.randomBytes(count * width, seed: 42)
        let planes = UnsafeMutableRawPointer.allocate(byteCount: count * width, alignment: 16)
        defer { planes.deallocate() }
        planes.initializeMemory(as: UInt8.self, repeating: 0, count: count * width)
        source.withUnsafeBytes { src in
            ByteGrouping.split(src.baseAddress!, count: count, width: width, into: (0..<width).map { planes + $0 * count })
        }
        let flat = Array(UnsafeRawBufferPointer(start: planes, count: count * width))
        #expect(flat == Self.naivePlanes(source, width: width).flatMap { $0 })

        var back = [UInt8](repeating: 0, count: count * width)
        back.withUnsafeMutableBytes { dst in
            ByteGrouping.interleave((0..<width).map { UnsafeRawPointer(planes + $0 * count) }, count: count, width: width,
                                    into: dst.baseAddress!)
        }
        #expect(back == source)
    }

    /// Interleave then split is the identity too (any planes are valid input).
    @Test(arguments: [1, 2, 3, 4, 8])
    func interleaveThenSplitGivesThePlanesBack(width: Int) {
        let count = 123
        let planes = (0..<width).map { Self.randomBytes(count, seed: UInt64(100 + $0)) }
        let elements = Self.interleave(planes, width: width)
        // Element i byte k is plane k byte i.
        for i in [0, 1, count / 2, count - 1] {
            for k in 0..<width { #expect(elements[i * width + k] == planes[k][i]) }
        }
        #expect(Self.split(elements, width: width) == planes)
    }
}
