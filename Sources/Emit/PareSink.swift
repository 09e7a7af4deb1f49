import PareFormat
import Tensors

/// Streams tensors into a `.pare` file, which compresses them as they come.
final class PareSink: TensorSink {
    let writer: PareWriter

    init(path: String, entries: [PareWriter.Entry], metadata: [(key: String, value: String)], options: PareWriter.Options) throws(EmitError) {
        do { writer = try PareWriter(path: path, entries: entries, metadata: metadata, options: options) } catch { throw .pare(error) }
    }

    func write(_ bytes: UnsafeRawBufferPointer) throws(EmitError) {
        do { try writer.write(bytes) } catch { throw .pare(error) }
    }

    func copy(from mapping: MappedFile, at offset: Int, count: Int) throws(EmitError) {
        do { try writer.copy(from: mapping, at: offset, count: count) } catch { throw .pare(error) }
    }

    /// Produced into a scratch buffer, then handed to the writer, which compresses it.
    func withSpace(_ count: Int, _ body: (UnsafeMutableRawPointer) -> Void) throws(EmitError) {
        let space = scratch.reserve(count)
        body(space)
        try write(UnsafeRawBufferPointer(start: space, count: count))
    }

    private let scratch = ScratchBuffer()

    func finish(sync: Bool) throws(EmitError) {
        do { try writer.finish(sync: sync) } catch { throw .pare(error) }
    }
}
