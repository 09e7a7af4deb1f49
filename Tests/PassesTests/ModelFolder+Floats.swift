import ModelFolder
import Testing
import Tensors

extension ModelFolder {
    /// Float values of a tensor, whatever its float dtype, with its shape.
    func floats(_ name: String) throws -> (shape: [Int], values: [Float]) {
        let tensor = try #require(tensors.first { $0.info.name == name })
        let count = Int(tensor.info.elementCount)
        var values = [Float](repeating: 0, count: count)
        try shards[tensor.shard].withBytes(of: tensor.info) { bytes in
            values.withUnsafeMutableBytes { FloatConversion.convert(count: count, from: tensor.info.dtype, bytes.baseAddress!, to: .f32, $0.baseAddress!) }
        }
        return (tensor.info.shape.map { Int($0) }, values)
    }
}
