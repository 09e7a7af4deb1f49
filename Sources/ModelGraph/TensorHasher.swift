import Crypto
#if canImport(Glibc)
import Glibc
#endif
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
        // Read, not mapped: a mapping of a multi-GB weight file would count every page
        // hashed in the process's resident set.
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw .io(FileError(.open, path: path)) }
        defer { close(fd) }
        var hasher = SHA256()
        let chunk = 4 << 20
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: chunk, alignment: 64)
        defer { buffer.deallocate() }
        while true {
            let n = read(fd, buffer.baseAddress, chunk)
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(FileError(.read, path: path))
            }
            if n == 0 { break }
            hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        }
        return hexDigest(hasher.finalize())
    }
}
