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
        case .nfc: return Self.unicode(Self.tibetanDecomposed(text)) { $0.precomposedStringWithCanonicalMapping }
        case .nfd: return Self.unicode(text) { $0.decomposedStringWithCanonicalMapping }
        case .nfkc: return Self.unicode(Self.tibetanDecomposed(text)) { $0.precomposedStringWithCompatibilityMapping }
        case .nfkd: return Self.unicode(text) { $0.decomposedStringWithCompatibilityMapping }
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
                out = Self.unicode(out) { $0.decomposedStringWithCanonicalMapping }
                out.removeAll { ScalarClass.of($0, edition: .categories) & ScalarClass.nonspacingMark != 0 }
            }
            if lowercase { out = Self.lowercased(out) }
            return out
        }
    }

    /// Applies a Foundation normal form as `tokenizers`' older tables do: a scalar those
    /// tables do not know has no decomposition, combining class 0 and composes with
    /// nothing, so it splits the text into stretches normalized apart and stays as it is.
    private static func unicode(_ text: [UInt32], _ transform: (String) -> String) -> [UInt32] {
        // Pure ASCII is already in every normal form.
        if text.allSatisfy({ $0 < 128 }) { return text }
        var out: [UInt32] = []
        out.reserveCapacity(text.count)
        var start = 0
        func normalize(_ stretch: ArraySlice<UInt32>) {
            guard !stretch.isEmpty else { return }
            out.append(contentsOf: transform(String(scalars: stretch)).unicodeScalars.lazy.map(\.value))
        }
        for (k, v) in text.enumerated() where v >= 0x300 {
            guard let scalar = Unicode.Scalar(v), scalar.properties.age != nil,
                  !ScalarClass.Edition.normalization.knows(scalar) else { continue }
            normalize(text[start..<k])
            out.append(v)
            start = k + 1
        }
        normalize(text[start...])
        return out
    }

    /// Tibetan vowel signs II, UU and reversed II decomposed: they are excluded from
    /// composition, so NFC and NFKC must take them apart, and Foundation's NFC keeps them.
    private static func tibetanDecomposed(_ text: [UInt32]) -> [UInt32] {
        guard text.contains(where: { $0 == 0x0F73 || $0 == 0x0F75 || $0 == 0x0F81 }) else { return text }
        var out: [UInt32] = []
        out.reserveCapacity(text.count + 4)
        for v in text {
            switch v {
            case 0x0F73: out += [0x0F71, 0x0F72]
            case 0x0F75: out += [0x0F71, 0x0F74]
            case 0x0F81: out += [0x0F71, 0x0F80]
            default: out.append(v)
            }
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
                out.append(contentsOf: s.properties.lowercaseMapping.unicodeScalars.lazy.map(\.value))
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
