import PareFormat
import SafeTensors
import Tensors

/// Where a conversion streams one output file's tensor bytes, whatever the format.
protocol TensorSink: AnyObject {
    func write(_ bytes: UnsafeRawBufferPointer) throws(ModelFolderError)
    /// Appends `count` bytes of `mapping` from `offset` (in the kernel where it can).
    func copy(from mapping: MappedFile, at offset: Int, count: Int) throws(ModelFolderError)
    /// Lets `body` produce the next `count` bytes (at most `OutputFile.maximumSpace`) in
    /// place where the format allows it.
    func withSpace(_ count: Int, _ body: (UnsafeMutableRawPointer) -> Void) throws(ModelFolderError)
    func finish(sync: Bool) throws(ModelFolderError)
}

final class SafeTensorsSink: TensorSink {
    let writer: SafeTensorsWriter

    /// Written behind even when every tensor is a plain copy: on ext4, direct writes from
    /// a second thread beat the kernel's own copy_file_range plus writeback (BENCHMARKS.md).
    init(path: String, entries: [SafeTensorsWriter.Entry], metadata: [(key: String, value: String)]) throws(ModelFolderError) {
        do { writer = try SafeTensorsWriter(path: path, entries: entries, metadata: metadata, writeBehind: true) } catch { throw .io(error) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(ModelFolderError) {
        do { try writer.write(bytes) } catch { throw .io(error) }
    }

    func copy(from mapping: MappedFile, at offset: Int, count: Int) throws(ModelFolderError) {
        do { try writer.copy(from: mapping, at: offset, count: count) } catch { throw .io(error) }
    }

    func withSpace(_ count: Int, _ body: (UnsafeMutableRawPointer) -> Void) throws(ModelFolderError) {
        do { try writer.withSpace(count, body) } catch { throw .io(error) }
    }

    func finish(sync: Bool) throws(ModelFolderError) {
        do { try writer.finish(sync: sync) } catch { throw .io(error) }
    }
}

final class PareSink: TensorSink {
    let writer: PareWriter

    init(path: String, entries: [PareWriter.Entry], metadata: [(key: String, value: String)], options: PareWriter.Options) throws(ModelFolderError) {
        do { writer = try PareWriter(path: path, entries: entries, metadata: metadata, options: options) } catch { throw .pare(error) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(ModelFolderError) {
        do { try writer.write(bytes) } catch { throw .pare(error) }
    }

    func copy(from mapping: MappedFile, at offset: Int, count: Int) throws(ModelFolderError) {
        do { try writer.copy(from: mapping, at: offset, count: count) } catch { throw .pare(error) }
    }

    /// Produced into a scratch buffer, then handed to the writer, which compresses it.
    func withSpace(_ count: Int, _ body: (UnsafeMutableRawPointer) -> Void) throws(ModelFolderError) {
        let space = scratch.reserve(count)
        body(space)
        try write(UnsafeRawBufferPointer(start: space, count: count))
    }

    private let scratch = ScratchBuffer()

    func finish(sync: Bool) throws(ModelFolderError) {
        do { try writer.finish(sync: sync) } catch { throw .pare(error) }
    }
}
