/// The Unicode classes the tokenizer components test, packed as one bit mask per scalar:
/// bit `c` for general category `c` (in `Unicode.GeneralCategory` order) and
/// `ScalarClass.whitespace` for the White_Space property. Patterns and pre-tokenizers test
/// masks, so each scalar of a text is looked up once.
enum ScalarClass {
    static let whitespace: UInt32 = 1 << 30

    static let letter: UInt32 = bits(.uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter)
    static let mark: UInt32 = bits(.nonspacingMark, .spacingMark, .enclosingMark)
    static let number: UInt32 = bits(.decimalNumber, .letterNumber, .otherNumber)
    static let punctuation: UInt32 = bits(.connectorPunctuation, .dashPunctuation, .openPunctuation, .closePunctuation,
                                          .initialPunctuation, .finalPunctuation, .otherPunctuation)
    static let symbol: UInt32 = bits(.mathSymbol, .currencySymbol, .modifierSymbol, .otherSymbol)
    static let separator: UInt32 = bits(.spaceSeparator, .lineSeparator, .paragraphSeparator)
    static let other: UInt32 = bits(.control, .format, .surrogate, .privateUse, .unassigned)
    static let unassigned: UInt32 = bits(.unassigned)
    /// Oniguruma's `\w` over Unicode: letters, marks, decimal digits and connector punctuation.
    static let word: UInt32 = letter | mark | bits(.decimalNumber, .connectorPunctuation)
    static let decimal: UInt32 = bits(.decimalNumber)
    static let nonspacingMark: UInt32 = bits(.nonspacingMark)

    static func bits(_ categories: Unicode.GeneralCategory...) -> UInt32 {
        categories.reduce(0) { $0 | (1 << index($1)) }
    }

    static func index(_ category: Unicode.GeneralCategory) -> UInt32 {
        switch category {
        case .uppercaseLetter: 0
        case .lowercaseLetter: 1
        case .titlecaseLetter: 2
        case .modifierLetter: 3
        case .otherLetter: 4
        case .nonspacingMark: 5
        case .spacingMark: 6
        case .enclosingMark: 7
        case .decimalNumber: 8
        case .letterNumber: 9
        case .otherNumber: 10
        case .connectorPunctuation: 11
        case .dashPunctuation: 12
        case .openPunctuation: 13
        case .closePunctuation: 14
        case .initialPunctuation: 15
        case .finalPunctuation: 16
        case .otherPunctuation: 17
        case .mathSymbol: 18
        case .currencySymbol: 19
        case .modifierSymbol: 20
        case .otherSymbol: 21
        case .spaceSeparator: 22
        case .lineSeparator: 23
        case .paragraphSeparator: 24
        case .control: 25
        case .format: 26
        case .surrogate: 27
        case .privateUse: 28
        case .unassigned: 29
        @unknown default: 29
        }
    }

    /// The mask of one scalar value as the split regexes and Rust's `char` methods see it
    /// (`Edition.regex`). Surrogate code points, which never reach here from a Swift
    /// string, count as surrogates.
    @inline(__always)
    static func of(_ value: UInt32) -> UInt32 {
        of(value, edition: .regex)
    }

    /// The mask by Swift's own tables.
    static func compute(_ value: UInt32) -> UInt32 {
        guard let scalar = Unicode.Scalar(value) else { return 1 << 27 }
        let p = scalar.properties
        return (1 << index(p.generalCategory)) | (p.isWhitespace ? whitespace : 0)
    }

    static let ascii: [UInt32] = (0..<128).map { compute(UInt32($0)) }

    /// The masks of a run of scalars, for matching.
    static func masks(of scalars: UnsafeBufferPointer<UInt32>, into out: inout [UInt32]) {
        out.removeAll(keepingCapacity: true)
        out.reserveCapacity(scalars.count)
        for v in scalars { out.append(of(v)) }
    }

    /// Unicode simple case folding as far as single scalars go (what `(?i)` compares):
    /// the lowercase of the uppercase, so that `ſ` and `S` both fold to `s`.
    static func fold(_ value: UInt32) -> UInt32 {
        if value < 128 {
            return (value >= 65 && value <= 90) ? value + 32 : value
        }
        guard let scalar = Unicode.Scalar(value) else { return value }
        let upper = scalar.properties.uppercaseMapping.unicodeScalars
        guard upper.count == 1, let u = upper.first else { return value }
        let lower = u.properties.lowercaseMapping.unicodeScalars
        guard lower.count == 1, let l = lower.first else { return value }
        return l.value
    }
}
