import Foundation
import OrderedJSON

/// The documents of a text file: the whole file as one document, or, for JSON lines (every
/// non-blank line an object with a string `text`), one document per line. Bytes that are
/// not UTF-8 become U+FFFD, one per maximal ill-formed subsequence, as Python's
/// `bytes.decode("utf-8", errors="replace")` does.
public struct TextCorpus: Sendable {
    public let path: String
    public let documents: [String]
    public let isJSONLines: Bool
    /// The file's size in bytes.
    public let bytes: Int

    public init(path: String) throws(TokenizerError) {
        self.path = path
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue else {
            throw .unreadable(path: path, problem: "is not a text file (it does not exist, or is a folder)")
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable(path: path, problem: "cannot be read") }
        bytes = data.count
        if let lines = try Self.jsonLines(data, path: path) {
            documents = lines
            isJSONLines = true
        } else {
            documents = [String(decoding: data, as: UTF8.self)]
            isJSONLines = false
        }
        guard documents.contains(where: { !$0.isEmpty }) else { throw .unreadable(path: path, problem: "holds no text") }
    }

    /// The `text` of each line, when the first non-blank line is a JSON object with one;
    /// nil for plain text.
    private static func jsonLines(_ data: Data, path: String) throws(TokenizerError) -> [String]? {
        let lines = data.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        func isBlank(_ line: Data.SubSequence) -> Bool { line.allSatisfy { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D } }
        guard let first = lines.first(where: { !isBlank($0) }), first.first(where: { $0 != 0x20 && $0 != 0x09 }) == UInt8(ascii: "{"),
              (try? parse(first))?["text"]?.stringValue != nil else {
            return nil
        }
        var out: [String] = []
        for (k, line) in lines.enumerated() where !isBlank(line) {
            guard let object = try? parse(line), object.objectMembers != nil else {
                throw .unreadable(path: path, problem: "line \(k + 1) is not a JSON object, and the file's first line made it JSON lines")
            }
            guard let text = object["text"]?.stringValue else {
                throw .unreadable(path: path, problem: "line \(k + 1) has no string 'text' field")
            }
            out.append(text)
        }
        return out
    }

    private static func parse(_ line: Data.SubSequence) throws -> JSONValue {
        try Data(line).withUnsafeBytes { raw throws(JSONParseError) in try JSONParser.parse(raw) }
    }
}

extension Tokenizer {
    /// Each document's ids, with the post-processor's special tokens.
    public func encode(_ corpus: TextCorpus) throws(TokenizerError) -> [[Int32]] {
        var encoder = Encoder()
        var out: [[Int32]] = []
        out.reserveCapacity(corpus.documents.count)
        for document in corpus.documents { out.append(try encode(document, addSpecialTokens: true, with: &encoder)) }
        return out
    }
}
