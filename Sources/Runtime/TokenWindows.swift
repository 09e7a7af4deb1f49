import Tensors

/// How token ids become the windows a run evaluates or calibrates on.
public enum TokenWindows {
    /// Each sequence cut into consecutive windows of at most `length` tokens (the last of
    /// each sequence may be shorter), the first `samples` of them. Without a length, the
    /// sequences as they are.
    public static func cut(_ sequences: [[Int32]], length: Int?, samples: Int?) -> [[Int32]] {
        var out: [[Int32]] = []
        for s in sequences where !s.isEmpty {
            guard let length, length > 0 else { out.append(s); continue }
            var start = 0
            while start < s.count {
                out.append(Array(s[start..<min(s.count, start + length)]))
                start += length
            }
        }
        if let samples { out = Array(out.prefix(samples)) }
        return out
    }

    /// `samples` windows of exactly `length` tokens at random offsets into the sequences
    /// joined end to end, as calibration scripts draw them (GPTQ, Wanda, SparseGPT). The
    /// offsets come from SplitMix64 seeded with `seed`, so a seed names one draw on every
    /// machine. A stream shorter than `length` gives one window: all of it.
    public static func sample(_ sequences: [[Int32]], length: Int, samples: Int, seed: UInt64) -> [[Int32]] {
        let stream = sequences.flatMap { $0 }
        guard !stream.isEmpty else { return [] }
        guard stream.count > length else { return [stream] }
        var generator = SplitMix64(seed: seed)
        let span = UInt64(stream.count - length + 1)
        return (0..<samples).map { _ in
            let start = Int(generator.below(span))
            return Array(stream[start..<(start + length)])
        }
    }
}
