import Synchronization
import Tensors

/// A safetensors file opened for reading: mapped, header validated, data untouched.
///
/// Opening reads only the header. Tensor bytes are handed out as zero-copy views of the
/// mapping through `withBytes(of:_:)`, and stay on disk until then.
public final class SafeTensorsFile: Sendable {
    public let path: String
    public let header: SafeTensorsHeader
    public let mapping: MappedFile
    /// Built by the first `info(_:)`: a weight file read whole never needs it, and for a
    /// header of a million tensors it cost as much as the tensor list.
    private let indexByName = Mutex<[String: Int]?>(nil)

    public init(path: String) throws(SafeTensorsError) {
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw .io(error) }
        let header = try file.withBytes { bytes throws(SafeTensorsError) in
            try SafeTensorsHeader.parse(file: bytes, path: path)
        }
        self.path = path
        self.mapping = file
        self.header = header
    }

    public var tensors: [TensorInfo] { header.tensors }

    public func info(_ name: String) -> TensorInfo? {
        let position = indexByName.withLock { index -> Int? in
            if index == nil {
                var built: [String: Int] = [:]
                built.reserveCapacity(header.tensors.count)
                for (i, tensor) in header.tensors.enumerated() { built[tensor.name] = i }
                index = built
            }
            return index![name]
        }
        return position.map { header.tensors[$0] }
    }

    /// The absolute byte range of a tensor's data within the file.
    public func fileRange(of tensor: TensorInfo) -> Range<Int> {
        (header.dataStart + Int(tensor.dataOffsets.lowerBound))..<(header.dataStart + Int(tensor.dataOffsets.upperBound))
    }

    /// Calls `body` with a view of the tensor's bytes in the mapping.
    public func withBytes<R, E: Error>(
        of tensor: TensorInfo, _ body: (UnsafeRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        try mapping.withBytes(in: fileRange(of: tensor), body)
    }

    /// The size of the file on disk.
    public var fileSize: Int { mapping.size }
}
