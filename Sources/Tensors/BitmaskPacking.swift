/// Unstructured sparsity: a bitmask of the non-zero elements plus those elements in order.
///
/// Element i is bit (i mod 8) of mask byte ⌊i/8⌋ (LSB first); the last byte is padded with
/// zero bits. "Zero" means all bits zero, so a negative zero is kept as a value.
public enum BitmaskPacking {
    /// Bytes of mask for `count` elements.
    public static func maskBytes(count: Int) -> Int { (count + 7) / 8 }

    /// Elements of `count` that are not all-bits-zero.
    @inlinable
    public static func nonZeroCount<T: FixedWidthInteger & UnsignedInteger>(_ source: UnsafePointer<T>, count: Int) -> Int {
        var nonZero = 0
        for i in 0..<count where source[i] != 0 { nonZero &+= 1 }
        return nonZero
    }

    /// Writes the mask and the non-zero elements; returns how many elements were non-zero.
    @inlinable @discardableResult
    public static func pack<T: FixedWidthInteger & UnsignedInteger>(
        _ source: UnsafePointer<T>, count: Int, mask: UnsafeMutablePointer<UInt8>, values: UnsafeMutablePointer<T>
    ) -> Int {
        var out = 0
        var i = 0
        var byteIndex = 0
        while i < count {
            var byte: UInt8 = 0
            let end = min(i &+ 8, count)
            var bit: UInt8 = 1
            for j in i..<end {
                let v = source[j]
                if v != 0 {
                    byte |= bit
                    values[out] = v
                    out &+= 1
                }
                bit <<= 1
            }
            mask[byteIndex] = byte
            byteIndex &+= 1
            i = end
        }
        return out
    }

    /// Counts the set bits of the mask for `count` elements: the values the data must hold.
    /// Returns `nil` when padding bits past `count` are set (damaged data).
    public static func setBits(mask: UnsafePointer<UInt8>, count: Int) -> Int? {
        let bytes = maskBytes(count: count)
        var total = 0
        for b in 0..<bytes { total &+= mask[b].nonzeroBitCount }
        let spare = bytes * 8 - count
        if spare > 0, mask[bytes - 1] >> UInt8(8 - spare) != 0 { return nil }
        return total
    }

    /// Rebuilds `count` elements from the mask and the values.
    @inlinable
    public static func unpack<T: FixedWidthInteger & UnsignedInteger>(
        mask: UnsafePointer<UInt8>, values: UnsafePointer<T>, count: Int, into destination: UnsafeMutablePointer<T>
    ) {
        var k = 0
        for i in 0..<count {
            if mask[i >> 3] & (1 << UInt8(i & 7)) != 0 {
                destination[i] = values[k]
                k &+= 1
            } else {
                destination[i] = 0
            }
        }
    }
}
