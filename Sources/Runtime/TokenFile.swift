import Foundation
import OrderedJSON
import SafeTensors
import Tensors

/// Token ids to evaluate, read from a file: a safetensors file with an integer `input_ids`
/// tensor (`[N, T]` or `[T]`) and an optional `attention_mask` of the same shape (tokens
/// whose mask is 0 are left out), or JSON lines, one list of ids per line.
public struct TokenFile: Sendable {
    public let path: String
    /// The sequences as read, before any windowing.
    public let sequences: [[Int32]]

    public init(path: String) throws(RuntimeError) {
        self.path = path
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw .tokensInvalid(path: path, problem: FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist")
        }
        let head = (try? handle.read(upToCount: 16)) ?? Data()
        try? handle.close()
        // A safetensors file opens its JSON header after an 8-byte length; JSON lines open
        // with `[` (a list of ids) or `{` (an object), after any blank space.
        let bytes = Array(head)
        let firstText = bytes.first { !" \t\r\n".utf8.contains($0) }
        let looksLikeJSON = firstText == UInt8(ascii: "[") || (firstText == UInt8(ascii: "{") && !(bytes.count >= 9 && bytes[8] == UInt8(ascii: "{")))
        if path.hasSuffix(".safetensors") || (bytes.count >= 9 && !looksLikeJSON) {
            sequences = try Self.readSafeTensors(path)
        } else {
            sequences = try Self.readJSONLines(path)
        }
        guard sequences.contains(where: { !$0.isEmpty }) else { throw .tokensInvalid(path: path, problem: "holds no tokens") }
    }

    private static func readSafeTensors(_ path: String) throws(RuntimeError) -> [[Int32]] {
        let file: SafeTensorsFile
        do { file = try SafeTensorsFile(path: path) } catch {
            throw .tokensInvalid(path: path, problem: "is neither JSON lines of id lists nor a valid safetensors file (\(error.description))")
        }
        guard let ids = file.info("input_ids") else {
            throw .tokensInvalid(path: path, problem: "has no 'input_ids' tensor (it holds: \(file.tensors.map(\.name).joined(separator: ", ")))")
        }
        let values = try integers(file, ids, path: path)
        let shape = ids.shape.map(Int.init)
        let (rows, columns): (Int, Int)
        switch shape.count {
        case 1: (rows, columns) = (1, shape[0])
        case 2: (rows, columns) = (shape[0], shape[1])
        default: throw .tokensInvalid(path: path, problem: "'input_ids' has shape \(shape); expected [sequences, tokens] or [tokens]")
        }
        var mask: [Int64]?
        if let m = file.info("attention_mask") {
            guard m.shape == ids.shape else {
                throw .tokensInvalid(path: path, problem: "'attention_mask' has shape \(m.shape.map(Int.init)), not the shape of 'input_ids' \(shape)")
            }
            mask = try integers(file, m, path: path)
        }
        var sequences: [[Int32]] = []
        for r in 0..<rows {
            var s: [Int32] = []
            for c in 0..<columns where mask.map({ $0[r * columns + c] != 0 }) ?? true {
                let id = values[r * columns + c]
                guard let small = Int32(exactly: id) else {
                    throw .tokenOutOfVocabulary(path: path, sequence: r, position: c, id: Int(clamping: id), vocab: Int(Int32.max))
                }
                s.append(small)
            }
            sequences.append(s)
        }
        return sequences
    }

    private static func integers(_ file: SafeTensorsFile, _ info: TensorInfo, path: String) throws(RuntimeError) -> [Int64] {
        let n = Int(info.elementCount)
        let width: Int
        switch info.dtype {
        case .i64, .u64: width = 8
        case .i32, .u32: width = 4
        case .i16, .u16: width = 2
        case .u8, .i8, .bool: width = 1
        default: throw .tokensInvalid(path: path, problem: "'\(info.name)' is \(info.dtype.rawValue); token ids and masks are integers")
        }
        let signed = [DType.i64, .i32, .i16, .i8].contains(info.dtype)
        return file.withBytes(of: info) { (raw: UnsafeRawBufferPointer) -> [Int64] in
            (0..<n).map { i -> Int64 in
                let o = i * width
                switch (width, signed) {
                case (8, true): return Int64(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: Int64.self))
                case (8, false): return Int64(clamping: UInt64(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt64.self)))
                case (4, true): return Int64(Int32(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: Int32.self)))
                case (4, false): return Int64(UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt32.self)))
                case (2, true): return Int64(Int16(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: Int16.self)))
                case (2, false): return Int64(UInt16(littleEndian: raw.loadUnaligned(fromByteOffset: o, as: UInt16.self)))
                case (_, true): return Int64(raw.load(fromByteOffset: o, as: Int8.self))
                default: return Int64(raw.load(fromByteOffset: o, as: UInt8.self))
                }
            }
        }
    }

    private static func readJSONLines(_ path: String) throws(RuntimeError) -> [[Int32]] {
        guard let data = FileManager.default.contents(atPath: path) else { throw .tokensInvalid(path: path, problem: "cannot be read") }
        var sequences: [[Int32]] = []
        for (number, line) in data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false).enumerated() {
            guard line.contains(where: { !" \t\r".utf8.contains($0) }) else { continue }
            let json: JSONValue
            do { json = try JSONParser.parse(Array(line)) } catch {
                throw .tokensInvalid(path: path, problem: "line \(number + 1) is not JSON (\(error)); expected a list of token ids per line")
            }
            guard let items = json.arrayValue ?? json["input_ids"]?.arrayValue else {
                throw .tokensInvalid(path: path, problem: "line \(number + 1) is not a list of token ids")
            }
            var s: [Int32] = []
            for (i, item) in items.enumerated() {
                guard let v = item.intValue else {
                    throw .tokensInvalid(path: path, problem: "line \(number + 1), item \(i) is not an integer token id")
                }
                guard let small = Int32(exactly: v) else {
                    throw .tokenOutOfVocabulary(path: path, sequence: sequences.count, position: i, id: v, vocab: Int(Int32.max))
                }
                s.append(small)
            }
            sequences.append(s)
        }
        return sequences
    }

    /// The sequences cut into windows of at most `length` tokens (the last of each sequence
    /// may be shorter), the first `samples` of them.
    public func windows(length: Int?, samples: Int?) -> [[Int32]] {
        TokenWindows.cut(sequences, length: length, samples: samples)
    }

    /// Writes sequences as a token file pare and Python read back: `input_ids` and
    /// `attention_mask`, I64 `[sequences, longest]`, shorter rows padded on the right with
    /// id 0 and mask 0. Written aside and renamed into place.
    public static func write(_ sequences: [[Int32]], to path: String, metadata: [(key: String, value: String)]) throws(RuntimeError) {
        let width = sequences.map(\.count).max() ?? 0
        let shape = [UInt64(sequences.count), UInt64(width)]
        let file = try StagedTensorFile(path: path, entries: [
            .init(name: "input_ids", dtype: .i64, shape: shape),
            .init(name: "attention_mask", dtype: .i64, shape: shape),
        ], metadata: metadata)
        var row = [Int64](repeating: 0, count: width)
        var failure: RuntimeError?
        func put() {
            // Typed throws do not pass through `withUnsafeBytes`; carry the error out.
            row.withUnsafeBytes { raw in
                do throws(RuntimeError) { try file.write(raw) } catch { failure = error }
            }
        }
        for s in sequences where failure == nil {
            for k in 0..<width { row[k] = k < s.count ? Int64(s[k]) : 0 }
            put()
        }
        for s in sequences where failure == nil {
            for k in 0..<width { row[k] = k < s.count ? 1 : 0 }
            put()
        }
        if let failure { throw failure }
        try file.finish()
    }
}
