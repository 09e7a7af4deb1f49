import Foundation
import ModelFolder
import ModelGraph
import Runtime
import SafeTensors
import Tensors

/// The calibration statistics as one safetensors file (`formats/stats.md`): F32 tensors
/// named after the model's tensors and layers (a scalar is a `[1]` tensor), and string
/// metadata (token count, sequences, the model's digest, the tool). Written aside, then
/// renamed, so a stopped run leaves nothing.
public enum StatisticsFile {
    /// The version of pare that writes the files.
    public static let pareVersion = "0.1.0"

    /// The metadata a file records about the run that made it.
    public static func metadata(model: ModelFolder, batch: TokenBatch, source: String) throws(RuntimeError) -> [(key: String, value: String)] {
        let digest: String
        do { digest = try TensorHasher.modelDigest(model) } catch {
            throw .io(path: model.indexPath ?? model.shards[0].path, problem: "cannot be hashed: \(error)")
        }
        return [
            ("tokens", String(batch.tokenCount)),
            ("sequences", String(batch.sequenceCount)),
            ("model_sha256", digest),
            ("tokens_file", PathName.lastComponent(source)),
            ("tool", "pare \(pareVersion)"),
            ("pare_version", pareVersion),
        ]
    }

    public static func write(
        _ statistics: [(name: String, values: [Float])], metadata: [(key: String, value: String)], to path: String
    ) throws(RuntimeError) {
        let sorted = statistics.sorted { $0.name < $1.name }
        let entries = sorted.map { SafeTensorsWriter.Entry(name: $0.name, dtype: .f32, shape: [UInt64($0.values.count)]) }
        let file = try StagedTensorFile(path: path, entries: entries, metadata: [("format", "pt")] + metadata)
        // Little-endian F32, as the host stores them. A failed write removes the file.
        for entry in sorted {
            var failure: RuntimeError?
            entry.values.withUnsafeBytes { raw in
                do throws(RuntimeError) { try file.write(raw) } catch { failure = error }
            }
            if let failure { throw failure }
        }
        try file.finish()
    }
}
