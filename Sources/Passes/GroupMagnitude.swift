import Emit
import ModelFolder
import ModelGraph
import Tensors

/// Calibration-free importance: the sum of squared L2 norms of every weight that would be
/// removed with a structure (its coupled group), as Torch-Pruning and LLM-Pruner score.
///
/// One pass over a tensor gives, for every dimension, the sum of squares of each slice
/// along it ("marginals"); a structure's score adds up the slices that belong to it in
/// every tensor carrying its axis. Sums are in Double so the order of additions does not
/// decide close calls.
enum GroupMagnitude {
    /// For each dimension, the sum of squares of each slice along it; of the LaCo merge of
    /// `node` with `mergeSources` when there are any.
    static func marginals(
        _ node: ModelGraph.Node, mergedWith mergeSources: [ModelFolder.Tensor], in model: ModelFolder
    ) throws(TrimError) -> [[Double]] {
        let info = node.source.info
        let shape = info.shape.map { Int($0) }
        guard info.dtype.isCastable else { throw .cannotScore(tensor: node.name, dtype: info.dtype.name) }
        do throws(ModelFolderError) {
            if mergeSources.isEmpty {
                return try model.shards[node.source.shard].withBytes(of: info) { bytes in
                    marginals(bytes, dtype: info.dtype, shape: shape)
                }
            }
        } catch {
            throw .input(error)
        }
        // Score what will be written: the merge rounded to the tensor's dtype.
        let rounded: [UInt8]
        do { rounded = try model.mergedBytes(base: node.source, others: mergeSources) } catch { throw .input(error) }
        return rounded.withUnsafeBytes { marginals($0, dtype: info.dtype, shape: shape) }
    }

    static func marginals(_ bytes: UnsafeRawBufferPointer, dtype: DType, shape: [Int]) -> [[Double]] {
        var result = shape.map { [Double](repeating: 0, count: $0) }
        guard !shape.isEmpty, shape.allSatisfy({ $0 > 0 }) else { return result }
        let inner = shape[shape.count - 1]
        let rows = shape.dropLast().reduce(1, *)
        let width = dtype.bitWidth / 8
        var index = [Int](repeating: 0, count: shape.count - 1)
        var columns = [Double](repeating: 0, count: inner)
        var row32 = [Float](repeating: 0, count: inner)
        columns.withUnsafeMutableBufferPointer { columns in
            row32.withUnsafeMutableBufferPointer { row32 in
                for row in 0..<rows {
                    // Widen the row to F32 in bulk (vectorised), then square and add in
                    // Double: four running sums break the dependency chain of one.
                    FloatConversion.convert(count: inner, from: dtype, bytes.baseAddress! + row * inner * width, to: .f32, row32.baseAddress!)
                    var s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0
                    var j = 0
                    while j + 4 <= inner {
                        let a = Double(row32[j]), b = Double(row32[j + 1]), c = Double(row32[j + 2]), d = Double(row32[j + 3])
                        let aa = a * a, bb = b * b, cc = c * c, dd = d * d
                        columns[j] += aa; columns[j + 1] += bb; columns[j + 2] += cc; columns[j + 3] += dd
                        s0 += aa; s1 += bb; s2 += cc; s3 += dd
                        j += 4
                    }
                    while j < inner {
                        let a = Double(row32[j])
                        columns[j] += a * a
                        s0 += a * a
                        j += 1
                    }
                    let rowSum = (s0 + s1) + (s2 + s3)
                    for d in 0..<index.count { result[d][index[d]] += rowSum }
                    // Advance the multi-index of the outer dimensions.
                    var d = index.count - 1
                    while d >= 0 {
                        index[d] += 1
                        if index[d] < shape[d] { break }
                        index[d] = 0
                        d -= 1
                    }
                }
            }
        }
        result[shape.count - 1] = Array(columns)
        return result
    }

    /// The indices of the `keep` highest scores, ties to the lower index, ascending.
    static func top(_ keep: Int, of scores: [Double]) -> [Int] {
        let order = scores.indices.sorted { scores[$0] != scores[$1] ? scores[$0] > scores[$1] : $0 < $1 }
        return Array(order.prefix(keep)).sorted()
    }
}
