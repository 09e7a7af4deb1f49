import Crypto
import Dispatch
import ModelFolder
import Synchronization
import Tensors

/// SHA-256 of every tensor of a model, computed on another core while the main work runs,
/// for provenance records that let a result be audited against its exact input.
public final class TensorHasher: Sendable {
    private let digests = Mutex<Result<[(name: String, sha256: String)], ModelFolderError>>(.success([]))
    private let group = DispatchGroup()

    /// Starts hashing `model`'s tensors in the background.
    public init(model: ModelFolder) {
        group.enter()
        DispatchQueue.global(qos: .utility).async { [self] in
            let result = Result { () throws(ModelFolderError) -> [(name: String, sha256: String)] in
                try model.tensors.map { (tensor: ModelFolder.Tensor) throws(ModelFolderError) -> (name: String, sha256: String) in
                    (tensor.info.name, try Self.sha256(of: tensor, in: model))
                }
            }
            digests.withLock { $0 = result }
            group.leave()
        }
    }

    /// The digests, in the model's tensor order; waits for the hashing to finish. Fails
    /// when a tensor could not be read (a damaged `.pare` chunk).
    public func wait() throws(ModelFolderError) -> [(name: String, sha256: String)] {
        group.wait()
        return try digests.withLock { $0 }.get()
    }
}

extension TensorHasher {
    /// The SHA-256 of a tensor's bytes, read a piece at a time (decoded for `.pare`).
    public static func sha256(of tensor: ModelFolder.Tensor, in model: ModelFolder) throws(ModelFolderError) -> String {
        var hasher = SHA256()
        try model.shards[tensor.shard].forEachPiece(of: tensor.info, pieceBytes: 16 << 20) { (piece: UnsafeRawBufferPointer) throws(ModelFolderError) in
            hasher.update(bufferPointer: piece)
        }
        return hexDigest(hasher.finalize())
    }

    /// The SHA-256 of `bytes` as 64 lowercase hex digits, as `sha256sum` and hashlib print it.
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> String {
        hexDigest(SHA256.hash(data: bytes))
    }

    private static func hexDigest(_ digest: SHA256.Digest) -> String {
        let hex = Array("0123456789abcdef")
        var text = ""
        for byte in digest {
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0xF)])
        }
        return text
    }
}

extension TensorHasher {
    /// The SHA-256 of what identifies a model's weights: its index file when it is
    /// sharded, else its one weight file (as `sha256sum` prints it).
    public static func modelDigest(_ model: ModelFolder) throws(ModelFolderError) -> String {
        let path = model.indexPath ?? model.shards[0].path
        let file: MappedFile
        do { file = try MappedFile(path: path) } catch { throw .io(error) }
        var hasher = SHA256()
        var offset = 0
        while offset < file.size {
            let end = min(file.size, offset + (64 << 20))
            file.withBytes(in: offset..<end) { hasher.update(bufferPointer: $0) }
            offset = end
        }
        return hexDigest(hasher.finalize())
    }
}
