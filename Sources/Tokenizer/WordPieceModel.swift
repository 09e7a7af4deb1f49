/// The WordPiece model of tokenizer.json (BERT): each word is cut greedily into the
/// longest vocabulary entries from the left, continuations spelled with a prefix (`##`);
/// a word that cannot be cut, or is too long, is one unknown token.
struct WordPieceModel: Sendable {
    let vocabulary: Vocabulary
    let unknown: Int32
    let prefix: [UInt32]
    let maximumScalars: Int

    func encode(_ word: [UInt32], into ids: inout [Int32], cache: inout [[UInt32]: [Int32]]) {
        guard !word.isEmpty else { return }
        if word.count > maximumScalars {
            ids.append(unknown)
            return
        }
        if let cached = cache[word] {
            ids.append(contentsOf: cached)
            return
        }
        var pieces: [Int32] = []
        var start = 0
        var key: [UInt32] = []
        while start < word.count {
            var end = word.count
            var found: Int32?
            while start < end {
                key.removeAll(keepingCapacity: true)
                if start > 0 { key.append(contentsOf: prefix) }
                key.append(contentsOf: word[start..<end])
                if let id = vocabulary[key] {
                    found = id
                    break
                }
                end -= 1
            }
            guard let found else {
                pieces = [unknown]
                break
            }
            pieces.append(found)
            start = end
        }
        ids.append(contentsOf: pieces)
        if word.count < 256, cache.count < 100_000 { cache[word] = pieces }
    }
}
