/// The BPE model of tokenizer.json: each word starts as one symbol per scalar (or per
/// byte, with byte fallback) and is merged pair by pair, lowest merge rank first and
/// leftmost among equals, exactly as `tokenizers` merges.
struct BytePairModel: Sendable {
    let vocabulary: Vocabulary
    /// (left id, right id) → (rank, merged id).
    let merges: PairTable<Merge>
    /// Every two scalars that follow each other inside some vocabulary token. A merge can
    /// never join symbols across a boundary whose two scalars are not in here, so a long
    /// word is encoded in pieces cut at such boundaries (see `encode`); nil when the
    /// spelling depends on position (prefix or suffix), where that does not hold.
    let adjacent: PairTable<Bool>?
    let unknown: Int32?
    let fuseUnknown: Bool
    let byteFallback: [Int32]?
    let continuingPrefix: [UInt32]?
    let endOfWordSuffix: [UInt32]?
    /// Whether a word that is itself in the vocabulary skips merging (Llama 3).
    let ignoreMerges: Bool

    struct Merge: Sendable {
        let rank: Int32
        let id: Int32
    }

    @inline(__always)
    static func key(_ a: Int32, _ b: Int32) -> UInt64 { PairTable<Merge>.key(UInt32(bitPattern: a), UInt32(bitPattern: b)) }

    /// The pairs of scalars that follow each other in the vocabulary's tokens.
    static func adjacentPairs(_ vocabulary: Vocabulary) -> PairTable<Bool> {
        var total = 0
        for token in vocabulary.ids.keys { total += max(0, token.count - 1) }
        var table = PairTable<Bool>(capacity: total, filler: false)
        for token in vocabulary.ids.keys where token.count > 1 {
            for k in 1..<token.count { table.set(PairTable<Bool>.key(token[k - 1], token[k]), true) }
        }
        return table
    }

    /// Appends the ids of one word; `scratch` holds buffers reused across words.
    func encode(_ word: [UInt32], into ids: inout [Int32], scratch: inout Scratch) throws(TokenizerError) {
        guard !word.isEmpty else { return }
        if ignoreMerges, let id = vocabulary[word] {
            ids.append(id)
            return
        }
        if word.count > 256, let adjacent {
            // A whole document when there is no pre-tokenizer (Llama 2). Cut it where two
            // scalars, both tokens themselves, never follow each other in any token: no
            // merge crosses such a boundary and no unknown token spans it, so the pieces
            // merge exactly as the whole would, and repeat, so the cache serves them.
            var start = 0
            for k in 1..<word.count {
                if !adjacent.contains(PairTable<Bool>.key(word[k - 1], word[k])),
                   vocabulary[scalar: word[k - 1]] != nil, vocabulary[scalar: word[k]] != nil {
                    try encodeWhole(Array(word[start..<k]), into: &ids, scratch: &scratch)
                    start = k
                }
            }
            try encodeWhole(Array(word[start...]), into: &ids, scratch: &scratch)
            return
        }
        try encodeWhole(word, into: &ids, scratch: &scratch)
    }

    private func encodeWhole(_ word: [UInt32], into ids: inout [Int32], scratch: inout Scratch) throws(TokenizerError) {
        if let cached = scratch.cache[word] {
            ids.append(contentsOf: cached)
            return
        }
        let start = ids.count
        try initialSymbols(word, into: &scratch.symbols)
        mergeAll(&scratch)
        var k = 0
        while k >= 0 && k < scratch.symbols.count {
            ids.append(scratch.symbols[k].id)
            k = scratch.symbols[k].next
        }
        if word.count < 256, scratch.cache.count < 100_000 { scratch.cache[word] = Array(ids[start...]) }
    }

    struct Symbol {
        var id: Int32
        var previous: Int
        var next: Int
        var removed: Bool
    }

    struct Scratch {
        var symbols: [Symbol] = []
        var heap = MergeHeap()
        var cache: [[UInt32]: [Int32]] = [:]
        var piece: [UInt32] = []
    }

    private func initialSymbols(_ word: [UInt32], into symbols: inout [Symbol]) throws(TokenizerError) {
        symbols.removeAll(keepingCapacity: true)
        var pendingUnknown = false
        func add(_ id: Int32) {
            symbols.append(Symbol(id: id, previous: symbols.count - 1, next: symbols.count + 1, removed: false))
        }
        let plain = continuingPrefix == nil && endOfWordSuffix == nil
        for (k, v) in word.enumerated() {
            var id: Int32?
            var spelled: [UInt32] = [v]
            if plain {
                id = vocabulary[scalar: v]
            } else {
                if k > 0, let continuingPrefix { spelled = continuingPrefix + spelled }
                if k == word.count - 1, let endOfWordSuffix { spelled += endOfWordSuffix }
                id = vocabulary[spelled]
            }
            if let id {
                if pendingUnknown, let unknown { add(unknown); pendingUnknown = false }
                add(id)
                continue
            }
            if let byteFallback, let bytes = Self.fallbackIDs(spelled, byteFallback) {
                // As `tokenizers`: byte tokens do not flush a pending unknown token.
                for b in bytes { add(b) }
                continue
            }
            guard let unknown else { continue }
            if pendingUnknown {
                if !fuseUnknown { add(unknown) }
            } else {
                pendingUnknown = true
            }
        }
        if pendingUnknown, let unknown { add(unknown) }
        if !symbols.isEmpty { symbols[symbols.count - 1].next = -1 }
    }

    /// The `<0xXX>` tokens of each UTF-8 byte, or nil if one is missing.
    private static func fallbackIDs(_ spelled: [UInt32], _ table: [Int32]) -> [Int32]? {
        var out: [Int32] = []
        for v in spelled {
            guard let s = Unicode.Scalar(v) else { return nil }
            for byte in UTF8.encode(s)! {
                let id = table[Int(byte)]
                if id < 0 { return nil }
                out.append(id)
            }
        }
        return out
    }

    private func mergeAll(_ scratch: inout Scratch) {
        scratch.heap.removeAll()
        let count = scratch.symbols.count
        guard count > 1 else { return }
        scratch.symbols.withUnsafeMutableBufferPointer { symbols in
            for k in 0..<(count - 1) {
                if let m = merges[Self.key(symbols[k].id, symbols[k + 1].id)] {
                    scratch.heap.push(.init(rank: m.rank, position: Int32(k), id: m.id))
                }
            }
            while let top = scratch.heap.pop() {
                let at = Int(top.position)
                if symbols[at].removed { continue }
                let nextAt = symbols[at].next
                if nextAt < 0 { continue }
                // A stale entry: the pair it was queued for has changed since.
                guard let m = merges[Self.key(symbols[at].id, symbols[nextAt].id)], m.id == top.id else { continue }
                symbols[at].id = top.id
                let after = symbols[nextAt].next
                symbols[at].next = after
                symbols[nextAt].removed = true
                if after >= 0 { symbols[after].previous = at }
                let before = symbols[at].previous
                if before >= 0, let m = merges[Self.key(symbols[before].id, symbols[at].id)] {
                    scratch.heap.push(.init(rank: m.rank, position: Int32(before), id: m.id))
                }
                if after >= 0, let m = merges[Self.key(symbols[at].id, symbols[after].id)] {
                    scratch.heap.push(.init(rank: m.rank, position: Int32(at), id: m.id))
                }
            }
        }
    }
}

/// A four-ary min-heap (as `tokenizers` uses) of queued merges ordered by (rank, position),
/// both packed in one integer so that each comparison is one. A word can be a whole
/// document when the tokenizer has no pre-tokenizer (Llama 2), so the heap can be large.
struct MergeHeap {
    struct Entry {
        /// rank << 32 | position.
        var order: UInt64
        var id: Int32

        init(rank: Int32, position: Int32, id: Int32) {
            order = UInt64(UInt32(bitPattern: rank)) << 32 | UInt64(UInt32(bitPattern: position))
            self.id = id
        }

        var position: Int32 { Int32(truncatingIfNeeded: order & 0xFFFF_FFFF) }
    }

    private var items: [Entry] = []

    mutating func removeAll() { items.removeAll(keepingCapacity: true) }

    mutating func push(_ entry: Entry) {
        items.append(entry)
        items.withUnsafeMutableBufferPointer { h in
            var k = h.count - 1
            while k > 0 {
                let parent = (k - 1) >> 2
                guard entry.order < h[parent].order else { break }
                h[k] = h[parent]
                k = parent
            }
            h[k] = entry
        }
    }

    mutating func pop() -> Entry? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        guard !items.isEmpty else { return top }
        items.withUnsafeMutableBufferPointer { h in
            let n = h.count
            var k = 0
            while true {
                let first = 4 * k + 1
                if first >= n { break }
                var best = first
                let end = min(first + 4, n)
                var c = first + 1
                while c < end {
                    if h[c].order < h[best].order { best = c }
                    c += 1
                }
                guard h[best].order < last.order else { break }
                h[k] = h[best]
                k = best
            }
            h[k] = last
        }
        return top
    }
}
