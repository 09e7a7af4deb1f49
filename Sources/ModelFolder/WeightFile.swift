import PareFormat
import SafeTensors
import Tensors

/// The file formats pare reads and writes weights in.
public enum WeightFormat: String, Sendable, CaseIterable {
    case safetensors
    case pare

    /// The weight files' extension, with its dot.
    public var fileExtension: String { "." + rawValue }
    /// The name of a single-file model's weights.
    public var singleFileName: String { "model" + fileExtension }
    /// The shard index beside sharded weights.
    public var indexFileName: String { "model\(fileExtension).index.json" }
    public var indexSuffix: String { "\(fileExtension).index.json" }

    public func shardName(_ index: Int, of count: Int) -> String {
        ShardIndex.shardName(index, of: count, extension: rawValue)
    }

    /// The format of a weight file name, by its extension.
    public init?(fileName: String) {
        guard let format = Self.allCases.first(where: { fileName.hasSuffix($0.fileExtension) }) else { return nil }
        self = format
    }
}

/// One weight file of a model, in either format.
///
/// Tensors of a `.pare` file get contiguous virtual `dataOffsets` (their decoded bytes laid
/// end to end), so sizes and byte counts work the same for both formats.
public enum WeightFile: Sendable {
    case safetensors(SafeTensorsFile)
    case pare(PareFile, [TensorInfo])

    init(path: String, format: WeightFormat) throws(ModelFolderError) {
        switch format {
        case .safetensors:
            do { self = .safetensors(try SafeTensorsFile(path: path)) } catch { throw .safeTensors(error) }
        case .pare:
            let file: PareFile
            do { file = try PareFile.open(path: path) } catch { throw .pare(error) }
            var offset: UInt64 = 0
            let infos = file.tensors.map { tensor in
                defer { offset += tensor.size }
                return TensorInfo(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape, dataOffsets: offset..<(offset + tensor.size))
            }
            self = .pare(file, infos)
        }
    }

    public var format: WeightFormat {
        switch self {
        case .safetensors: return .safetensors
        case .pare: return .pare
        }
    }

    public var path: String {
        switch self {
        case .safetensors(let file): return file.path
        case .pare(let file, _): return file.path
        }
    }

    /// Tensors in file order.
    public var tensors: [TensorInfo] {
        switch self {
        case .safetensors(let file): return file.tensors
        case .pare(_, let infos): return infos
        }
    }

    /// The safetensors `__metadata__` (kept in a `.pare` index too).
    public var metadata: [(key: String, value: String)]? {
        switch self {
        case .safetensors(let file): return file.header.metadata
        case .pare(let file, _): return file.metadata
        }
    }

    /// The size of the file on disk.
    public var fileSize: Int {
        switch self {
        case .safetensors(let file): return file.fileSize
        case .pare(let file, _): return file.mapping.size
        }
    }

    /// Calls `body` with a tensor's bytes: straight from the mapping for safetensors, decoded
    /// (and checked) into memory for `.pare`.
    public func withBytes<R>(of tensor: TensorInfo, _ body: (UnsafeRawBufferPointer) -> R) throws(ModelFolderError) -> R {
        switch self {
        case .safetensors(let file):
            return file.withBytes(of: tensor, body)
        case .pare(let file, _):
            guard let stored = file.tensor(named: tensor.name) else { preconditionFailure("tensor \(tensor.name) not in \(file.path)") }
            let storage = PageBuffer(bytes: Int(stored.size))
            let buffer = UnsafeMutableRawBufferPointer(rebasing: storage.bytes[..<Int(stored.size)])
            do { try file.decode(stored, into: buffer) } catch { throw .pare(error) }
            return body(UnsafeRawBufferPointer(buffer))
        }
    }

    /// Starts reading the first `limit` stored bytes of a tensor from disk in the
    /// background, for a tensor needed soon: reading then overlaps the work on the ones
    /// before it.
    public func prefetch(_ tensor: TensorInfo, limit: Int) {
        let range: Range<Int>
        switch self {
        case .safetensors(let file):
            range = file.fileRange(of: tensor)
        case .pare(let file, _):
            guard let stored = file.tensor(named: tensor.name), let first = stored.chunks.first, let last = stored.chunks.last else { return }
            range = Int(first.offset)..<Int(last.offset + last.length)
        }
        mapping.adviseWillNeed(range.lowerBound..<min(range.upperBound, range.lowerBound + max(0, limit)))
    }

    private var mapping: MappedFile {
        switch self {
        case .safetensors(let file): return file.mapping
        case .pare(let file, _): return file.mapping
        }
    }

    /// Hands a tensor's bytes to `body` in order, a piece at a time: mapped slices of at
    /// most `pieceBytes` for safetensors, batches of decoded chunks for `.pare`.
    public func forEachPiece(
        of tensor: TensorInfo, pieceBytes: Int, _ body: (UnsafeRawBufferPointer) throws(ModelFolderError) -> Void
    ) throws(ModelFolderError) {
        try forEachPiece(of: tensor, pieceBytes: pieceBytes, mapError: { $0 }, body)
    }

    /// `forEachPiece` for a `body` with errors of its own (a writer's): a failure to read
    /// goes through `mapError`.
    public func forEachPiece<E: Error>(
        of tensor: TensorInfo, pieceBytes: Int, mapError: (ModelFolderError) -> E, _ body: (UnsafeRawBufferPointer) throws(E) -> Void
    ) throws(E) {
        switch self {
        case .safetensors(let file):
            let range = file.fileRange(of: tensor)
            var offset = range.lowerBound
            while offset < range.upperBound {
                let end = min(range.upperBound, offset + pieceBytes)
                file.mapping.adviseSequential(offset..<end)
                try file.mapping.withBytes(in: offset..<end, body)
                file.mapping.adviseDone(offset..<end)
                offset = end
            }
        case .pare(let file, _):
            guard let stored = file.tensor(named: tensor.name) else { preconditionFailure("tensor \(tensor.name) not in \(file.path)") }
            try file.forEachBatch(of: stored, mapError: { mapError(.pare($0)) }, body)
        }
    }
}
