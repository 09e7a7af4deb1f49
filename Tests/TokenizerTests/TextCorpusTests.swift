import Foundation
import Testing
@testable import Tokenizer

@Suite struct TextCorpusTests {
    func file(_ bytes: [UInt8], _ name: String = "text.txt") throws -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("pare-corpus-\(UUID())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent(name).path
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    @Test func plainTextIsOneDocumentWithInvalidBytesReplaced() throws {
        // A lone continuation byte, then a truncated three-byte sequence: one U+FFFD each.
        let corpus = try TextCorpus(path: try file(Array("a".utf8) + [0x80] + Array("b".utf8) + [0xE2, 0x82] + Array("c".utf8)))
        #expect(!corpus.isJSONLines)
        #expect(corpus.documents == ["a\u{FFFD}b\u{FFFD}c"])
    }

    @Test func jsonLinesGiveOneDocumentPerLine() throws {
        let corpus = try TextCorpus(path: try file(Array("{\"text\": \"one\"}\n\n{\"text\": \"two\\n\", \"id\": 2}\n".utf8)))
        #expect(corpus.isJSONLines)
        #expect(corpus.documents == ["one", "two\n"])
    }

    @Test func aJSONLineWithoutTextIsNamed() throws {
        let path = try file(Array("{\"text\": \"one\"}\n{\"body\": 1}\n".utf8))
        #expect { _ = try TextCorpus(path: path) } throws: { "\($0)".contains("line 2 has no string 'text'") }
    }
}
