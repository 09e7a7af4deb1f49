extension JSONValue {
    /// How a value is laid out as text.
    public enum Layout: Sendable {
        /// No whitespace, non-ASCII as raw UTF-8: what serde_json writes in safetensors headers.
        case compact
        /// Python's `json.dumps(indent=2)`: two-space indent, `": "` after keys, non-ASCII
        /// escaped as `\uXXXX` — how transformers writes config.json and shard indexes, so
        /// files pare rewrites diff cleanly against the originals.
        case pretty
    }

    /// The value as JSON text in the given layout.
    public func serialized(_ layout: Layout = .compact) -> String {
        var out = ""
        write(to: &out, layout: layout, indent: 0)
        return out
    }

    private func write(to out: inout String, layout: Layout, indent: Int) {
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let lexeme): out += lexeme
        case .string(let s): Self.writeString(s, to: &out, escapeNonASCII: layout == .pretty)
        case .array(let items):
            if items.isEmpty {
                out += "[]"
                return
            }
            out += "["
            for (i, item) in items.enumerated() {
                if i > 0 { out += "," }
                if layout == .pretty { Self.newline(&out, indent + 2) }
                item.write(to: &out, layout: layout, indent: indent + 2)
            }
            if layout == .pretty { Self.newline(&out, indent) }
            out += "]"
        case .object(let members):
            if members.isEmpty {
                out += "{}"
                return
            }
            out += "{"
            for (i, member) in members.enumerated() {
                if i > 0 { out += "," }
                if layout == .pretty { Self.newline(&out, indent + 2) }
                Self.writeString(member.key, to: &out, escapeNonASCII: layout == .pretty)
                out += layout == .pretty ? ": " : ":"
                member.value.write(to: &out, layout: layout, indent: indent + 2)
            }
            if layout == .pretty { Self.newline(&out, indent) }
            out += "}"
        }
    }

    private static func newline(_ out: inout String, _ indent: Int) {
        out += "\n"
        out += String(repeating: " ", count: indent)
    }

    private static let hexDigits = Array("0123456789abcdef")

    /// Appends `s` as the compact layout writes a string: quoted, escaped, non-ASCII raw.
    /// For writers that lay out large documents without building a tree first.
    public static func appendCompactString(_ s: String, to out: inout String) {
        writeString(s, to: &out, escapeNonASCII: false)
    }

    private static func writeString(_ s: String, to out: inout String, escapeNonASCII: Bool) {
        out += "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case "\u{08}": out += "\\b"
            case "\u{0C}": out += "\\f"
            default:
                if scalar.value < 0x20 || (escapeNonASCII && scalar.value > 0x7E) {
                    for unit in String(scalar).utf16 { appendEscape(unit, to: &out) }
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        out += "\""
    }

    private static func appendEscape(_ unit: UInt16, to out: inout String) {
        out += "\\u"
        for shift in stride(from: 12, through: 0, by: -4) {
            out.append(hexDigits[Int((unit >> UInt16(shift)) & 0xF)])
        }
    }
}
