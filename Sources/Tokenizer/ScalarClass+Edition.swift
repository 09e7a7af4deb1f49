extension ScalarClass {
    /// The Unicode version of the tables that one component of `tokenizers` consults.
    ///
    /// `tokenizers` takes its Unicode data from several crates, each frozen at its own
    /// version, while Swift's are newer. To that component, a scalar assigned later than its
    /// edition is unassigned: it is no letter to the regex engine, no punctuation to BERT's
    /// pre-tokenizer, no mark to StripAccents, and normalization leaves it as it is. The
    /// editions were found by sweeping every code point against `tokenizers` 0.23
    /// (`tools/interop/test_tokenize.py`). A scalar's age, with the few general categories
    /// Unicode changed after assignment (`categoryBefore`), reproduces the old tables.
    struct Edition: Sendable {
        let major: Int
        let minor: Int

        /// Oniguruma's tables behind the split regexes, and Rust's `char` methods
        /// (`is_whitespace`, `is_numeric`, `is_alphanumeric`).
        static let regex = Edition(major: 16, minor: 0)
        /// `unicode_categories`: BERT's punctuation, its control characters and the
        /// non-spacing marks its accent stripping removes.
        static let categories = Edition(major: 8, minor: 0)
        /// `unicode-normalization-alignments`' `is_combining_mark`, which StripAccents uses.
        static let combiningMarks = Edition(major: 9, minor: 0)
        /// `unicode-normalization-alignments`' decomposition, composition and combining
        /// class tables, behind NFC, NFD, NFKC and NFKD.
        static let normalization = Edition(major: 11, minor: 0)

        /// Whether the scalar was assigned by this edition.
        @inline(__always)
        func knows(_ scalar: Unicode.Scalar) -> Bool {
            guard let age = scalar.properties.age else { return false }
            return age.major < major || (age.major == major && age.minor <= minor)
        }

        func precedes(_ other: Edition) -> Bool {
            major < other.major || (major == other.major && minor < other.minor)
        }
    }

    /// The general category a scalar had before Unicode changed it, and the version that
    /// changed it. The sweeps pin only which side of each edition a change falls on; the
    /// versions come from comparing Swift's tables with Python's (Unicode 14.0 and 3.2).
    static func categoryBefore(_ value: UInt32) -> (category: Unicode.GeneralCategory, changedIn: Edition)? {
        switch value {
        case 0x166D: (.otherPunctuation, Edition(major: 12, minor: 0))  // Canadian syllabics chi sign, now So
        case 0x1734: (.nonspacingMark, Edition(major: 14, minor: 0))  // Hanunoo sign pamudpod, now Mc
        case 0x1885, 0x1886: (.otherLetter, Edition(major: 9, minor: 0))  // Mongolian baluda, now Mn
        case 0x1CF2, 0x1CF3: (.spacingMark, Edition(major: 10, minor: 0))  // Vedic ardhavisarga, now Lo
        case 0xA9BD: (.spacingMark, Edition(major: 12, minor: 0))  // Javanese keret, now Mn
        case 0x111C9: (.otherPunctuation, Edition(major: 11, minor: 0))  // Sharada sandhi mark, now Mn
        case 0x1171E: (.nonspacingMark, Edition(major: 15, minor: 0))  // Ahom medial ra, Mc after 14.0
        default: nil
        }
    }

    /// The mask of a scalar as the tables of `edition` classify it. ASCII is the same in
    /// every edition.
    @inline(__always)
    static func of(_ value: UInt32, edition: Edition) -> UInt32 {
        if value < 128 { return of(value) }
        guard let scalar = Unicode.Scalar(value) else { return 1 << 27 }
        guard edition.knows(scalar) else { return unassigned | (scalar.properties.isWhitespace ? whitespace : 0) }
        if let change = categoryBefore(value), edition.precedes(change.changedIn) {
            return 1 << index(change.category) | (scalar.properties.isWhitespace ? whitespace : 0)
        }
        return compute(value)
    }
}
