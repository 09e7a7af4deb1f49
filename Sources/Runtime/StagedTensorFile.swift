import Foundation
import SafeTensors
import Tensors

/// A safetensors file written beside its final path and renamed into place only when
/// complete: a failed or interrupted run leaves nothing behind. What `pare eval --save`
/// and the calibration statistics are written through.
public final class StagedTensorFile {
    public let path: String
    private let temporary: String
    private let writer: SafeTensorsWriter

    public init(path: String, entries: [SafeTensorsWriter.Entry], metadata: [(key: String, value: String)]) throws(RuntimeError) {
        self.path = path
        temporary = StagingName.path(for: path)
        ResourceFailure.register(temporary)
        do { writer = try SafeTensorsWriter(path: temporary, entries: entries, metadata: metadata) } catch {
            ResourceFailure.unregister(temporary)
            unlink(temporary)
            throw .io(path: path, problem: "cannot be written: \(error)")
        }
    }

    /// Appends the next bytes of the tensors, in entry order.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(RuntimeError) {
        do { try writer.write(bytes) } catch {
            unlink(temporary)
            throw .io(path: path, problem: "cannot be written: \(error)")
        }
    }

    /// Removes the unfinished file.
    public func abandon() {
        unlink(temporary)
        ResourceFailure.unregister(temporary)
    }

    /// Completes the file and renames it into place.
    public func finish() throws(RuntimeError) {
        defer { ResourceFailure.unregister(temporary) }
        do { try writer.finish() } catch {
            unlink(temporary)
            throw .io(path: path, problem: "cannot be written: \(error)")
        }
        do { try FileSystem.rename(temporary, to: path) } catch {
            unlink(temporary)
            throw .io(path: path, problem: "cannot be renamed into place (\(error))")
        }
    }
}
