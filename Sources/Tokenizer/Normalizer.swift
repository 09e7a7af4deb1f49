import Foundation

/// A `normalizer` of tokenizer.json: rewrites the text before it is split, as `tokenizers`
/// does. Scalars in, scalars out.
indirect enum Normalizer: Sendable {
    case sequence([Normalizer])
    /// Prepends the string to a non-empty text.
    case prepend([UInt32])
    case replace(Pattern, with: [UInt32])
    case lowercase
    case nfc, nfd, nfkc, nfkd
    case strip(left: Bool, right: Bool)
    /// Removes combining marks (general category M).
    case stripAccents
    case bert(cleanText: Bool, chineseCharacters: Bool, stripAccents: Bool, lowercase: Bool)

    func apply(_ text: [UInt32]) -> [UInt32] {
        switch self {
        case .sequence(let steps):
            return steps.reduce(text) { $1.apply($0) }
        case .prepend(let prefix):
            return text.isEmpty ? text : prefix + text
        case let .replace(pattern, replacement):
            return Self.replace(text, pattern, replacement)
        case .lowercase:
            return Self.lowercased(text)
        case .nfc: return Self.unicode(text, .composed)
        case .nfd: return Self.unicode(text, .decomposed)
        case .nfkc:
            // Decomposed and put in canonical order first: Foundation's NFKC composes
            // before it orders the marks a compatibility decomposition brings.
            return Self.unicode(Self.unicode(text, .compatibilityDecomposed), .composed)
        case .nfkd: return Self.unicode(text, .compatibilityDecomposed)
        case let .strip(left, right):
            var lo = 0, hi = text.count
            if left { while lo < hi, ScalarClass.of(text[lo]) & ScalarClass.whitespace != 0 { lo += 1 } }
            if right { while hi > lo, ScalarClass.of(text[hi - 1]) & ScalarClass.whitespace != 0 { hi -= 1 } }
            return Array(text[lo..<hi])
        case .stripAccents:
            return text.filter { ScalarClass.of($0, edition: .combiningMarks) & ScalarClass.mark == 0 }
        case let .bert(cleanText, chinese, stripAccents, lowercase):
            var out = text
            if cleanText { out = Self.clean(out) }
            if chinese { out = Self.spaceChinese(out) }
            if stripAccents {
                out = Self.unicode(out, .decomposed)
                out.removeAll { ScalarClass.of($0, edition: .categories) & ScalarClass.nonspacingMark != 0 }
            }
            if lowercase { out = Self.lowercased(out) }
            return out
        }
    }

    /// Applies a Foundation normal form as `tokenizers`' older tables do: a scalar those
    /// tables do not know has no decomposition, combining class 0 and composes with
    /// nothing, so it splits the text into stretches normalized apart and stays as it is.
    ///
    /// The text also goes to Foundation in stretches of a few hundred scalars, because its
    /// normalization moves the rest of the buffer for each decomposition it inserts, which is
    /// quadratic in the length. A stretch ends only before a scalar no normal form
    /// can join to what precedes it (`startsNormalizationSegment`).
    ///
    /// Three more faults of Foundation's are worked around: the non-starters that decompose
    /// are decomposed before it sees them (`nonStarterDecompositionsApplied`), a composed
    /// Hangul LV syllable is joined to the trailing jamo after it (`hangulTrailsComposed`),
    /// and the marks of compatibility decompositions are put in order
    /// (`restoreCanonicalOrder`).
    private static func unicode(_ text: [UInt32], _ form: Form) -> [UInt32] {
        // Pure ASCII is already in every normal form.
        if text.allSatisfy({ $0 < 128 }) { return text }
        let text = nonStarterDecompositionsApplied(text, compatibility: form == .compatibilityDecomposed)
        var out: [UInt32] = []
        out.reserveCapacity(text.count)
        var start = 0
        func normalize(_ range: Range<Int>) {
            guard !range.isEmpty else { return }
            let stretch = text[range]
            if stretch.allSatisfy({ $0 < 128 }) {
                out.append(contentsOf: stretch)
            } else {
                out.append(contentsOf: form.apply(String(scalars: stretch)).unicodeScalars.lazy.map(\.value))
            }
        }
        for (k, v) in text.enumerated() {
            if v >= 0x300, ScalarClass.isNewerThanNormalization(v) {
                normalize(start..<k)
                out.append(v)
                start = k + 1
            } else if k - start >= 256, startsNormalizationSegment(v) {
                normalize(start..<k)
                start = k
            }
        }
        normalize(start..<text.count)
        switch form {
        case .composed: hangulTrailsComposed(&out)
        case .compatibilityDecomposed: restoreCanonicalOrder(&out)
        case .decomposed: break
        }
        return out
    }

    /// The three Foundation normal forms pare calls; NFKC is NFC of NFKD.
    private enum Form {
        case composed, decomposed, compatibilityDecomposed

        func apply(_ text: String) -> String {
            switch self {
            case .composed: text.precomposedStringWithCanonicalMapping
            case .decomposed: text.decomposedStringWithCanonicalMapping
            case .compatibilityDecomposed: text.decomposedStringWithCompatibilityMapping
            }
        }
    }

    /// Sorts each run of non-starters by combining class, keeping equal classes in order
    /// (Unicode's canonical ordering). Foundation's NFKD leaves the marks that a
    /// compatibility decomposition brings (U+FF9F becomes U+309A, U+1FC1 a space and two
    /// accents) where they fall instead of among the marks after them.
    static func restoreCanonicalOrder(_ text: inout [UInt32]) {
        func combiningClass(_ v: UInt32) -> UInt8 {
            // A mark newer than the normalization edition is a starter to those tables.
            guard v >= 0x300, !ScalarClass.isNewerThanNormalization(v), let s = Unicode.Scalar(v) else { return 0 }
            return s.properties.canonicalCombiningClass.rawValue
        }
        var k = 0
        while k < text.count {
            guard combiningClass(text[k]) != 0 else { k += 1; continue }
            var end = k + 1
            while end < text.count, combiningClass(text[end]) != 0 { end += 1 }
            if end - k > 1 {
                // Classes looked up once; the position keeps equal classes in order.
                let run = text[k..<end].enumerated().map { (class: combiningClass($0.element), offset: $0.offset, value: $0.element) }
                let sorted = run.sorted { ($0.class, $0.offset) < ($1.class, $1.offset) }
                for (j, item) in sorted.enumerated() { text[k + j] = item.value }
            }
            k = end
        }
    }

    /// Joins each Hangul LV syllable to a trailing consonant jamo right after it, the last
    /// step of Hangul composition, which Foundation's NFC and NFKC skip when the syllable
    /// came precomposed (it joins L, V and T jamo, but not LV and T).
    static func hangulTrailsComposed(_ text: inout [UInt32]) {
        var write = 0
        var read = 0
        while read < text.count {
            let v = text[read]
            if (0xAC00...0xD7A3).contains(v), (v - 0xAC00) % 28 == 0, read + 1 < text.count,
               (0x11A8...0x11C2).contains(text[read + 1]) {
                text[write] = v + (text[read + 1] - 0x11A7)
                read += 2
            } else {
                text[write] = v
                read += 1
            }
            write += 1
        }
        text.removeLast(read - write)
    }

    /// Scalars that begin a stretch no normal form joins to the text before: combining
    /// class 0, a decomposition (if any) that begins with such a scalar, and never the
    /// second scalar of a composition. ASCII, CJK unified ideographs and Hangul syllables
    /// are such scalars, and cover most text.
    @inline(__always)
    static func startsNormalizationSegment(_ v: UInt32) -> Bool {
        v < 128 || (0x4E00...0x9FFF).contains(v) || (0xAC00...0xD7A3).contains(v)
    }

    /// The scalars whose canonical decomposition begins with a non-starter, decomposed
    /// before Foundation sees them: the combining grave and acute tone marks, koronis and
    /// dialytika tonos (U+0340, 0341, 0343, 0344), and the Tibetan vowel signs II, UU and
    /// reversed II (U+0F73, 0F75, 0F81). Foundation drops scalars when they expand inside a
    /// run of about 64 marks, keeps the Tibetan ones in NFC though they are excluded from
    /// composition, and does not reorder the marks they become. Replacing a scalar by its
    /// canonical decomposition changes no normal form, and no form composes these again.
    /// For the compatibility forms the same holds of Tibetan vocalic RR and LL (U+0F77,
    /// 0F79), whose compatibility decompositions end in U+0F81.
    static func nonStarterDecompositionsApplied(_ text: [UInt32], compatibility: Bool) -> [UInt32] {
        func expansion(_ v: UInt32) -> [UInt32]? {
            switch v {
            case 0x0F77 where compatibility: [0x0FB2, 0x0F71, 0x0F80]
            case 0x0F79 where compatibility: [0x0FB3, 0x0F71, 0x0F80]
            case 0x0340: [0x0300]
            case 0x0341: [0x0301]
            case 0x0343: [0x0313]
            case 0x0344: [0x0308, 0x0301]
            case 0x0F73: [0x0F71, 0x0F72]
            case 0x0F75: [0x0F71, 0x0F74]
            case 0x0F81: [0x0F71, 0x0F80]
            default: nil
            }
        }
        guard text.contains(where: { expansion($0) != nil }) else { return text }
        var out: [UInt32] = []
        out.reserveCapacity(text.count + 8)
        for v in text {
            if let parts = expansion(v) { out += parts } else { out.append(v) }
        }
        return out
    }

    /// Full lowercase mappings, scalar by scalar (no context: a final sigma stays σ).
    static func lowercased(_ text: [UInt32]) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(text.count)
        for v in text {
            if v < 128 {
                out.append(v >= 65 && v <= 90 ? v + 32 : v)
            } else if let s = Unicode.Scalar(v) {
                // The mapping is a String: ask for it only when it changes something.
                if s.properties.changesWhenLowercased {
                    out.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars.lazy.map(\.value))
                } else {
                    out.append(v)
                }
            }
        }
        return out
    }

    /// BERT's clean-up: drops NUL, U+FFFD and control, format, private-use and surrogate
    /// scalars (by `Edition.categories`, which leaves unassigned ones in) but tab, line
    /// feed and carriage return; turns every white space into a space.
    private static func clean(_ text: [UInt32]) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(text.count)
        for v in text {
            if v == 0x09 || v == 0x0A || v == 0x0D { out.append(0x20); continue }
            if v == 0 || v == 0xFFFD { continue }
            let mask = ScalarClass.of(v, edition: .categories)
            if mask & ScalarClass.other & ~ScalarClass.unassigned != 0 { continue }
            out.append(mask & ScalarClass.whitespace != 0 ? 0x20 : v)
        }
        return out
    }

    /// The CJK Unified Ideograph blocks BERT pads with spaces.
    static func isChinese(_ v: UInt32) -> Bool {
        switch v {
        case 0x4E00...0x9FFF, 0x3400...0x4DBF, 0x20000...0x2A6DF, 0x2A700...0x2B73F,
             0x2B740...0x2B81F, 0x2B920...0x2CEAF, 0xF900...0xFAFF, 0x2F800...0x2FA1F:
            return true
        default:
            return false
        }
    }

    private static func spaceChinese(_ text: [UInt32]) -> [UInt32] {
        guard text.contains(where: isChinese) else { return text }
        var out: [UInt32] = []
        out.reserveCapacity(text.count + 16)
        for v in text {
            if isChinese(v) { out += [0x20, v, 0x20] } else { out.append(v) }
        }
        return out
    }

    private static func replace(_ text: [UInt32], _ pattern: Pattern, _ replacement: [UInt32]) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(text.count)
        var masks: [UInt32] = []
        var stack: [Int] = []
        var last = 0
        text.withUnsafeBufferPointer { scalars in
            ScalarClass.masks(of: scalars, into: &masks)
            masks.withUnsafeBufferPointer { m in
                pattern.matches(in: .init(scalars: scalars, masks: m), stack: &stack) { range in
                    guard !range.isEmpty else { return }
                    out.append(contentsOf: scalars[last..<range.lowerBound])
                    out.append(contentsOf: replacement)
                    last = range.upperBound
                }
            }
        }
        out.append(contentsOf: text[last...])
        return out
    }
}

extension String {
    /// A string of scalar values that came from a string (so all are valid).
    init(scalars: some Sequence<UInt32>) {
        var view = String.UnicodeScalarView()
        for v in scalars { if let s = Unicode.Scalar(v) { view.append(s) } }
        self.init(view)
    }
}
