import ModelFolder
import ModelGraph
import SafeTensors
import Tensors

/// Calibration statistics as a trim reads them (`formats/stats.md`): named F32 vectors and
/// the metadata of the run that made them, from a file or straight from a calibration pass.
public struct CalibrationStatistics: Sendable {
    /// Where they came from, for messages and the record: a file, or the token file of an
    /// on-the-fly calibration.
    public let source: String
    /// SHA-256 of the statistics file (nil when calibrated on the fly).
    public let fileSHA256: String?
    public let metadata: [(key: String, value: String)]
    private let values: [String: [Float]]

    public init(source: String, fileSHA256: String?, metadata: [(key: String, value: String)], values: [String: [Float]]) {
        self.source = source
        self.fileSHA256 = fileSHA256
        self.metadata = metadata
        self.values = values
    }

    /// Reads a statistics file; every tensor must be F32.
    public static func load(path: String) throws(TrimError) -> CalibrationStatistics {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch { throw .stats(path: path, problem: error.description) }
        var values: [String: [Float]] = [:]
        for info in file.tensors {
            guard info.dtype == .f32 else {
                throw .stats(path: path, problem: "tensor '\(info.name)' is \(info.dtype.name); statistics are F32")
            }
            values[info.name] = file.withBytes(of: info) { raw in
                (0..<Int(info.elementCount)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
            }
        }
        let digest: String
        do {
            digest = try MappedFile(path: path).withBytes { TensorHasher.sha256($0) }
        } catch {
            throw .stats(path: path, problem: error.description)
        }
        return CalibrationStatistics(source: path, fileSHA256: digest, metadata: file.header.metadata ?? [], values: values)
    }

    public func metadata(_ key: String) -> String? { metadata.first { $0.key == key }?.value }

    /// The statistic `name`, which must have `count` values.
    public func vector(_ name: String, count: Int) throws(TrimError) -> [Double] {
        guard let v = values[name] else {
            throw .stats(path: source, problem: "it has no '\(name)', which this selection needs (was it calibrated on this model with pare calibrate?)")
        }
        guard v.count == count else {
            throw .stats(path: source, problem: "'\(name)' has \(v.count) values and the model has \(count); it was calibrated on a model of another shape")
        }
        return v.map(Double.init)
    }

    /// Refuses statistics recorded for another model: the metadata's `model_sha256` must be
    /// the model's digest (its index file, or its one weight file).
    public func check(model: ModelFolder) throws(TrimError) {
        guard let recorded = metadata("model_sha256") else {
            throw .stats(path: source, problem: "its metadata has no model_sha256, so it cannot be matched to the model; write it with pare calibrate or tools/collect_stats.py")
        }
        let digest: String
        do { digest = try TensorHasher.modelDigest(model) } catch { throw .input(error) }
        guard recorded == digest else {
            throw .stats(path: source, problem: "it was calibrated on another model (model_sha256 \(recorded.prefix(12))…, and \(model.path) has \(digest.prefix(12))…); calibrate this model")
        }
    }
}
