/// Copies a sub-tensor chosen by index lists on some dimensions: the kernel behind every
/// structural prune (kept heads are kept rows, kept channels are kept columns, ...).
///
/// Works on raw little-endian bytes of any dtype with a whole-byte element size. Runs of
/// consecutive kept indices in the innermost dimension are copied with one `memcpy`, so
/// slicing rows of a row-major matrix costs what copying them costs.
public struct Gather: Sendable {
    public let shape: [Int]
    public let elementSize: Int
    /// Kept indices per dimension, ascending; `nil` keeps the whole dimension.
    public let selections: [[Int]?]

    public init(shape: [Int], elementSize: Int, selections: [[Int]?]) {
        precondition(shape.count == selections.count)
        self.shape = shape
        self.elementSize = elementSize
        self.selections = selections
    }

    public var outputShape: [Int] {
        zip(shape, selections).map { size, selection in selection?.count ?? size }
    }

    public var outputByteCount: Int { outputShape.reduce(elementSize, *) }

    /// Bytes of one output "row" along dimension 0 (everything below it).
    public var outputRowBytes: Int { outputShape.dropFirst().reduce(elementSize, *) }

    private var inputStrides: [Int] {
        var strides = [Int](repeating: elementSize, count: shape.count)
        for d in stride(from: shape.count - 2, through: 0, by: -1) { strides[d] = strides[d + 1] * shape[d + 1] }
        return strides
    }

    /// Writes output rows `rows` (indices along output dimension 0) from `source` into
    /// `destination`, which must hold `rows.count * outputRowBytes` bytes. A scalar tensor
    /// (no dimensions) is one row.
    public func gather(rows: Range<Int>, from source: UnsafeRawPointer, into destination: UnsafeMutableRawPointer) {
        if shape.isEmpty {
            destination.copyMemory(from: source, byteCount: elementSize)
            return
        }
        let strides = inputStrides
        var out = destination
        // Innermost dimension as (start, length) runs of consecutive indices.
        let last = shape.count - 1
        let runs: [(Int, Int)] = {
            guard let keep = selections[last] else { return [(0, shape[last])] }
            var runs: [(Int, Int)] = []
            for index in keep {
                if let (start, length) = runs.last, start + length == index {
                    runs[runs.count - 1] = (start, length + 1)
                } else {
                    runs.append((index, 1))
                }
            }
            return runs
        }()
        func copy(dimension: Int, base: UnsafeRawPointer) {
            if dimension == last {
                for (start, length) in runs {
                    out.copyMemory(from: base + start * elementSize, byteCount: length * elementSize)
                    out += length * elementSize
                }
                return
            }
            if let keep = selections[dimension] {
                for index in keep { copy(dimension: dimension + 1, base: base + index * strides[dimension]) }
            } else {
                for index in 0..<shape[dimension] { copy(dimension: dimension + 1, base: base + index * strides[dimension]) }
            }
        }
        for row in rows {
            let index = selections[0]?[row] ?? row
            if last == 0 {
                out.copyMemory(from: source + index * elementSize, byteCount: elementSize)
                out += elementSize
            } else {
                copy(dimension: 1, base: source + index * strides[0])
            }
        }
    }
}
