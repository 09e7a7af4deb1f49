/// A `post_processor` of tokenizer.json, as far as ids go: the special tokens a template
/// puts around the encoded text (`[CLS] … [SEP]`, `<s> …`). Offsets and type ids, which
/// pare does not use, are left out.
indirect enum PostProcessor: Sendable {
    case sequence([PostProcessor])
    /// Ids before and after the text.
    case template(before: [Int32], after: [Int32])
    /// Changes offsets only (ByteLevel's trimming).
    case none

    func apply(_ ids: [Int32]) -> [Int32] {
        switch self {
        case .sequence(let steps): return steps.reduce(ids) { $1.apply($0) }
        case let .template(before, after): return before + ids + after
        case .none: return ids
        }
    }

    /// The ids the processor adds before and after a text, in order.
    var added: (before: [Int32], after: [Int32]) {
        switch self {
        case .none: return ([], [])
        case let .template(before, after): return (before, after)
        case .sequence(let steps):
            return steps.reduce(into: ([Int32](), [Int32]())) { sum, step in
                let (b, a) = step.added
                sum.0 = b + sum.0
                sum.1 += a
            }
        }
    }
}
