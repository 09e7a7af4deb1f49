/// Splits fixed-width elements into byte streams and back.
///
/// Stream `k` holds byte `k` of every element (byte 0 least significant, as stored
/// little-endian). Floating-point exponents live in the high bytes, which then form a
/// stream of few distinct values that compresses far better than the mixed bytes.
public enum ByteGrouping {
    /// Writes byte `k` of each of `count` elements of `width` bytes to `streams[k]`.
    public static func split(
        _ source: UnsafeRawPointer, count: Int, width: Int, into streams: [UnsafeMutableRawPointer]
    ) {
        precondition(streams.count == width)
        let src = source.assumingMemoryBound(to: UInt8.self)
        switch width {
        case 1:
            streams[0].copyMemory(from: source, byteCount: count)
        case 2:
            let s0 = streams[0].assumingMemoryBound(to: UInt8.self), s1 = streams[1].assumingMemoryBound(to: UInt8.self)
            for i in 0..<count {
                s0[i] = src[2 &* i]
                s1[i] = src[2 &* i &+ 1]
            }
        case 4:
            let s = streams.map { $0.assumingMemoryBound(to: UInt8.self) }
            let (s0, s1, s2, s3) = (s[0], s[1], s[2], s[3])
            for i in 0..<count {
                let e = src + 4 &* i
                s0[i] = e[0]
                s1[i] = e[1]
                s2[i] = e[2]
                s3[i] = e[3]
            }
        default:
            let s = streams.map { $0.assumingMemoryBound(to: UInt8.self) }
            for i in 0..<count {
                for k in 0..<width { s[k][i] = src[i &* width &+ k] }
            }
        }
    }

    /// The inverse of `split`: rebuilds `count` elements of `width` bytes from the streams.
    public static func interleave(
        _ streams: [UnsafeRawPointer], count: Int, width: Int, into destination: UnsafeMutableRawPointer
    ) {
        precondition(streams.count == width)
        let dst = destination.assumingMemoryBound(to: UInt8.self)
        switch width {
        case 1:
            destination.copyMemory(from: streams[0], byteCount: count)
        case 2:
            let s0 = streams[0].assumingMemoryBound(to: UInt8.self), s1 = streams[1].assumingMemoryBound(to: UInt8.self)
            for i in 0..<count {
                destination.storeBytes(of: UInt16(s0[i]) | UInt16(s1[i]) << 8, toByteOffset: 2 &* i, as: UInt16.self)
            }
        case 4:
            let s = streams.map { $0.assumingMemoryBound(to: UInt8.self) }
            let (s0, s1, s2, s3) = (s[0], s[1], s[2], s[3])
            for i in 0..<count {
                let word = UInt32(s0[i]) | UInt32(s1[i]) << 8 | UInt32(s2[i]) << 16 | UInt32(s3[i]) << 24
                destination.storeBytes(of: word, toByteOffset: 4 &* i, as: UInt32.self)
            }
        default:
            let s = streams.map { $0.assumingMemoryBound(to: UInt8.self) }
            for i in 0..<count {
                for k in 0..<width { dst[i &* width &+ k] = s[k][i] }
            }
        }
    }
}
