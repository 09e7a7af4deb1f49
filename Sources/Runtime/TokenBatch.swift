/// Sequences of token ids laid end to end: the executor's input.
///
/// Sequences may differ in length; nothing is padded. Token `t` of the batch belongs to
/// the sequence whose range holds it, at position `t - offsets[s]`.
public struct TokenBatch: Sendable, Equatable {
    public let ids: [Int32]
    /// `offsets[s] ..< offsets[s + 1]` are sequence `s`'s tokens.
    public let offsets: [Int]

    public init(sequences: [[Int32]]) {
        var ids: [Int32] = []
        var offsets = [0]
        for s in sequences {
            ids.append(contentsOf: s)
            offsets.append(ids.count)
        }
        self.ids = ids
        self.offsets = offsets
    }

    public var sequenceCount: Int { offsets.count - 1 }
    public var tokenCount: Int { ids.count }
    public func range(of sequence: Int) -> Range<Int> { offsets[sequence]..<offsets[sequence + 1] }
    public var longest: Int { (0..<sequenceCount).map { range(of: $0).count }.max() ?? 0 }

    /// The batch of sequences `range`.
    public func slice(_ range: Range<Int>) -> TokenBatch {
        TokenBatch(sequences: range.map { Array(ids[self.range(of: $0)]) })
    }
}
