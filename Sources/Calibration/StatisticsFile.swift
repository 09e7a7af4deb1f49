import Foundation
import Runtime
import SafeTensors
import Tensors

/// The calibration statistics as one safetensors file: F32 tensors named after the model's
/// tensors and layers (a scalar is a `[1]` tensor), and string metadata (token count,
/// sequences, the tool). Written aside, then renamed, so a stopped run leaves nothing.
public enum StatisticsFile {
    public static func write(
        _ statistics: [(name: String, values: [Float])], metadata: [(key: String, value: String)], to path: String
    ) throws(RuntimeError) {
        let sorted = statistics.sorted { $0.name < $1.name }
        let entries = sorted.map { SafeTensorsWriter.Entry(name: $0.name, dtype: .f32, shape: [UInt64($0.values.count)]) }
        let temporary = path + ".pare-tmp-\(getpid())"
        do {
            let writer = try SafeTensorsWriter(path: temporary, entries: entries, metadata: [("format", "pt")] + metadata)
            for entry in sorted {
                let bytes = entry.values.flatMap { v in withUnsafeBytes(of: v.bitPattern.littleEndian) { Array($0) } }
                try bytes.withUnsafeBytes { raw in try writer.write(raw) }
            }
            try writer.finish()
        } catch {
            unlink(temporary)
            throw .io(path: path, problem: "cannot be written: \(error)")
        }
        do { try FileSystem.rename(temporary, to: path) } catch {
            unlink(temporary)
            throw .io(path: path, problem: "cannot be renamed into place (\(error))")
        }
    }
}
