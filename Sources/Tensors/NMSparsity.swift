import CKernels
/// Chooses which elements N:M sparsity keeps and zeroes the rest.
///
/// A 2-D weight is cut into groups of M consecutive elements along its input dimension;
/// each group keeps the N elements with the highest score and the others become
/// all-bits zero. Scores are `|w|` (magnitude) or `|w| · norm[j]` (Wanda, with `norm[j]`
/// the activation norm of input channel j), computed in F32. Ties go to the lower
/// index, so results never depend on sort stability or thread timing.
public enum NMSparsity {
    /// Which dimension of a 2-D weight is the input one.
    public enum InputDimension: Sendable, Hashable {
        /// `nn.Linear`'s `[out, in]`: groups run along each row.
        case last
        /// GPT-2 `Conv1D`'s `[in, out]`: groups run down each column.
        case first
    }

    /// The positions kept in a group, as a bit set: the N highest of `scores[0..<m]`.
    ///
    /// Element j stays when fewer than N elements outrank it, an element outranking j
    /// when its score is higher, or equal at a lower index. Comparing every pair (M ≤ 16)
    /// is faster than repeated maximum searches and gives the same set. Used for float
    /// scores (Wanda, Conv1D columns) and for magnitude keys alike.
    @inlinable @inline(__always)
    static func keptPositions<S: Comparable>(_ scores: UnsafePointer<S>, m: Int, n: Int) -> UInt32 {
        var kept: UInt32 = 0
        for j in 0..<m {
            let s = scores[j]
            var above = 0
            for k in 0..<m where k != j {
                let t = scores[k]
                above &+= (t > s || (t == s && k < j)) ? 1 : 0
            }
            if above < n { kept |= 1 << UInt32(j) }
        }
        return kept
    }

    /// Writes rows `rows` of the pruned tensor into `output` (those rows only, back to
    /// back). `source` is the whole `[rows, columns]` tensor. For `.first`, `rows` must
    /// start and end on multiples of M (a group spans M rows).
    ///
    /// `norms` (Wanda) has one entry per input channel: `columns` for `.last`, the row
    /// count for `.first`.
    public static func prune(
        _ source: UnsafeRawPointer, dtype: DType, columns: Int, input: InputDimension, rows: Range<Int>,
        n: Int, m: Int, norms: UnsafePointer<Float>?, into output: UnsafeMutableRawPointer
    ) {
        let width = dtype.bitWidth / 8
        let rowBytes = columns * width
        // Magnitude alone orders floats as their bits without the sign do: no widening.
        if input == .last, norms == nil {
            switch width {
            case 2: return pruneByMagnitude(source, as: UInt16.self, magnitude: 0x7FFF, columns: columns, rows: rows, n: n, m: m, into: output)
            case 4: return pruneByMagnitude(source, as: UInt32.self, magnitude: 0x7FFF_FFFF, columns: columns, rows: rows, n: n, m: m, into: output)
            default: break
            }
        }
        output.copyMemory(from: source + rows.lowerBound * rowBytes, byteCount: rows.count * rowBytes)
        switch input {
        case .last:
            let values = UnsafeMutablePointer<Float>.allocate(capacity: columns)
            defer { values.deallocate() }
            for (k, row) in rows.enumerated() {
                FloatConversion.convert(count: columns, from: dtype, source + row * rowBytes, to: .f32, values)
                for j in 0..<columns {
                    let magnitude = abs(values[j])
                    values[j] = norms.map { magnitude * $0[j] } ?? magnitude
                }
                let out = output + k * rowBytes
                var start = 0
                while start < columns {
                    let kept = keptPositions(values + start, m: m, n: n)
                    zero(out + start * width, width: width, m: m, kept: kept)
                    start += m
                }
            }
        case .first:
            precondition(rows.lowerBound % m == 0 && rows.count % m == 0, "Conv1D groups span \(m) rows")
            let block = UnsafeMutablePointer<Float>.allocate(capacity: m * columns)
            defer { block.deallocate() }
            let scores = UnsafeMutablePointer<Float>.allocate(capacity: m)
            defer { scores.deallocate() }
            var first = rows.lowerBound
            while first < rows.upperBound {
                FloatConversion.convert(count: m * columns, from: dtype, source + first * rowBytes, to: .f32, block)
                for c in 0..<columns {
                    for j in 0..<m {
                        let magnitude = abs(block[j * columns + c])
                        scores[j] = norms.map { magnitude * $0[first + j] } ?? magnitude
                    }
                    let kept = keptPositions(scores, m: m, n: n)
                    for j in 0..<m where kept & (1 << UInt32(j)) == 0 {
                        let offset = (first - rows.lowerBound + j) * rowBytes + c * width
                        (output + offset).initializeMemory(as: UInt8.self, repeating: 0, count: width)
                    }
                }
                first += m
            }
        }
    }

    /// Zeroes the elements of a group of `m` at `group` that `kept` leaves out.
    @inline(__always)
    static func zero(_ group: UnsafeMutableRawPointer, width: Int, m: Int, kept: UInt32) {
        switch width {
        case 2:
            for j in 0..<m where kept & (1 << UInt32(j)) == 0 { group.storeBytes(of: UInt16(0), toByteOffset: 2 &* j, as: UInt16.self) }
        case 4:
            for j in 0..<m where kept & (1 << UInt32(j)) == 0 { group.storeBytes(of: UInt32(0), toByteOffset: 4 &* j, as: UInt32.self) }
        default:
            for j in 0..<m where kept & (1 << UInt32(j)) == 0 { (group + j * width).initializeMemory(as: UInt8.self, repeating: 0, count: width) }
        }
    }

    /// `prune` for magnitude scores along rows: compares the bits without the sign bit,
    /// which order finite floats (and infinities) exactly as their magnitudes do; a NaN
    /// ranks above every number.
    @inline(__always)
    static func pruneByMagnitude<T: FixedWidthInteger & UnsignedInteger>(
        _ source: UnsafeRawPointer, as: T.Type, magnitude: T, columns: Int, rows: Range<Int>, n: Int, m: Int,
        into output: UnsafeMutableRawPointer
    ) {
        let keys = UnsafeMutablePointer<T>.allocate(capacity: 16)
        defer { keys.deallocate() }
        for (k, row) in rows.enumerated() {
            let src = (source + row * columns * MemoryLayout<T>.size).assumingMemoryBound(to: T.self)
            let dst = (output + k * columns * MemoryLayout<T>.size).assumingMemoryBound(to: T.self)
            var g = 0
            if n == 2 && m == 4, T.self == UInt16.self, columns % 4 == 0 {
                _ = selectTwoOfFour(UnsafeRawPointer(src).assumingMemoryBound(to: UInt16.self), groups: columns / 4, mask: nil,
                                    values: nil, dense: UnsafeMutableRawPointer(dst).assumingMemoryBound(to: UInt16.self))
                continue
            }
            if n == 2 && m == 4 {
                twoOfFourKept.withUnsafeBufferPointer { table in
                    while g < columns {
                        let w0 = src[g], w1 = src[g &+ 1], w2 = src[g &+ 2], w3 = src[g &+ 3]
                        let kept = T(table[twoOfFourIndex(w0, w1, w2, w3, magnitude: magnitude)])
                        // All ones where kept: no branches on a random keep pattern.
                        dst[g] = w0 & (0 &- (kept & 1))
                        dst[g &+ 1] = w1 & (0 &- (kept >> 1 & 1))
                        dst[g &+ 2] = w2 & (0 &- (kept >> 2 & 1))
                        dst[g &+ 3] = w3 & (0 &- (kept >> 3 & 1))
                        g &+= 4
                    }
                }
                continue
            }
            while g < columns {
                for j in 0..<m { keys[j] = src[g &+ j] & magnitude }
                let kept = keptPositions(keys, m: m, n: n)
                for j in 0..<m { dst[g &+ j] = kept >> UInt32(j) & 1 == 1 ? src[g &+ j] : 0 }
                g &+= m
            }
        }
    }

    /// The two positions 2:4 keeps, as a 4-bit set, for each outcome of the six pairwise
    /// comparisons of a group (see `twoOfFourIndex`). Element i outranks j (i < j) when its
    /// magnitude is at least j's; two stay: those fewer than two outrank.
    public static let twoOfFourKept: [UInt8] = (0..<64).map { outcome in
        // Bit p of `outcome` says the later element of pair p has the larger magnitude.
        let pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
        var outranked = [0, 0, 0, 0]
        for (p, (i, j)) in pairs.enumerated() {
            if outcome >> p & 1 == 1 { outranked[i] += 1 } else { outranked[j] += 1 }
        }
        return UInt8((0..<4).reduce(0) { $0 | (outranked[$1] < 2 ? 1 << $1 : 0) })
    }

    /// The index into `twoOfFourKept` for a group: six comparisons of the magnitudes
    /// (bits without the sign), each "the later one is larger". Branch-free.
    @inlinable @inline(__always)
    public static func twoOfFourIndex<T: FixedWidthInteger & UnsignedInteger>(_ w0: T, _ w1: T, _ w2: T, _ w3: T, magnitude: T) -> Int {
        let a = Int64(w0 & magnitude), b = Int64(w1 & magnitude), c = Int64(w2 & magnitude), d = Int64(w3 & magnitude)
        // x < y exactly when x - y is negative: its sign bit, without a branch (compilers
        // turn `y > x ? 1 : 0` into jumps, which mispredict on random weights).
        @inline(__always) func less(_ x: Int64, _ y: Int64) -> Int { Int((x &- y) >> 63) & 1 }
        return less(a, b) | less(a, c) << 1 | less(a, d) << 2 | less(b, c) << 3 | less(b, d) << 4 | less(c, d) << 5
    }

    /// 2:4 magnitude selection of 16-bit floats (BF16 or F16 bits), `groups` groups of
    /// four from `source`, by the vector kernel (the rule of `twoOfFourKept`). Writes any
    /// of: the kept-element bitmask (bit per element, LSB first; `(groups + 1) / 2`
    /// bytes), the two kept values of each group in order, the pruned elements (zero where
    /// dropped). Returns how many kept elements have zero magnitude.
    @inlinable
    public static func selectTwoOfFour(
        _ source: UnsafePointer<UInt16>, groups: Int, mask: UnsafeMutablePointer<UInt8>?,
        values: UnsafeMutablePointer<UInt16>?, dense: UnsafeMutablePointer<UInt16>? = nil
    ) -> Int {
        pare_select_2of4_u16(source, groups, mask, values, dense)
    }

    /// `selectTwoOfFour` without vector instructions, whatever the CPU: for tests.
    static func selectTwoOfFourPortable(
        _ source: UnsafePointer<UInt16>, groups: Int, mask: UnsafeMutablePointer<UInt8>?,
        values: UnsafeMutablePointer<UInt16>?, dense: UnsafeMutablePointer<UInt16>? = nil
    ) -> Int {
        pare_select_2of4_u16_portable(source, groups, mask, values, dense)
    }
}
