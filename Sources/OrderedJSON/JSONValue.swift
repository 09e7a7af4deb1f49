/// A JSON value that keeps what Foundation's parser throws away.
///
/// Checkpoint headers and config files need three things `JSONSerialization` does not give:
/// object keys in their original order (config.json is written back as it was read),
/// duplicate keys made visible (a safetensors header naming a tensor twice is an error),
/// and numbers kept as their source text (so `1e-05` is written back as `1e-05`, and a
/// 64-bit offset never passes through a `Double`).
public enum JSONValue: Sendable, Hashable {
    case null
    case bool(Bool)
    /// A number, kept as its JSON lexeme.
    case number(String)
    case string(String)
    case array([JSONValue])
    /// An object's members in source order, duplicates included.
    case object([(key: String, value: JSONValue)])

    public static func == (lhs: JSONValue, rhs: JSONValue) -> Bool {
        switch (lhs, rhs) {
        case (.null, .null): return true
        case let (.bool(a), .bool(b)): return a == b
        case let (.number(a), .number(b)): return a == b
        case let (.string(a), .string(b)): return a == b
        case let (.array(a), .array(b)): return a == b
        case let (.object(a), .object(b)):
            return a.count == b.count && zip(a, b).allSatisfy { $0.key == $1.key && $0.value == $1.value }
        default: return false
        }
    }

    public func hash(into hasher: inout Hasher) {
        switch self {
        case .null: hasher.combine(0)
        case .bool(let b): hasher.combine(b)
        case .number(let n): hasher.combine(n)
        case .string(let s): hasher.combine(s)
        case .array(let a): hasher.combine(a)
        case .object(let members):
            for member in members {
                hasher.combine(member.key)
                hasher.combine(member.value)
            }
        }
    }
}

extension JSONValue {
    /// Makes a number from an integer.
    public static func integer<T: BinaryInteger>(_ value: T) -> JSONValue { .number(String(value)) }

    /// A finite double in its shortest round-tripping form (JSON has no NaN or infinity: those become null).
    public static func double(_ value: Double) -> JSONValue { value.isFinite ? .number(String(value)) : .null }

    /// The members of an object, or `nil` for any other value.
    public var objectMembers: [(key: String, value: JSONValue)]? {
        if case .object(let members) = self { return members }
        return nil
    }

    public var arrayValue: [JSONValue]? {
        if case .array(let items) = self { return items }
        return nil
    }

    public var stringValue: String? {
        if case .string(let s) = self { return s }
        return nil
    }

    public var boolValue: Bool? {
        if case .bool(let b) = self { return b }
        return nil
    }

    public var isNull: Bool {
        if case .null = self { return true }
        return false
    }

    /// The value as an exact integer when its lexeme is one (no fraction, no exponent).
    public var intValue: Int? {
        guard case .number(let lexeme) = self, lexeme != "-0" else { return nil }
        return Int(lexeme)
    }

    /// The value as an exact non-negative 64-bit integer, for offsets and shapes: digits
    /// only, so `-0`, `2.0` and `1e1` are refused as the reference refuses them.
    public var uint64Value: UInt64? {
        guard case .number(let lexeme) = self, lexeme.utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        return UInt64(lexeme)
    }

    public var doubleValue: Double? {
        guard case .number(let lexeme) = self else { return nil }
        return Double(lexeme)
    }

    /// The last value stored under `key` in an object (the JSON reading most parsers give).
    public subscript(key: String) -> JSONValue? {
        guard case .object(let members) = self else { return nil }
        return members.last(where: { $0.key == key })?.value
    }

    /// Replaces the value of every member named `key`, or appends one when `appendIfMissing`.
    /// Returns whether anything was set.
    @discardableResult
    public mutating func set(_ key: String, to value: JSONValue, appendIfMissing: Bool = false) -> Bool {
        guard case .object(var members) = self else { return false }
        var found = false
        for i in members.indices where members[i].key == key {
            members[i].value = value
            found = true
        }
        if !found && appendIfMissing {
            members.append((key, value))
            found = true
        }
        self = .object(members)
        return found
    }
}
