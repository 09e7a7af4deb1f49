/// A stretch of text on its way to the model: either an added token, already an id, or
/// scalars still to be split and encoded.
struct Piece {
    var scalars: [UInt32]
    /// The id of an added token; such a piece is never split again.
    var token: Int32?
    /// Whether the piece begins where the input text begins (Metaspace's `first` scheme).
    var atOrigin: Bool
}

/// What a split does with the stretches its pattern matches (`SplitDelimiterBehavior`).
enum SplitBehavior: String, Sendable {
    case removed = "Removed"
    case isolated = "Isolated"
    case mergedWithPrevious = "MergedWithPrevious"
    case mergedWithNext = "MergedWithNext"
    case contiguous = "Contiguous"
}

/// A `pre_tokenizer` of tokenizer.json: cuts the normalized text into the words the model
/// encodes one by one.
indirect enum PreTokenizer: Sendable {
    case sequence([PreTokenizer])
    case split(Pattern, SplitBehavior, invert: Bool)
    /// GPT-2's byte-level step: an optional prefix space, the GPT-2 split pattern, then
    /// every UTF-8 byte written as the printable scalar that stands for it.
    case byteLevel(addPrefixSpace: Bool, useRegex: Bool)
    case metaspace(replacement: UInt32, prepend: PrependScheme, split: Bool)
    case bert
    case whitespaceSplit
    case digits(individually: Bool)
    case punctuation(SplitBehavior)

    enum PrependScheme: String, Sendable { case always, first, never }

    /// GPT-2's pattern, which ByteLevel uses when `use_regex` is on.
    static let gpt2Pattern = #"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"#
    static let gpt2 = try! Pattern(gpt2Pattern)

    func apply(_ pieces: [Piece], scratch: inout SplitScratch) -> [Piece] {
        switch self {
        case .sequence(let steps):
            return steps.reduce(pieces) { $1.apply($0, scratch: &scratch) }
        default:
            var out: [Piece] = []
            out.reserveCapacity(pieces.count)
            for piece in pieces {
                if piece.token != nil {
                    out.append(piece)
                } else if !piece.scalars.isEmpty {
                    splitOne(piece, into: &out, scratch: &scratch)
                }
            }
            return out
        }
    }

    private func splitOne(_ piece: Piece, into out: inout [Piece], scratch: inout SplitScratch) {
        switch self {
        case .sequence: fatalError("handled by apply")
        case let .split(pattern, behavior, invert):
            let marks = scratch.patternMatches(pattern, in: piece.scalars)
            Self.cut(piece, marks.map { ($0.0, $0.1 != invert) }, behavior, into: &out)
        case let .byteLevel(addPrefixSpace, useRegex):
            var text = piece.scalars
            if addPrefixSpace, text.first != 0x20 { text.insert(0x20, at: 0) }
            var parts: [Piece] = []
            let prefixed = Piece(scalars: text, token: nil, atOrigin: piece.atOrigin)
            if useRegex {
                let marks = scratch.patternMatches(Self.gpt2, in: text)
                Self.cut(prefixed, marks, .isolated, into: &parts)
            } else {
                parts = [prefixed]
            }
            for var part in parts {
                part.scalars = ByteLevelAlphabet.encode(part.scalars)
                out.append(part)
            }
        case let .metaspace(replacement, prepend, split):
            var text = piece.scalars.map { $0 == 0x20 ? replacement : $0 }
            switch prepend {
            case .always: if text.first != replacement { text.insert(replacement, at: 0) }
            case .first: if text.first != replacement, piece.atOrigin { text.insert(replacement, at: 0) }
            case .never: break
            }
            let replaced = Piece(scalars: text, token: nil, atOrigin: piece.atOrigin)
            if split {
                Self.cut(replaced, Self.scalarMatches(text) { $0 == replacement }, .mergedWithNext, into: &out)
            } else {
                out.append(replaced)
            }
        case .bert:
            var words: [Piece] = []
            Self.cut(piece, Self.classMatches(piece.scalars, ScalarClass.whitespace), .removed, into: &words)
            for word in words {
                Self.cut(word, Self.scalarMatches(word.scalars, Self.isBertPunctuation), .isolated, into: &out)
            }
        case .whitespaceSplit:
            Self.cut(piece, Self.classMatches(piece.scalars, ScalarClass.whitespace), .removed, into: &out)
        case .digits(let individually):
            Self.cut(piece, Self.classMatches(piece.scalars, ScalarClass.number), individually ? .isolated : .contiguous, into: &out)
        case .punctuation(let behavior):
            Self.cut(piece, Self.scalarMatches(piece.scalars, Self.isBertPunctuation), behavior, into: &out)
        }
    }

    /// ASCII punctuation (which includes symbols such as `$` and `^`) or a Unicode P* scalar
    /// of `Edition.categories`.
    static func isBertPunctuation(_ v: UInt32) -> Bool {
        if v < 128 {
            return (33...47).contains(v) || (58...64).contains(v) || (91...96).contains(v) || (123...126).contains(v)
        }
        return ScalarClass.of(v, edition: .categories) & ScalarClass.punctuation != 0
    }

    /// Each scalar that satisfies `test` as its own match, with the stretches between.
    static func scalarMatches(_ text: [UInt32], _ test: (UInt32) -> Bool) -> [(Range<Int>, Bool)] {
        var marks: [(Range<Int>, Bool)] = []
        var last = 0
        for (k, v) in text.enumerated() where test(v) {
            if last < k { marks.append((last..<k, false)) }
            marks.append((k..<(k + 1), true))
            last = k + 1
        }
        if last < text.count { marks.append((last..<text.count, false)) }
        return marks
    }

    static func classMatches(_ text: [UInt32], _ mask: UInt32) -> [(Range<Int>, Bool)] {
        scalarMatches(text) { ScalarClass.of($0) & mask != 0 }
    }

    /// Cuts a piece at the marked stretches, as `NormalizedString::split` does for each
    /// behavior; empty parts are dropped.
    static func cut(_ piece: Piece, _ marks: [(Range<Int>, Bool)], _ behavior: SplitBehavior, into out: inout [Piece]) {
        var spans: [(Range<Int>, remove: Bool)] = []
        spans.reserveCapacity(marks.count)
        switch behavior {
        case .isolated:
            for (r, _) in marks { spans.append((r, false)) }
        case .removed:
            for (r, isMatch) in marks { spans.append((r, isMatch)) }
        case .contiguous:
            var previous = false
            for (r, isMatch) in marks {
                if isMatch == previous, let last = spans.last {
                    spans[spans.count - 1].0 = last.0.lowerBound..<r.upperBound
                } else {
                    spans.append((r, false))
                }
                previous = isMatch
            }
        case .mergedWithPrevious:
            var previous = false
            for (r, isMatch) in marks {
                if isMatch && !previous, let last = spans.last {
                    spans[spans.count - 1].0 = last.0.lowerBound..<r.upperBound
                } else {
                    spans.append((r, false))
                }
                previous = isMatch
            }
        case .mergedWithNext:
            var previous = false
            for (r, isMatch) in marks.reversed() {
                if isMatch && !previous, let last = spans.last {
                    spans[spans.count - 1].0 = r.lowerBound..<last.0.upperBound
                } else {
                    spans.append((r, false))
                }
                previous = isMatch
            }
            spans.reverse()
        }
        for (range, remove) in spans where !remove && !range.isEmpty {
            let scalars = range.count == piece.scalars.count ? piece.scalars : Array(piece.scalars[range])
            out.append(Piece(scalars: scalars, token: nil, atOrigin: piece.atOrigin && range.lowerBound == 0))
        }
    }
}

/// Buffers a split reuses from one piece to the next.
struct SplitScratch {
    var masks: [UInt32] = []
    var stack: [Int] = []

    /// The pattern's matches and the stretches between them, in order.
    mutating func patternMatches(_ pattern: Pattern, in text: [UInt32]) -> [(Range<Int>, Bool)] {
        var marks: [(Range<Int>, Bool)] = []
        var last = 0
        text.withUnsafeBufferPointer { scalars in
            ScalarClass.masks(of: scalars, into: &masks)
            masks.withUnsafeBufferPointer { m in
                pattern.matches(in: .init(scalars: scalars, masks: m), stack: &stack) { range in
                    if last < range.lowerBound { marks.append((last..<range.lowerBound, false)) }
                    marks.append((range, true))
                    last = range.upperBound
                }
            }
        }
        if last < text.count { marks.append((last..<text.count, false)) }
        return marks
    }
}

/// GPT-2's printable stand-ins for the 256 byte values.
enum ByteLevelAlphabet {
    /// Byte value → scalar.
    static let scalars: [UInt32] = {
        var table = [UInt32](repeating: 0, count: 256)
        var next: UInt32 = 256
        for b in 0..<256 {
            let printable = (33...126).contains(b) || (161...172).contains(b) || (174...255).contains(b)
            if printable { table[b] = UInt32(b) } else { table[b] = next; next += 1 }
        }
        return table
    }()

    /// Each UTF-8 byte of the scalars, as its stand-in.
    static func encode(_ text: [UInt32]) -> [UInt32] {
        var out: [UInt32] = []
        out.reserveCapacity(text.count + 4)
        for v in text {
            if v < 0x80 {
                out.append(scalars[Int(v)])
            } else if let s = Unicode.Scalar(v) {
                for byte in UTF8.encode(s)! { out.append(scalars[Int(byte)]) }
            }
        }
        return out
    }
}
