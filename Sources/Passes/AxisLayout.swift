import ModelGraph

/// How one dimension of a tensor is made of axes: one segment for a product such as
/// `kv_heads*group*head_dim`, several for a concatenation such as GPT-2's q|k|v.
struct AxisSegment {
    /// Axes outermost first, or `nil` for an expression that is not a pure product.
    var axes: [Axis]?
    /// Every axis the expression names, product or not.
    var names: [Axis]
    var sizes: [Int]
    /// Where the segment starts in the dimension.
    var offset: Int
    var length: Int
    var expression: String

    /// The index along each axis of flat position `p` (relative to the segment).
    func decompose(_ p: Int) -> [Axis: Int] {
        guard let axes else { return [:] }
        var rest = p
        var result: [Axis: Int] = [:]
        for (axis, size) in zip(axes, sizes).reversed() {
            result[axis] = rest % size
            rest /= size
        }
        return result
    }

    static func segments(of dimension: ArchitectureDescriptor.Dimension, _ binding: AxisBinding) -> [AxisSegment] {
        func segment(_ e: AxisExpression, offset: Int) -> AxisSegment {
            let length = (try? e.evaluate { binding.size($0) }) ?? 0
            let axes = e.productAxes
            return AxisSegment(axes: axes, names: e.axes, sizes: axes?.map { binding.size($0) ?? 0 } ?? [], offset: offset, length: length, expression: e.text)
        }
        switch dimension {
        case .expression(let e):
            return [segment(e, offset: 0)]
        case .concat(let parts):
            var offset = 0
            return parts.map { part in
                let s = segment(part, offset: offset)
                offset += s.length
                return s
            }
        }
    }
}
