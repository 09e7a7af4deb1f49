import OrderedJSON
import Testing
@testable import Tokenizer

/// Tokenizers built from small tokenizer.json documents written here, so that each rule
/// (merge order, byte fallback, unknown fusing, WordPiece's greedy cut, added tokens,
/// templates) is checked against ids worked out by hand.
@Suite struct TokenizerTests {
    func tokenizer(_ json: String) throws -> Tokenizer {
        try Tokenizer(json: try JSONParser.parse(json), path: "tokenizer.json")
    }

    func bpe(vocab: [String], merges: [String], extra: String = "", model: String = "") -> String {
        let v = vocab.enumerated().map { "\"\($0.element)\": \($0.offset)" }.joined(separator: ", ")
        let m = merges.map { "\"\($0)\"" }.joined(separator: ", ")
        return #"{"model": {"type": "BPE", "vocab": {\#(v)}, "merges": [\#(m)]\#(model)}\#(extra)}"#
    }

    @Test func mergesApplyLowestRankFirst() throws {
        let vocab = ["a", "b", "c", "ab", "bc", "abc"]
        let bcFirst = try tokenizer(bpe(vocab: vocab, merges: ["b c", "a b", "ab c"]))
        #expect(try bcFirst.encode("abc") == [0, 4])
        let abFirst = try tokenizer(bpe(vocab: vocab, merges: ["a b", "b c", "ab c"]))
        #expect(try abFirst.encode("abc") == [5])
    }

    @Test func equalRanksMergeLeftmostFirst() throws {
        let t = try tokenizer(bpe(vocab: ["a", "aa"], merges: ["a a"]))
        #expect(try t.encode("aaa") == [1, 0])
        #expect(try t.encode("aaaa") == [1, 1])
    }

    @Test func longWordsMergeAsTheWholeWouldThroughTheirPieces() throws {
        // Over 256 scalars a word is encoded in pieces cut where no token holds the two
        // scalars side by side ("b" then "a" here); unknown scalars are never cut around,
        // so a run of them still fuses into one unknown token.
        let t = try tokenizer(bpe(vocab: ["<unk>", "a", "b", "ab", "c", "cab"], merges: ["a b", "c ab"],
                                  model: #", "unk_token": "<unk>", "fuse_unk": true"#))
        // "b" then "c" never meet inside a token: cut there. "c" then "a" do (in "cab").
        let word = String(repeating: "abc", count: 100) + "xyz" + String(repeating: "ab", count: 100)
        let expected: [Int32] = [3] + Array(repeating: 5, count: 99) + [4, 0] + Array(repeating: 3, count: 100)
        #expect(try t.encode(word) == expected)
    }

    @Test func ignoreMergesTakesAWholeWordFromTheVocabulary() throws {
        // "abc" exists, but no merge path reaches it.
        let vocab = ["a", "b", "c", "abc"]
        #expect(try tokenizer(bpe(vocab: vocab, merges: [])).encode("abc") == [0, 1, 2])
        #expect(try tokenizer(bpe(vocab: vocab, merges: [], model: #", "ignore_merges": true"#)).encode("abc") == [3])
    }

    @Test func byteFallbackSpellsUnknownScalarsAsUTF8Bytes() throws {
        let vocab = ["<unk>", "a", "<0xC3>", "<0xA9>"]
        let t = try tokenizer(bpe(vocab: vocab, merges: [], model: #", "unk_token": "<unk>", "byte_fallback": true"#))
        #expect(try t.encode("aé") == [1, 2, 3])
        // No byte token for U+4E00's bytes: the unknown token.
        #expect(try t.encode("a一") == [1, 0])
    }

    @Test func unknownScalarsFuseOnlyWhenAsked() throws {
        let vocab = ["<unk>", "a"]
        let separate = try tokenizer(bpe(vocab: vocab, merges: [], model: #", "unk_token": "<unk>""#))
        #expect(try separate.encode("xya") == [0, 0, 1])
        let fused = try tokenizer(bpe(vocab: vocab, merges: [], model: #", "unk_token": "<unk>", "fuse_unk": true"#))
        #expect(try fused.encode("xya") == [0, 1])
        // Without an unknown token the scalar is dropped, as `tokenizers` drops it.
        #expect(try tokenizer(bpe(vocab: vocab, merges: [])).encode("xa") == [1])
    }

    @Test func byteLevelMapsBytesToTheirStandIns() throws {
        // U+0120 "Ġ" stands for the space byte.
        let t = try tokenizer(bpe(vocab: ["a", "Ġ", "Ġa"], merges: ["Ġ a"],
                                  extra: #", "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}"#))
        #expect(try t.encode("a a") == [0, 2])
        #expect(ByteLevelAlphabet.scalars[0x20] == 0x120 && ByteLevelAlphabet.scalars[Int(UInt8(ascii: "!"))] == 0x21)
    }

    @Test func addedTokensSplitTheTextFirst() throws {
        let json = bpe(vocab: ["a", "b", "ab"], merges: ["a b"], extra: #"""
            , "added_tokens": [
              {"id": 7, "content": "<s>", "special": true, "normalized": false, "lstrip": false, "rstrip": false, "single_word": false},
              {"id": 8, "content": "<sep>", "special": true, "normalized": false, "lstrip": true, "rstrip": true, "single_word": false}]
            """#)
        let t = try tokenizer(json)
        // Added tokens missing from the vocabulary take the ids after it, in file order,
        // whatever ids the file writes: `tokenizers` adds them again on load.
        #expect(try t.encode("a<s>b") == [0, 3, 1])
        // The longer token wins where both start; lstrip/rstrip take the spaces around.
        #expect(try t.encode("ab <sep> ab") == [2, 4, 2])
        #expect(t.vocabularySize == 5)
    }

    @Test func metaspaceFirstPrependsOnlyAtTheStartOfTheText() throws {
        let json = bpe(vocab: ["▁", "a", "▁a"], merges: ["▁ a"], extra: #"""
            , "pre_tokenizer": {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
              "added_tokens": [{"id": 5, "content": "<s>", "special": true, "normalized": false}]
            """#)
        let t = try tokenizer(json)
        #expect(try t.encode("a a") == [2, 2])
        #expect(try t.encode("<s>a") == [3, 1])
    }

    @Test func templateProcessingWrapsTheText() throws {
        let json = #"""
            {"model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##", "max_input_chars_per_word": 10,
                       "vocab": {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "un": 3, "##aff": 4, "##able": 5, "a": 6, "##ff": 7}},
             "normalizer": {"type": "BertNormalizer", "clean_text": true, "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
             "pre_tokenizer": {"type": "BertPreTokenizer"},
             "post_processor": {"type": "TemplateProcessing",
                "single": [{"SpecialToken": {"id": "[CLS]", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "[SEP]", "type_id": 0}}],
                "special_tokens": {"[CLS]": {"id": "[CLS]", "ids": [1], "tokens": ["[CLS]"]}, "[SEP]": {"id": "[SEP]", "ids": [2], "tokens": ["[SEP]"]}}}}
            """#
        let t = try tokenizer(json)
        // Lowercased and accent-stripped; greedy longest pieces; a word that cannot be cut is [UNK].
        #expect(try t.encode("UNÀFFABLE  xyz") == [1, 3, 4, 5, 0, 2])
        #expect(try t.encode("unaffable", addSpecialTokens: false) == [3, 4, 5])
        // Longer than max_input_chars_per_word: one [UNK].
        #expect(try t.encode("unaffableunaffable", addSpecialTokens: false) == [0])
    }

    @Test(arguments: [
        (#"{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}"#, "'Unigram'"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": {"type": "Precompiled", "precompiled_charsmap": ""}}"#, "'Precompiled'"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "normalizer": {"type": "Nmt"}}"#, "'Nmt'"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "UnicodeScripts"}}"#, "'UnicodeScripts'"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "pre_tokenizer": {"type": "Split", "pattern": {"Regex": "(?<=a)b"}, "behavior": "Isolated", "invert": false}}"#, "lookbehind"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}, "post_processor": {"type": "Mystery"}}"#, "'Mystery'"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": 0.1}}"#, "dropout"),
        (#"{"model": {"type": "BPE", "vocab": {"a": 0}, "merges": ["a b"]}}"#, "\"b\" is not in the vocabulary"),
    ])
    func refusesWhatItDoesNotImplement(json: String, named: String) {
        #expect {
            _ = try tokenizer(json)
        } throws: { error in
            "\(error)".contains(named)
        }
    }
}
