import Dispatch
import Tensors

extension TensorPipeline {
    /// Writes a transformed tensor, a block of source rows at a time (about
    /// `gatherChunkBytes` of output per step).
    func writeTransformed(
        _ item: OutputItem, _ transform: any TensorTransform, source: UnsafeRawBufferPointer,
        sink: TensorSink, scratch: ScratchBuffer, progress: (Int) throws(EmitError) -> Void
    ) throws(EmitError) {
        // Rows of what the transform reads: the sliced tensor when there are selections.
        let shape = item.isWholeCopyExceptTransform ? item.source.info.shape : item.entry.shape
        let rows = shape.count >= 2 ? Int(shape[0]) : 1
        let total = item.entry.byteCount
        // Whole tensor at once unless the output is laid out row by row.
        var step = max(rows, 1)
        if transform.rowBlock > 0, rows > 0, total % rows == 0 {
            // Steps are bounded by what a row reads as well as what it writes: a packed
            // layout can write a few bytes for a row whose pruning works on kilobytes.
            // What a step writes fits the sink's space, so it is produced in place.
            let sourceRowBytes = shape.count >= 2 ? shape.dropFirst().reduce(item.source.info.dtype.bitWidth / 8) { $0 * Int($1) } : 0
            let outputRowBytes = max(1, total / rows)
            let rowsRead = Self.gatherChunkBytes / max(1, sourceRowBytes)
            let rowsWritten = OutputFile.maximumSpace / outputRowBytes
            step = min(step, max(1, min(rowsRead, rowsWritten) / transform.rowBlock) * transform.rowBlock)
        }
        let stepBytes = step >= rows ? total : total / rows * step
        let inPlace = stepBytes <= OutputFile.maximumSpace
        var done = 0
        var row = 0
        repeat {
            let range = row..<min(rows, row + step)
            let bytes = step >= rows ? total : total / rows * range.count
            let rowBytes = step >= rows ? 0 : total / rows
            if inPlace {
                try sink.withSpace(bytes) { Self.applyInParallel(transform, source: source, rows: range, rowBytes: rowBytes, into: $0) }
            } else {
                let buffer = scratch.reserve(stepBytes)
                Self.applyInParallel(transform, source: source, rows: range, rowBytes: rowBytes, into: buffer)
                try sink.write(UnsafeRawBufferPointer(start: buffer, count: bytes))
            }
            done += bytes
            row = range.upperBound
            try progress(done)
        } while row < rows
    }

    /// Runs a transform over `rows` on every core, in slices of whole row blocks (rows are
    /// independent); `rowBytes` 0 means the output is not laid out by rows: one call.
    static func applyInParallel(
        _ transform: any TensorTransform, source: UnsafeRawBufferPointer, rows: Range<Int>, rowBytes: Int,
        into output: UnsafeMutableRawPointer
    ) {
        let block = max(1, transform.rowBlock)
        let blocks = (rows.count + block - 1) / block
        let parts = min(FloatConversion.activeCores, blocks)
        guard rowBytes > 0, transform.rowBlock > 0, parts > 1 else {
            transform.apply(source: source, rows: rows, into: output)
            return
        }
        let perPart = (blocks + parts - 1) / parts * block
        // The buffers outlive the work, which finishes before this returns.
        nonisolated(unsafe) let source = source
        nonisolated(unsafe) let output = output
        WorkerPool.shared.perform(parts) { part in
            let start = rows.lowerBound + part * perPart
            let end = min(rows.upperBound, start + perPart)
            guard start < end else { return }
            transform.apply(source: source, rows: start..<end, into: output + (start - rows.lowerBound) * rowBytes)
        }
    }
}
