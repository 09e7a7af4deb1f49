import Testing
@testable import Tokenizer

@Suite struct PatternTests {
    /// The pieces a pattern cuts text into, matched and unmatched, in order.
    func pieces(_ pattern: String, _ text: String) throws -> [String] {
        let p = try Pattern(pattern)
        var scratch = SplitScratch()
        let scalars = text.unicodeScalars.map(\.value)
        return scratch.patternMatches(p, in: scalars).map { String(scalars: Array(scalars[$0.0])) }
    }

    @Test func gpt2PatternSplitsWordsSpacesAndContractions() throws {
        #expect(try pieces(PreTokenizer.gpt2Pattern, "Hello world's  12 ok!!\n") == ["Hello", " world", "'s", " ", " 12", " ok", "!!", "\n"])
    }

    @Test func lookaheadLeavesTheLastSpaceForTheNextWord() throws {
        #expect(try pieces(PreTokenizer.gpt2Pattern, "a   b") == ["a", "  ", " b"])
    }

    @Test func caseInsensitiveGroupFoldsLongS() throws {
        let llama3 = #"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"#
        #expect(try pieces(llama3, "IT'S 12345") == ["IT", "'S", " ", "123", "45"])
        // As `tokenizers` cuts it: the long s folds to s, so "'ſ" is a contraction.
        #expect(try pieces(llama3, "it'ſtuff") == ["it", "'ſ", "tuff"])
    }

    @Test func lazyAndCountedQuantifiers() throws {
        #expect(try pieces("a{2,3}?", "aaaaa") == ["aa", "aa", "a"])
        #expect(try pieces("a{,2}b", "aaab") == ["a", "aab"])
        #expect(try pieces("x{2}", "x{2}xx") == ["x{2}", "xx"])
        // A brace that opens no interval is a literal, as in Oniguruma.
        #expect(try pieces("a{", "a{b") == ["a{", "b"])
    }

    @Test(arguments: [
        ("(?<=a)b", "lookbehind"),
        ("(?<!a)b", "lookbehind"),
        ("(a)\\1", "backreference"),
        ("a++", "possessive"),
        ("(?>a)", "atomic"),
        ("\\p{Han}", "Han"),
        ("[[a]]", "nests"),
        ("(a", "never closed"),
        ("(?:)*", "can match nothing"),
    ])
    func refusesWhatItCannotMatch(pattern: String, named: String) {
        #expect {
            _ = try Pattern(pattern)
        } throws: { error in
            (error as? PatternError)?.problem.contains(named) == true
        }
    }
}
