/// N:M structured sparsity: in every group of M consecutive elements at most N are
/// non-zero. Packs such data as N values per group plus each value's position in the group,
/// and unpacks it back.
///
/// "Zero" means all bits zero: a negative zero is a value, so packing and unpacking give the
/// bytes back exactly. Groups are taken in flat element order; for a tensor whose last
/// dimension M divides, those are exactly the groups along the last dimension.
public enum NMPacking {
    /// An N:M pattern (1 ≤ N < M ≤ 16).
    public struct Pattern: Hashable, Sendable, CustomStringConvertible {
        public let n: Int
        public let m: Int

        public init?(n: Int, m: Int) {
            guard n >= 1, n < m, m <= 16 else { return nil }
            self.n = n
            self.m = m
        }

        /// Parses `"2:4"`.
        public init?(_ text: String) {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false)
            guard parts.count == 2, let n = Int(parts[0]), let m = Int(parts[1]) else { return nil }
            self.init(n: n, m: m)
        }

        /// Bits that store one position: ⌈log2 M⌉, at least 1.
        @inlinable public var indexBits: Int { max(1, Int.bitWidth - (m - 1).leadingZeroBitCount) }

        public var description: String { "\(n):\(m)" }

        /// Packed values for `elements` elements (a multiple of M).
        public func valueCount(elements: Int) -> Int { elements / m * n }

        /// Bytes of packed positions for `elements` elements.
        public func indexBytes(elements: Int) -> Int { (valueCount(elements: elements) * indexBits + 7) / 8 }
    }

    /// The largest number of non-zero elements in any group of `m` in `count` elements of
    /// `T` (`count` a multiple of `m`).
    @inlinable
    public static func densestGroup<T: FixedWidthInteger & UnsignedInteger>(
        _ source: UnsafePointer<T>, count: Int, m: Int
    ) -> Int {
        var densest = 0
        var start = 0
        while start < count {
            var nonZero = 0
            for j in 0..<m where source[start &+ j] != 0 { nonZero &+= 1 }
            if nonZero > densest {
                densest = nonZero
                if densest == m { return m }
            }
            start &+= m
        }
        return densest
    }

    /// For 2:4: the two positions of each non-zero pattern (bit j = position j), as the
    /// index stream stores them (`first | second << 2`): the non-zero positions, then the
    /// lowest zero ones; 0xFF where more than two are non-zero.
    public static let twoOfFourPositions: [UInt8] = (0..<16).map { flags in
        guard flags.nonzeroBitCount <= 2 else { return 0xFF }
        var positions = (0..<4).filter { flags >> $0 & 1 == 1 }
        for j in 0..<4 where positions.count < 2 && !positions.contains(j) { positions.append(j) }
        positions.sort()
        return UInt8(positions[0] | positions[1] << 2)
    }

    /// Packs `count` elements (a multiple of M). Returns the index of the first group with
    /// more than N non-zero elements (and packs nothing sensible), or `nil` on success.
    ///
    /// Each group contributes N positions in increasing order: its non-zero positions plus,
    /// when it has fewer, the lowest positions holding zeros.
    @inlinable
    public static func pack<T: FixedWidthInteger & UnsignedInteger>(
        _ source: UnsafePointer<T>, count: Int, pattern: Pattern,
        values: UnsafeMutablePointer<T>, indices: UnsafeMutablePointer<UInt8>
    ) -> Int? {
        let n = pattern.n, m = pattern.m, bits = pattern.indexBits
        var writer = BitWriter(indices)
        var out = 0
        var group = 0
        var start = 0
        if n == 2 && m == 4 {
            // Table-driven: each group's non-zero flags give its two positions (packed
            // in one byte, the nibble the stream wants); no branch on the data.
            return twoOfFourPositions.withUnsafeBufferPointer { table -> Int? in
                var nibbles: UInt64 = 0
                var filled: UInt64 = 0
                var byte = 0
                while start < count {
                    let g0 = source[start], g1 = source[start &+ 1], g2 = source[start &+ 2], g3 = source[start &+ 3]
                    let flags = (g0 != 0 ? 1 : 0) | (g1 != 0 ? 2 : 0) | (g2 != 0 ? 4 : 0) | (g3 != 0 ? 8 : 0)
                    let pair = table[flags]
                    if pair == 0xFF { return group }
                    let first = Int(pair & 3), second = Int(pair >> 2 & 3)
                    values[out] = source[start &+ first]
                    values[out &+ 1] = source[start &+ second]
                    out &+= 2
                    nibbles |= UInt64(pair) << filled
                    filled &+= 4
                    if filled == 64 {
                        (UnsafeMutableRawPointer(indices) + byte).storeBytes(of: nibbles.littleEndian, as: UInt64.self)
                        byte &+= 8
                        nibbles = 0
                        filled = 0
                    }
                    start &+= 4
                    group &+= 1
                }
                var rest = nibbles
                while filled > 0 {
                    indices[byte] = UInt8(truncatingIfNeeded: rest)
                    rest >>= 8
                    byte &+= 1
                    filled = filled > 8 ? filled &- 8 : 0
                }
                return nil
            }
        }
        while start < count {
            var nonZero = 0
            for j in 0..<m where source[start &+ j] != 0 { nonZero &+= 1 }
            if nonZero > n { return group }
            var zerosToTake = n &- nonZero
            for j in 0..<m {
                let v = source[start &+ j]
                if v != 0 || zerosToTake > 0 {
                    if v == 0 { zerosToTake &-= 1 }
                    values[out] = v
                    out &+= 1
                    writer.append(UInt64(j), bits: bits)
                }
            }
            start &+= m
            group &+= 1
        }
        writer.flush()
        return nil
    }

    /// Unpacks into `count` elements (a multiple of M). Returns the index of the first group
    /// whose positions do not increase (damaged data), or `nil` on success.
    @inlinable
    public static func unpack<T: FixedWidthInteger & UnsignedInteger>(
        values: UnsafePointer<T>, indices: UnsafePointer<UInt8>, count: Int, pattern: Pattern,
        into destination: UnsafeMutablePointer<T>
    ) -> Int? {
        let n = pattern.n, m = pattern.m, bits = pattern.indexBits
        if n == 2 && m == 4 {
            // One position nibble per group: scatter the two values into a zeroed group.
            var k = 0
            var group = 0
            while group < count / 4 {
                let nibble = Int(indices[group >> 1] >> UInt8((group & 1) << 2)) & 0xF
                let first = nibble & 3, second = nibble >> 2
                if second <= first { return group }
                let out = destination + group * 4
                out[0] = 0
                out[1] = 0
                out[2] = 0
                out[3] = 0
                out[first] = values[k]
                out[second] = values[k &+ 1]
                k &+= 2
                group &+= 1
            }
            return nil
        }
        destination.update(repeating: 0, count: count)
        var reader = BitReader(indices)
        var k = 0
        var group = 0
        var start = 0
        while start < count {
            var previous = -1
            for _ in 0..<n {
                let position = Int(reader.next(bits: bits))
                guard position > previous, position < m else { return group }
                previous = position
                destination[start &+ position] = values[k]
                k &+= 1
            }
            start &+= m
            group &+= 1
        }
        return nil
    }
}

/// Appends little bit fields LSB first: field k of b bits occupies stream bits k·b …,
/// bit i of the stream being bit (i mod 8) of byte ⌊i/8⌋.
public struct BitWriter {
    @usableFromInline var output: UnsafeMutablePointer<UInt8>
    @usableFromInline var buffer: UInt64 = 0
    @usableFromInline var filled = 0

    @inlinable public init(_ output: UnsafeMutablePointer<UInt8>) { self.output = output }

    @inlinable public mutating func append(_ value: UInt64, bits: Int) {
        buffer |= value << UInt64(filled)
        filled &+= bits
        while filled >= 8 {
            output.pointee = UInt8(truncatingIfNeeded: buffer)
            output += 1
            buffer >>= 8
            filled &-= 8
        }
    }

    /// Writes the last partial byte, padded with zero bits.
    @inlinable public mutating func flush() {
        if filled > 0 {
            output.pointee = UInt8(truncatingIfNeeded: buffer)
            output += 1
            buffer = 0
            filled = 0
        }
    }
}

/// Reads what `BitWriter` wrote.
public struct BitReader {
    @usableFromInline var input: UnsafePointer<UInt8>
    @usableFromInline var buffer: UInt64 = 0
    @usableFromInline var available = 0

    @inlinable public init(_ input: UnsafePointer<UInt8>) { self.input = input }

    @inlinable public mutating func next(bits: Int) -> UInt64 {
        while available < bits {
            buffer |= UInt64(input.pointee) << UInt64(available)
            input += 1
            available &+= 8
        }
        let value = buffer & ((1 << UInt64(bits)) &- 1)
        buffer >>= UInt64(bits)
        available &-= bits
        return value
    }
}
