/// A map from a pair of 32-bit values (packed in a `UInt64`) in an open-addressing table
/// with a multiplicative hash. BPE looks up merges several times per symbol, where
/// `Dictionary`'s seeded SipHash cost more than the merging itself.
struct PairTable<Value: Sendable>: Sendable {
    private var keys: [UInt64]
    private var values: [Value]
    private let shift: UInt64
    private let mask: Int
    private(set) var count = 0

    /// Never a real key: both halves would be 2³² − 1, above any id or scalar.
    private static var empty: UInt64 { .max }

    /// A table for up to `capacity` entries (it does not grow).
    init(capacity: Int, filler: Value) {
        var size = 16
        while size < capacity * 2 { size <<= 1 }
        keys = Array(repeating: Self.empty, count: size)
        values = Array(repeating: filler, count: size)
        shift = UInt64(64 - size.trailingZeroBitCount)
        mask = size - 1
    }

    @inline(__always)
    static func key(_ a: UInt32, _ b: UInt32) -> UInt64 { UInt64(a) << 32 | UInt64(b) }

    @inline(__always)
    private func slot(_ key: UInt64) -> Int { Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> shift) }

    /// Inserts or replaces (a later duplicate merge wins, as in `tokenizers`).
    mutating func set(_ key: UInt64, _ value: Value) {
        var i = slot(key)
        while keys[i] != Self.empty && keys[i] != key { i = (i + 1) & mask }
        if keys[i] == Self.empty {
            precondition(count * 2 < keys.count, "PairTable holds more than its capacity")
            count += 1
        }
        keys[i] = key
        values[i] = value
    }

    @inline(__always)
    subscript(_ key: UInt64) -> Value? {
        var i = slot(key)
        while true {
            let k = keys[i]
            if k == key { return values[i] }
            if k == Self.empty { return nil }
            i = (i + 1) & mask
        }
    }

    @inline(__always)
    func contains(_ key: UInt64) -> Bool { self[key] != nil }
}
