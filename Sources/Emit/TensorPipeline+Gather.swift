import ModelFolder
import Tensors

extension TensorPipeline {
    /// Bytes of output produced per step when gathering: bounds memory whatever the tensor.
    static let gatherChunkBytes = 16 << 20

    /// Writes the selected sub-tensor of `source` (the whole source tensor's bytes), a block
    /// of output rows at a time, cast if needed.
    func writeGathered(
        _ item: OutputItem, selections: [[Int]?], source: UnsafeRawPointer,
        sink: TensorSink, progress: (Int) throws(EmitError) -> Void
    ) throws(EmitError) {
        let from = item.source.info.dtype, to = item.entry.dtype
        let gather = Gather(shape: item.source.info.shape.map { Int($0) }, elementSize: from.bitWidth / 8, selections: selections)
        let rowBytes = max(1, gather.outputRowBytes)
        let rows = gather.outputShape.first ?? 1
        let rowsPerStep = max(1, Self.gatherChunkBytes / rowBytes)
        let storage = PageBuffer(bytes: rowsPerStep * rowBytes)
        let buffer = storage.pointer
        let castStorage = item.needsCast ? PageBuffer(bytes: rowsPerStep * rowBytes / (from.bitWidth / 8) * (to.bitWidth / 8)) : nil
        let castBuffer = castStorage?.pointer
        var done = 0
        var row = 0
        while row < rows {
            let step = min(rowsPerStep, rows - row)
            gather.gather(rows: row..<(row + step), from: source, into: buffer)
            var chunk = UnsafeRawBufferPointer(start: buffer, count: step * rowBytes)
            if let castBuffer {
                let count = chunk.count / (from.bitWidth / 8)
                FloatConversion.convertInParallel(count: count, from: from, buffer, to: to, castBuffer)
                chunk = UnsafeRawBufferPointer(start: castBuffer, count: count * (to.bitWidth / 8))
            }
            try sink.write(chunk)
            done += chunk.count
            row += step
            try progress(done)
        }
    }

    /// The bytes of an item's output before its transform: the source (or its LaCo merge)
    /// with the selections applied. Holds one output tensor in memory.
    func slicedBytes(_ item: OutputItem) throws(EmitError) -> [UInt8] {
        let info = item.source.info
        let selections = item.selections ?? info.shape.map { _ in nil }
        let gather = Gather(shape: info.shape.map { Int($0) }, elementSize: info.dtype.bitWidth / 8, selections: selections)
        let rows = gather.outputShape.first ?? 1
        var output = [UInt8](repeating: 0, count: rows * gather.outputRowBytes)
        func run(_ pointer: UnsafeRawPointer) {
            output.withUnsafeMutableBytes { gather.gather(rows: 0..<rows, from: pointer, into: $0.baseAddress!) }
        }
        try EmitError.catchingInput { () throws(ModelFolderError) in
            if !item.mergeSources.isEmpty {
                let merged = try input.mergedBytes(base: item.source, others: item.mergeSources)
                merged.withUnsafeBytes { run($0.baseAddress!) }
            } else {
                try input.shards[item.source.shard].withBytes(of: info) { run($0.baseAddress!) }
            }
        }
        return output
    }
}
