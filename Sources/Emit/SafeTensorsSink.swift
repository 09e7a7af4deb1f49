import SafeTensors
import Tensors

/// Streams tensors into a `.safetensors` file.
final class SafeTensorsSink: TensorSink {
    let writer: SafeTensorsWriter

    /// Written behind even when every tensor is a plain copy: on ext4, direct writes from
    /// a second thread beat the kernel's own copy_file_range plus writeback (BENCHMARKS.md).
    init(path: String, entries: [SafeTensorsWriter.Entry], metadata: [(key: String, value: String)]) throws(EmitError) {
        do { writer = try SafeTensorsWriter(path: path, entries: entries, metadata: metadata, writeBehind: true) } catch { throw .io(error) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(EmitError) {
        do { try writer.write(bytes) } catch { throw .io(error) }
    }

    func copy(from mapping: MappedFile, at offset: Int, count: Int) throws(EmitError) {
        do { try writer.copy(from: mapping, at: offset, count: count) } catch { throw .io(error) }
    }

    func withSpace(_ count: Int, _ body: (UnsafeMutableRawPointer) -> Void) throws(EmitError) {
        do { try writer.withSpace(count, body) } catch { throw .io(error) }
    }

    func finish(sync: Bool) throws(EmitError) {
        do { try writer.finish(sync: sync) } catch { throw .io(error) }
    }
}
