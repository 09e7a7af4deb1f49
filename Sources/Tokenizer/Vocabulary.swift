/// A token → id map keyed by scalar values, not by `String`: Swift compares strings by
/// canonical equivalence, and a vocabulary may hold two spellings of one accented letter
/// as two tokens.
struct Vocabulary: Sendable {
    private(set) var ids: [[UInt32]: Int32] = [:]
    /// Single scalars, looked up on every character, cached apart.
    private var single: [UInt32: Int32] = [:]

    init() {}

    mutating func insert(_ token: String, id: Int32) {
        let key = token.unicodeScalars.map(\.value)
        ids[key] = id
        if key.count == 1 { single[key[0]] = id }
    }

    subscript(_ key: [UInt32]) -> Int32? { key.count == 1 ? single[key[0]] : ids[key] }
    subscript(scalar value: UInt32) -> Int32? { single[value] }
    subscript(_ token: String) -> Int32? { self[token.unicodeScalars.map(\.value)] }

    var count: Int { ids.count }
}
