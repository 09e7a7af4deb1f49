import Crypto
import Dispatch
import ModelFolder
import Synchronization

/// SHA-256 of every tensor of a model, computed on another core while the main work runs,
/// for provenance records that let a result be audited against its exact input.
public final class TensorHasher: Sendable {
    private let digests = Mutex<[(name: String, sha256: String)]>([])
    private let group = DispatchGroup()

    /// Starts hashing `model`'s tensors in the background.
    public init(model: ModelFolder) {
        group.enter()
        DispatchQueue.global(qos: .utility).async { [self] in
            var result: [(name: String, sha256: String)] = []
            for tensor in model.tensors {
                result.append((tensor.info.name, model.shards[tensor.shard].withBytes(of: tensor.info, Self.sha256)))
            }
            digests.withLock { $0 = result }
            group.leave()
        }
    }

    /// The digests, in the model's tensor order; waits for the hashing to finish.
    public func wait() -> [(name: String, sha256: String)] {
        group.wait()
        return digests.withLock { $0 }
    }
}

extension TensorHasher {
    /// The SHA-256 of `bytes` as 64 lowercase hex digits, as `sha256sum` and hashlib print it.
    public static func sha256(_ bytes: UnsafeRawBufferPointer) -> String {
        let hex = Array("0123456789abcdef")
        var text = ""
        for byte in SHA256.hash(data: bytes) {
            text.append(hex[Int(byte >> 4)])
            text.append(hex[Int(byte & 0xF)])
        }
        return text
    }
}
