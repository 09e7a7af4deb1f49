extension ScalarClass {
    /// The Unicode tables that one component of `tokenizers` consults.
    ///
    /// `tokenizers` takes its Unicode data from several crates, each frozen at its own
    /// version, while Swift's are newer. To that component, a scalar assigned later than its
    /// edition is unassigned: it is no letter to the regex engine, no punctuation to BERT's
    /// pre-tokenizer, no mark to StripAccents, and normalization leaves it as it is. The
    /// editions were found by sweeping every code point against `tokenizers` 0.23
    /// (`tools/interop/test_tokenize.py`). A scalar's age, with the few general categories
    /// Unicode changed after assignment (`categoryBefore`), reproduces the old tables.
    enum Edition: Sendable {
        /// Unicode 16.0: Oniguruma's tables behind the split regexes, and Rust's `char`
        /// methods (`is_whitespace`, `is_numeric`, `is_alphanumeric`).
        case regex
        /// Unicode 8.0: `unicode_categories`, for BERT's punctuation, its control characters
        /// and the non-spacing marks its accent stripping removes.
        case categories
        /// Unicode 9.0: `unicode-normalization-alignments`' `is_combining_mark`, which
        /// StripAccents uses.
        case combiningMarks
        /// Unicode 11.0: `unicode-normalization-alignments`' decomposition, composition and
        /// combining class tables, behind NFC, NFD, NFKC and NFKD.
        case normalization

        var version: (major: Int, minor: Int) {
            switch self {
            case .regex: (16, 0)
            case .categories: (8, 0)
            case .combiningMarks: (9, 0)
            case .normalization: (11, 0)
            }
        }

        /// Whether the scalar was assigned by this edition.
        func knows(_ scalar: Unicode.Scalar) -> Bool {
            guard let age = scalar.properties.age else { return false }
            return Self.precedes(age, version) || age == version
        }

        static func precedes(_ a: (major: Int, minor: Int), _ b: (major: Int, minor: Int)) -> Bool {
            a.major < b.major || (a.major == b.major && a.minor < b.minor)
        }
    }

    /// The general category a scalar had before Unicode changed it, and the version that
    /// changed it. The sweeps pin only which side of each edition a change falls on; the
    /// versions come from comparing Swift's tables with Python's (Unicode 14.0 and 3.2).
    static func categoryBefore(_ value: UInt32) -> (category: Unicode.GeneralCategory, changedIn: (major: Int, minor: Int))? {
        switch value {
        case 0x166D: (.otherPunctuation, (12, 0))  // Canadian syllabics chi sign, now So
        case 0x1734: (.nonspacingMark, (14, 0))  // Hanunoo sign pamudpod, now Mc
        case 0x1885, 0x1886: (.otherLetter, (9, 0))  // Mongolian baluda, now Mn
        case 0x1CF2, 0x1CF3: (.spacingMark, (10, 0))  // Vedic ardhavisarga, now Lo
        case 0xA9BD: (.spacingMark, (12, 0))  // Javanese keret, now Mn
        case 0x111C9: (.otherPunctuation, (11, 0))  // Sharada sandhi mark, now Mn
        case 0x1171E: (.nonspacingMark, (15, 0))  // Ahom medial ra, Mc after 14.0
        default: nil
        }
    }

    /// The mask of a scalar as the tables of `edition` classify it. ASCII is the same in
    /// every edition; the Basic Multilingual Plane is looked up in a table built on first use.
    @inline(__always)
    static func of(_ value: UInt32, edition: Edition) -> UInt32 {
        if value < 128 { return ascii[Int(value)] }
        if value < 0x10000 {
            switch edition {
            case .regex: return regexPlane[Int(value)]
            case .categories: return categoriesPlane[Int(value)]
            case .combiningMarks: return marksPlane[Int(value)]
            case .normalization: break  // normalization asks `knows`, never for masks
            }
        }
        return compute(value, edition: edition)
    }

    private static let regexPlane = planes[0]
    private static let categoriesPlane = planes[1]
    private static let marksPlane = planes[2]
    /// 1 where the normalization tables do not know an assigned scalar, else 0.
    private static let normalizationPlane = planes[3]

    /// Whether the scalar is assigned today but unknown to the normalization tables: newer
    /// than `Edition.normalization`, or a mark newer than its combining classes, which
    /// stop at Unicode 9.0 (a 10.0 or 11.0 mark has class 0 there; none has a
    /// decomposition).
    @inline(__always)
    static func isNewerThanNormalization(_ value: UInt32) -> Bool {
        if value < 0x10000 { return normalizationPlane[Int(value)] != 0 }
        guard let scalar = Unicode.Scalar(value), let age = scalar.properties.age else { return false }
        return isUnknownToNormalization(scalar, age: age)
    }

    private static func isUnknownToNormalization(_ scalar: Unicode.Scalar, age: Unicode.Version) -> Bool {
        if Edition.precedes(Edition.normalization.version, age) { return true }
        return Edition.precedes(Edition.combiningMarks.version, age) && scalar.properties.canonicalCombiningClass.rawValue != 0
    }

    /// The planes in one pass: Swift's category and age lookups are the cost, and
    /// each scalar needs them once.
    private static let planes: [[UInt32]] = {
        let editions: [Edition] = [.regex, .categories, .combiningMarks]
        var planes = (0...editions.count).map { _ in [UInt32](repeating: 0, count: 0x10000) }
        for value in 0..<UInt32(0x10000) {
            let base = value < 128 ? ascii[Int(value)] : compute(value)
            let scalar = Unicode.Scalar(value)
            let age = scalar?.properties.age
            for (k, edition) in editions.enumerated() {
                planes[k][Int(value)] = mask(value, base: base, age: age, edition: edition)
            }
            if let scalar, let age, isUnknownToNormalization(scalar, age: age) { planes[editions.count][Int(value)] = 1 }
        }
        return planes
    }()

    private static func compute(_ value: UInt32, edition: Edition) -> UInt32 {
        mask(value, base: compute(value), age: Unicode.Scalar(value)?.properties.age, edition: edition)
    }

    /// The rule of every edition: Swift's mask (`base`) for a scalar the edition knows, with
    /// its category from before a later change; unassigned, keeping White_Space, for one
    /// assigned later (`age` after the edition's version).
    private static func mask(_ value: UInt32, base: UInt32, age: Unicode.Version?, edition: Edition) -> UInt32 {
        guard let age else { return base }
        if Edition.precedes(edition.version, age) { return unassigned | base & whitespace }
        if let change = categoryBefore(value), Edition.precedes(edition.version, change.changedIn) {
            return 1 << index(change.category) | base & whitespace
        }
        return base
    }
}
