import Testing
import TestSupport

@testable import Tensors

/// `Gather` against a naive reference: every output element located by its multi-index,
/// mapped through the selections to an input multi-index, and copied byte by byte.
@Suite struct GatherTests {
    static let sentinel: UInt8 = 0xA5

    /// The reference gather: nested loops over the output's multi-indices (row-major).
    static func naiveGather(_ source: [UInt8], shape: [Int], elementSize: Int, selections: [[Int]?]) -> [UInt8] {
        let kept: [[Int]] = zip(shape, selections).map { size, selection in selection ?? Array(0..<size) }
        var out: [UInt8] = []
        var inputStrides = [Int](repeating: 1, count: shape.count)
        for d in shape.indices.reversed().dropFirst() { inputStrides[d] = inputStrides[d + 1] * shape[d + 1] }
        func visit(_ dimension: Int, _ flat: Int) {
            if dimension == shape.count {
                out += source[(flat * elementSize)..<((flat + 1) * elementSize)]
                return
            }
            for index in kept[dimension] { visit(dimension + 1, flat + index * inputStrides[dimension]) }
        }
        visit(0, 0)
        return out
    }

    /// `Gather.gather` of `rows` into a buffer with guard bytes after it; fails the test if
    /// anything past `rows.count * outputRowBytes` is written.
    static func gather(_ g: Gather, rows: Range<Int>, from source: [UInt8]) -> [UInt8] {
        let bytes = g.shape.isEmpty ? g.elementSize : rows.count * g.outputRowBytes
        var out = [UInt8](repeating: sentinel, count: bytes + 32)
        (source + [0]).withUnsafeBytes { src in
            out.withUnsafeMutableBytes { dst in g.gather(rows: rows, from: src.baseAddress!, into: dst.baseAddress!) }
        }
        #expect(out[bytes...].allSatisfy { $0 == sentinel }, "gather wrote past its \(bytes) bytes")
        return Array(out[..<bytes])
    }

    /// Input bytes that differ everywhere, so a wrong offset shows.
    static func source(shape: [Int], elementSize: Int, seed: UInt64) -> [UInt8] {
        var rng = SplitMix64(seed: seed)
        return (0..<(shape.reduce(1, *) * elementSize)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
    }

    /// An ascending random subset of `0..<size` with runs and gaps (possibly empty,
    /// possibly everything).
    static func subset(of size: Int, rng: inout SplitMix64) -> [Int] {
        switch rng.next() % 6 {
        case 0: return Array(0..<size)
        case 1: return size > 0 ? [Int(rng.next() % UInt64(size))] : []
        default: return (0..<size).filter { _ in rng.next() % 3 != 0 }
        }
    }

    // MARK: Hand-worked

    @Test func keepsColumnsOfAMatrixAcrossRunsAndGaps() {
        // A 2×6 matrix of bytes 0...11; columns 0, 1, 2, 4, 5 (a run of three, a gap, a
        // run of two) of both rows.
        let g = Gather(shape: [2, 6], elementSize: 1, selections: [nil, [0, 1, 2, 4, 5]])
        #expect(g.outputShape == [2, 5])
        #expect(g.outputByteCount == 10)
        #expect(g.outputRowBytes == 5)
        #expect(Self.gather(g, rows: 0..<2, from: Array(0...11)) == [0, 1, 2, 4, 5, 6, 7, 8, 10, 11])
    }

    @Test func keepsHeadsInsideAThreeDimensionalTensor() {
        // [2, 3, 4] bytes equal to their flat index; middle indices 0 and 2, last 1 and 3:
        // a*12 + b*4 + c for a in 0...1, b in [0, 2], c in [1, 3].
        let g = Gather(shape: [2, 3, 4], elementSize: 1, selections: [nil, [0, 2], [1, 3]])
        #expect(g.outputShape == [2, 2, 2])
        #expect(Self.gather(g, rows: 0..<2, from: Array(0..<24)) == [1, 3, 9, 11, 13, 15, 21, 23])
    }

    @Test func keepsRowsOfTwoByteElements() {
        // A 3×2 matrix of UInt16 (little-endian): rows 0 and 2.
        let values: [UInt16] = [0x0100, 0x0302, 0x0504, 0x0706, 0x0908, 0x0B0A]
        let bytes = values.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
        let g = Gather(shape: [3, 2], elementSize: 2, selections: [[0, 2], nil])
        #expect(g.outputRowBytes == 4)
        #expect(Self.gather(g, rows: 0..<2, from: bytes) == [0x00, 0x01, 0x02, 0x03, 0x08, 0x09, 0x0A, 0x0B])
        // Output row 1 alone is input row 2.
        #expect(Self.gather(g, rows: 1..<2, from: bytes) == [0x08, 0x09, 0x0A, 0x0B])
    }

    @Test func aScalarIsOneElement() {
        let g = Gather(shape: [], elementSize: 4, selections: [])
        #expect(g.outputShape == [])
        #expect(g.outputByteCount == 4)
        #expect(Self.gather(g, rows: 0..<1, from: [1, 2, 3, 4]) == [1, 2, 3, 4])
    }

    @Test func aOneDimensionalSelectionPicksElements() {
        let values: [UInt32] = [10, 11, 12, 13, 14, 15, 16]
        let bytes = values.flatMap { withUnsafeBytes(of: $0.littleEndian, Array.init) }
        let g = Gather(shape: [7], elementSize: 4, selections: [[1, 2, 3, 6]])
        #expect(g.outputShape == [4])
        #expect(g.outputRowBytes == 4)
        let out = Self.gather(g, rows: 0..<4, from: bytes)
        #expect(out == [11, 12, 13, 16].flatMap { (v: UInt32) in withUnsafeBytes(of: v.littleEndian, Array.init) })
    }

    @Test func emptySelectionsGiveNothing() {
        let source = Self.source(shape: [3, 4], elementSize: 2, seed: 1)
        let noColumns = Gather(shape: [3, 4], elementSize: 2, selections: [nil, []])
        #expect(noColumns.outputShape == [3, 0])
        #expect(noColumns.outputByteCount == 0)
        #expect(Self.gather(noColumns, rows: 0..<3, from: source).isEmpty)
        let noRows = Gather(shape: [3, 4], elementSize: 2, selections: [[], nil])
        #expect(noRows.outputShape == [0, 4])
        #expect(Self.gather(noRows, rows: 0..<0, from: source).isEmpty)
        // A dimension of size zero, kept whole: rows of no bytes.
        let zeroSized = Gather(shape: [2, 0, 3], elementSize: 4, selections: [[1], nil, [0, 2]])
        #expect(zeroSized.outputShape == [1, 0, 2])
        #expect(zeroSized.outputRowBytes == 0)
        #expect(Self.gather(zeroSized, rows: 0..<1, from: []).isEmpty)
    }

    // MARK: Against the naive reference

    static let shapes: [[Int]] = [[9], [1], [5, 7], [1, 13], [6, 1], [3, 4, 5], [2, 3, 1, 8], [4, 2, 3, 6], [3, 5, 2, 2]]

    /// Every subset of dimensions selected (the others `nil`), 1-D to 4-D, element sizes
    /// 1, 2 and 4, random ascending selections with runs and gaps.
    @Test(arguments: shapes, [1, 2, 4])
    func matchesTheNaiveGatherOnEverySubsetOfDimensions(shape: [Int], elementSize: Int) {
        var rng = SplitMix64(seed: UInt64(shape.reduce(17, { $0 * 31 + $1 }) * 8 + elementSize))
        let source = Self.source(shape: shape, elementSize: elementSize, seed: rng.next())
        for selected in 0..<(1 << shape.count) {
            for _ in 0..<4 {
                let selections: [[Int]?] = shape.indices.map { d in
                    selected >> d & 1 == 1 ? Self.subset(of: shape[d], rng: &rng) : nil
                }
                let g = Gather(shape: shape, elementSize: elementSize, selections: selections)
                let expectedShape = zip(shape, selections).map { $1?.count ?? $0 }
                #expect(g.outputShape == expectedShape)
                #expect(g.outputByteCount == expectedShape.reduce(elementSize, *))
                #expect(g.outputRowBytes == expectedShape.dropFirst().reduce(elementSize, *))
                let expected = Self.naiveGather(source, shape: shape, elementSize: elementSize, selections: selections)
                #expect(expected.count == g.outputByteCount)
                let out = Self.gather(g, rows: 0..<expectedShape[0], from: source)
                #expect(out == expected, "shape \(shape) size \(elementSize) selections \(selections)")
            }
        }
    }

    /// Gathering the output rows in several calls, each into its place, equals one call;
    /// a range starting past row 0 reads the rows the selection names, not the first ones.
    @Test(arguments: shapes.filter { $0[0] > 1 }, [1, 2, 4])
    func rowsInSeveralCallsEqualOneCall(shape: [Int], elementSize: Int) {
        var rng = SplitMix64(seed: UInt64(shape.reduce(3, { $0 * 131 + $1 }) + elementSize))
        let source = Self.source(shape: shape, elementSize: elementSize, seed: 5)
        for _ in 0..<8 {
            let selections: [[Int]?] = shape.indices.map { d in
                rng.next() % 2 == 0 ? nil : Self.subset(of: shape[d], rng: &rng)
            }
            let g = Gather(shape: shape, elementSize: elementSize, selections: selections)
            let rows = g.outputShape[0]
            let whole = Self.gather(g, rows: 0..<rows, from: source)
            #expect(whole == Self.naiveGather(source, shape: shape, elementSize: elementSize, selections: selections))
            // Random cut points, including empty pieces.
            var cuts = [0, rows]
            for _ in 0..<3 { cuts.append(Int(rng.next() % UInt64(rows + 1))) }
            cuts.sort()
            var pieces: [UInt8] = []
            for (start, end) in zip(cuts, cuts.dropFirst()) {
                let piece = Self.gather(g, rows: start..<end, from: source)
                #expect(piece.count == (end - start) * g.outputRowBytes)
                #expect(piece == Array(whole[(start * g.outputRowBytes)..<(end * g.outputRowBytes)]))
                pieces += piece
            }
            #expect(pieces == whole)
            // One row at a time, last to first.
            for row in (0..<rows).reversed() {
                #expect(Self.gather(g, rows: row..<(row + 1), from: source)
                        == Array(whole[(row * g.outputRowBytes)..<((row + 1) * g.outputRowBytes)]))
            }
        }
    }

    /// Keeping everything, by `nil` or by listing every index, copies the tensor.
    @Test(arguments: [[8], [4, 6], [2, 3, 4], [2, 2, 3, 5]])
    func keepingEverythingCopiesTheTensor(shape: [Int]) {
        let source = Self.source(shape: shape, elementSize: 2, seed: 9)
        let byNil = Gather(shape: shape, elementSize: 2, selections: shape.map { _ in nil })
        let byList = Gather(shape: shape, elementSize: 2, selections: shape.map { Array(0..<$0) })
        #expect(Self.gather(byNil, rows: 0..<shape[0], from: source) == source)
        #expect(Self.gather(byList, rows: 0..<shape[0], from: source) == source)
    }
}
