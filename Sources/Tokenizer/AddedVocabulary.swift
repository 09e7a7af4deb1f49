/// The `added_tokens` of tokenizer.json: strings matched in the text before anything else
/// runs, and encoded as their own ids. Tokens marked `normalized` are looked for in the
/// normalized text, the others in the raw text; the longest token wins at the leftmost
/// position, as `tokenizers` matches them.
struct AddedVocabulary: Sendable {
    struct Entry: Sendable {
        let scalars: [UInt32]
        let id: Int32
        let singleWord: Bool
        let stripLeft: Bool
        let stripRight: Bool
    }

    /// Entries by first scalar, longest first.
    private var raw: [UInt32: [Entry]] = [:]
    private var normalized: [UInt32: [Entry]] = [:]

    var isEmpty: Bool { raw.isEmpty && normalized.isEmpty }
    var hasNormalized: Bool { !normalized.isEmpty }

    mutating func add(_ entry: Entry, normalized isNormalized: Bool) {
        guard let first = entry.scalars.first else { return }
        if isNormalized {
            normalized[first, default: []].append(entry)
            normalized[first]!.sort { $0.scalars.count > $1.scalars.count }
        } else {
            raw[first, default: []].append(entry)
            raw[first]!.sort { $0.scalars.count > $1.scalars.count }
        }
    }

    /// Cuts `piece` at the added tokens of one kind (raw or normalized).
    func split(_ piece: Piece, normalizedTokens: Bool, into out: inout [Piece]) {
        let table = normalizedTokens ? normalized : raw
        let text = piece.scalars
        guard !table.isEmpty, !text.isEmpty else {
            if !text.isEmpty || piece.token != nil { out.append(piece) }
            return
        }
        // Matches are found first, leftmost-longest and without overlap, and stripped
        // afterwards, as `tokenizers` does: an rstrip token's spaces may run into the next
        // match, which still counts.
        var matches: [(start: Int, entry: Entry)] = []
        var position = 0
        while position < text.count {
            guard let candidates = table[text[position]],
                  let entry = candidates.first(where: { Self.occurs($0.scalars, in: text, at: position) }) else {
                position += 1
                continue
            }
            matches.append((position, entry))
            position += entry.scalars.count
        }
        var startOffset = 0
        func emitText(_ range: Range<Int>) {
            guard !range.isEmpty else { return }
            out.append(Piece(scalars: Array(text[range]), token: nil, atOrigin: piece.atOrigin && range.lowerBound == 0))
        }
        for (matchStart, entry) in matches {
            var start = matchStart
            var stop = matchStart + entry.scalars.count
            if entry.singleWord {
                let before = start == 0 || !Self.isWordCharacter(text[start - 1])
                let after = stop == text.count || !Self.isWordCharacter(text[stop])
                if !(before && after) { continue }
            }
            if entry.stripLeft {
                var s = start
                while s > 0, ScalarClass.of(text[s - 1]) & ScalarClass.whitespace != 0 { s -= 1 }
                start = min(max(s, startOffset), stop)
            }
            if entry.stripRight {
                while stop < text.count, ScalarClass.of(text[stop]) & ScalarClass.whitespace != 0 { stop += 1 }
            }
            if startOffset < start { emitText(startOffset..<start) }
            // `tokenizers` drops empty splits, a token's too: lstrip can reach the stop of
            // a match that the previous token's rstrip swallowed.
            if start < stop { out.append(Piece(scalars: Array(text[start..<stop]), token: entry.id, atOrigin: false)) }
            startOffset = stop
        }
        emitText(startOffset..<text.count)
    }

    /// A word character for `single_word`, as the Unicode `\w` of Rust's regex crate:
    /// Alphabetic, a mark, a decimal digit, connector punctuation or a join control.
    static func isWordCharacter(_ value: UInt32) -> Bool {
        if value < 128 {
            return (value >= 48 && value <= 57) || (value >= 65 && value <= 90) || (value >= 97 && value <= 122) || value == 95
        }
        // Rust's tables are those of the regex edition: later scalars are no word characters.
        guard let scalar = Unicode.Scalar(value), ScalarClass.Edition.regex.knows(scalar) else { return false }
        let p = scalar.properties
        if p.isAlphabetic || p.isJoinControl { return true }
        return ScalarClass.of(value) & (ScalarClass.mark | ScalarClass.decimal | ScalarClass.bits(.connectorPunctuation)) != 0
    }

    @inline(__always)
    private static func occurs(_ token: [UInt32], in text: [UInt32], at position: Int) -> Bool {
        guard position + token.count <= text.count else { return false }
        for k in 1..<token.count where text[position + k] != token[k] { return false }
        return true
    }
}
