/// The BPE model of tokenizer.json: each word starts as one symbol per scalar (or per
/// byte, with byte fallback) and is merged pair by pair, lowest merge rank first and
/// leftmost among equals, exactly as `tokenizers` merges.
struct BytePairModel: Sendable {
    let vocabulary: Vocabulary
    /// (left id, right id) → (rank, merged id).
    let merges: [UInt64: Merge]
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
    static func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b)) }

    /// Appends the ids of one word; `scratch` holds buffers reused across words.
    func encode(_ word: [UInt32], into ids: inout [Int32], scratch: inout Scratch) throws(TokenizerError) {
        guard !word.isEmpty else { return }
        if ignoreMerges, let id = vocabulary[word] {
            ids.append(id)
            return
        }
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

/// A binary min-heap of queued merges ordered by (rank, position).
struct MergeHeap {
    struct Entry {
        var rank: Int32
        var position: Int32
        var id: Int32

        @inline(__always)
        static func < (a: Entry, b: Entry) -> Bool { a.rank != b.rank ? a.rank < b.rank : a.position < b.position }
    }

    private var items: [Entry] = []

    mutating func removeAll() { items.removeAll(keepingCapacity: true) }

    mutating func push(_ entry: Entry) {
        items.append(entry)
        var k = items.count - 1
        while k > 0 {
            let parent = (k - 1) / 2
            guard items[k] < items[parent] else { break }
            items.swapAt(k, parent)
            k = parent
        }
    }

    mutating func pop() -> Entry? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var k = 0
            let n = items.count
            while true {
                let l = 2 * k + 1, r = l + 1
                var smallest = k
                if l < n && items[l] < items[smallest] { smallest = l }
                if r < n && items[r] < items[smallest] { smallest = r }
                if smallest == k { break }
                items.swapAt(k, smallest)
                k = smallest
            }
        }
        return top
    }
}
