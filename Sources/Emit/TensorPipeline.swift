import ModelFolder
import PareFormat
import SafeTensors
import Tensors

/// Streams the tensors of one output file from the input: each item is copied, cast,
/// gathered (its selections), merged (LaCo) or transformed on its way to the file's sink,
/// with the source read ahead. Memory stays bounded whatever the tensor, except for the
/// items that are both trimmed and transformed, which hold one output tensor.
struct TensorPipeline {
    let input: ModelFolder
    let plan: OutputPlan
    let pare: PareWriter.Options
    /// Where items that select indices get their final selections, if not from the item.
    let selectionSource: SelectionSource?

    /// Elements cast per step: bounds the cast buffer at 4 MiB of F32 whatever the tensor.
    static let castChunkElements = 1 << 20
    /// Bytes copied per step when no cast is needed, so progress and interruption are timely.
    static let copyChunkBytes = 64 << 20

    /// Writes `shard` to `path`. Progress counts from `done` bytes of `total`.
    func write(_ shard: OutputPlan.Shard, to path: String, done: Int, total: Int, progress: CheckpointWriter.Progress) throws(EmitError) {
        let sink: TensorSink
        switch plan.format {
        case .safetensors:
            sink = try SafeTensorsSink(path: path, entries: shard.items.map(\.entry), metadata: plan.metadata)
        case .pare:
            let entries = PareEncodingPolicy(input: input).entries(shard.items)
            sink = try PareSink(path: path, entries: entries, metadata: plan.metadata, options: pare)
        }
        func report(_ bytes: Int) throws(EmitError) {
            if !progress(bytes, total) { throw .interrupted }
        }
        var written = done
        // Casts and transforms that cannot produce in place work here, tensor after tensor.
        let scratch = ScratchBuffer()
        var prefetcher = Prefetcher(input: input, items: shard.items)
        for (index, planned) in shard.items.enumerated() {
            prefetcher.advance(to: index)
            var item = planned
            if item.selections != nil, let selectionSource {
                item.selections = try selectionSource.selections(forItem: item.order)
            }
            try write(item, to: sink, scratch: scratch) { done throws(EmitError) in try report(written + done) }
            written += item.entry.byteCount
            try report(written)
        }
        // Flushed later, all shards together (see `CheckpointWriter.run`), so the disk
        // keeps working while the next shard is produced.
        try sink.finish(sync: false)
    }

    /// Writes one tensor, reporting the bytes of it written so far.
    private func write(
        _ item: OutputItem, to sink: TensorSink, scratch: ScratchBuffer, progress: (Int) throws(EmitError) -> Void
    ) throws(EmitError) {
        if let contents = item.contents {
            try withBytes(of: contents) { bytes throws(EmitError) in try sink.write(bytes) }
            try progress(contents.count)
        } else if let transform = item.transform {
            if item.isWholeCopyExceptTransform {
                try withSourceBytes(item) { bytes throws(EmitError) in
                    try writeTransformed(item, transform, source: bytes, sink: sink, scratch: scratch, progress: progress)
                }
            } else {
                // A trimmed tensor that is then transformed: its (merged, sliced) bytes first.
                try withBytes(of: try slicedBytes(item)) { bytes throws(EmitError) in
                    try writeTransformed(item, transform, source: bytes, sink: sink, scratch: scratch, progress: progress)
                }
            }
        } else if !item.mergeSources.isEmpty {
            let merged = try EmitError.catchingInput { () throws(ModelFolderError) in
                try input.mergedBytes(base: item.source, others: item.mergeSources)
            }
            let selections = item.selections ?? item.source.info.shape.map { _ in nil }
            try withBytes(of: merged) { bytes throws(EmitError) in
                try writeGathered(item, selections: selections, source: bytes.baseAddress!, sink: sink, progress: progress)
            }
        } else if !item.isWholeCopy, let selections = item.selections {
            try withSourceBytes(item) { bytes throws(EmitError) in
                try writeGathered(item, selections: selections, source: bytes.baseAddress!, sink: sink, progress: progress)
            }
        } else if !item.needsCast {
            try copy(item, to: sink, progress: progress)
        } else {
            try cast(item, to: sink, scratch: scratch, progress: progress)
        }
    }

    /// Copies a tensor's bytes as they are.
    private func copy(_ item: OutputItem, to sink: TensorSink, progress: (Int) throws(EmitError) -> Void) throws(EmitError) {
        let source = input.shards[item.source.shard]
        if case .safetensors(let file) = source, plan.format == .safetensors {
            // Same bytes, same format: straight from the mapping, a piece at a time, each
            // released once written.
            let range = file.fileRange(of: item.source.info)
            var offset = range.lowerBound
            while offset < range.upperBound {
                let count = min(Self.copyChunkBytes, range.upperBound - offset)
                try sink.copy(from: file.mapping, at: offset, count: count)
                offset += count
                try progress(offset - range.lowerBound)
            }
        } else {
            var copied = 0
            try source.forEachPiece(of: item.source.info, pieceBytes: Self.copyChunkBytes, mapError: EmitError.input) { piece throws(EmitError) in
                try sink.write(piece)
                copied += piece.count
                try progress(copied)
            }
        }
    }

    /// Casts a tensor to its entry's dtype, a piece at a time.
    private func cast(
        _ item: OutputItem, to sink: TensorSink, scratch: ScratchBuffer, progress: (Int) throws(EmitError) -> Void
    ) throws(EmitError) {
        let from = item.source.info.dtype, to = item.entry.dtype
        let inBytes = from.bitWidth / 8, outBytes = to.bitWidth / 8
        let space = scratch.reserve(Self.castChunkElements * 4)
        var converted = 0
        let source = input.shards[item.source.shard]
        try source.forEachPiece(of: item.source.info, pieceBytes: Self.castChunkElements * inBytes, mapError: EmitError.input) { piece throws(EmitError) in
            // Pieces of a .pare tensor are batches of chunks, larger than the scratch.
            var start = 0
            let elements = piece.count / inBytes
            while start < elements {
                let count = min(Self.castChunkElements, elements - start)
                FloatConversion.convertInParallel(count: count, from: from, piece.baseAddress! + start * inBytes, to: to, space)
                try sink.write(UnsafeRawBufferPointer(start: space, count: count * outBytes))
                start += count
                converted += count
                try progress(converted * outBytes)
            }
        }
    }

    /// Calls `body` with the bytes of an item's source tensor (mapped, or decoded from `.pare`).
    private func withSourceBytes(_ item: OutputItem, _ body: (UnsafeRawBufferPointer) throws(EmitError) -> Void) throws(EmitError) {
        let source = input.shards[item.source.shard]
        let result = try EmitError.catchingInput { () throws(ModelFolderError) in
            try source.withBytes(of: item.source.info) { bytes in Result { () throws(EmitError) in try body(bytes) } }
        }
        try result.get()
    }

    /// Calls `body` with the bytes of `array`.
    private func withBytes(of array: [UInt8], _ body: (UnsafeRawBufferPointer) throws(EmitError) -> Void) throws(EmitError) {
        // Array's closure APIs rethrow untyped errors; carry the typed one through a Result.
        try array.withUnsafeBytes { bytes in Result { () throws(EmitError) in try body(bytes) } }.get()
    }
}
