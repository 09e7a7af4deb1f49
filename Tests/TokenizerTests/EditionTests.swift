import Testing
@testable import Tokenizer

/// The Unicode editions that stand in for `tokenizers`' older tables. The interop suite
/// sweeps every code point; these pin one witness for each kind of difference.
@Suite struct EditionTests {
    @Test func scalarsAssignedAfterAnEditionAreUnassignedToIt() {
        // U+1F16C RAISED MR SIGN came in Unicode 12.0: a symbol today, unknown at 8.0 and 11.0.
        #expect(ScalarClass.of(0x1F16C) & ScalarClass.symbol != 0)
        #expect(ScalarClass.of(0x1F16C, edition: .categories) == ScalarClass.unassigned)
        // U+0041 and U+00E9 look the same in every edition.
        #expect(ScalarClass.of(0xE9, edition: .categories) == ScalarClass.of(0xE9))
    }

    @Test func categoriesChangedSinceAnEditionAreTheOldOnes() {
        // U+166D became a symbol in 12.0; BERT's tables still call it punctuation.
        #expect(ScalarClass.of(0x166D) & ScalarClass.symbol != 0)
        #expect(PreTokenizer.isBertPunctuation(0x166D))
        // U+1885 became a mark in 9.0: a letter at 8.0, a mark at 9.0.
        #expect(ScalarClass.of(0x1885, edition: .categories) & ScalarClass.letter != 0)
        #expect(ScalarClass.of(0x1885, edition: .combiningMarks) & ScalarClass.mark != 0)
    }

    @Test func normalizationLeavesLaterScalarsAlone() {
        // NFKC maps U+1F16C to "MR" by today's tables; `tokenizers`' tables predate it.
        #expect(Normalizer.nfkc.apply([0x61, 0x1F16C, 0x2460]) == [0x61, 0x1F16C, 0x31])
        // A later scalar blocks composition across it, as an unknown starter does.
        #expect(Normalizer.nfc.apply([0x65, 0x1F16C, 0x301]) == [0x65, 0x1F16C, 0x301])
        #expect(Normalizer.nfc.apply([0x65, 0x301]) == [0xE9])
    }

    @Test func tibetanVowelSignsAreTakenApartByNFC() {
        // U+0F73 is excluded from composition: NFC is U+0F71 U+0F72.
        #expect(Normalizer.nfc.apply([0x0F40, 0x0F73]) == [0x0F40, 0x0F71, 0x0F72])
        #expect(Normalizer.nfkc.apply([0x0F81]) == [0x0F71, 0x0F80])
        // Its marks then take their place among the others: U+0F71 (class 129) goes before
        // U+0F72 (130) and U+0F80 (130) keeps its place after U+0F72.
        #expect(Normalizer.nfd.apply([0x0F72, 0x0F81]) == [0x0F71, 0x0F72, 0x0F80])
    }

    /// Foundation faults pare works around, each checked against Python's unicodedata.
    @Test func foundationFaultsAreWorkedAround() {
        // 64 marks with an expanding U+0344 at the end: Foundation drops scalars.
        let marks: [UInt32] = (0..<63).map { [0x0300, 0x0323, 0x0345][$0 % 3] } + [0x0344]
        let nfd = Normalizer.nfd.apply([0x61] + marks)
        #expect(nfd.count == 66)
        #expect(nfd.filter { $0 == 0x0308 }.count == 1 && nfd.last == 0x0345)
        // A precomposed LV syllable joins a trailing jamo: U+AC00 U+11A8 is U+AC01.
        #expect(Normalizer.nfc.apply([0xAC00, 0x11A8]) == [0xAC01])
        // U+FF9F becomes U+309A (class 8), which goes before U+0301 (230) under NFKD.
        #expect(Normalizer.nfkd.apply([0x61, 0x0301, 0xFF9F]) == [0x61, 0x309A, 0x0301])
        #expect(Normalizer.nfkd.apply([0x1FC1, 0x0323]) == [0x20, 0x0323, 0x0308, 0x0342])
    }

    @Test func canonicalOrderLeavesMarksNewerThanTheTablesInPlace() {
        // U+1DFA (class 218, Unicode 14.0) is a starter to `tokenizers`' tables: the acute
        // accent (230) before it stays before it.
        #expect(Normalizer.nfkd.apply([0x61, 0x0301, 0x1DFA]) == [0x61, 0x0301, 0x1DFA])
        #expect(Normalizer.nfkd.apply([0x61, 0x0301, 0x0323]) == [0x61, 0x0323, 0x0301])
    }

    @Test func bertCleanUpKeepsUnassignedScalars() {
        let clean = Normalizer.bert(cleanText: true, chineseCharacters: false, stripAccents: false, lowercase: false)
        // U+0378 is unassigned (kept); U+200B is a format character (dropped); tab becomes a space.
        #expect(clean.apply([0x61, 0x0378, 0x200B, 0x09, 0x62]) == [0x61, 0x0378, 0x20, 0x62])
    }
}
