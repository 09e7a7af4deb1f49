/// A tensor name template such as `model.layers.{layer}.mlp.experts.{expert}.w1.weight`,
/// compiled for matching names and for producing them.
public struct TensorTemplate: Sendable, Hashable {
    public enum Placeholder: String, Sendable, Hashable {
        case layer, expert
    }

    public let text: String
    /// Literal pieces around the placeholders: `pieces.count == placeholders.count + 1`.
    let pieces: [String]
    public let placeholders: [Placeholder]

    public init(_ text: String) {
        self.text = text
        var pieces: [String] = []
        var placeholders: [Placeholder] = []
        var rest = Substring(text)
        while let open = rest.firstIndex(of: "{"), let close = rest[open...].firstIndex(of: "}"),
            let placeholder = Placeholder(rawValue: String(rest[rest.index(after: open)..<close]))
        {
            pieces.append(String(rest[..<open]))
            placeholders.append(placeholder)
            rest = rest[rest.index(after: close)...]
        }
        pieces.append(String(rest))
        self.pieces = pieces
        self.placeholders = placeholders
    }

    public var isPerLayer: Bool { placeholders.contains(.layer) }
    public var isPerExpert: Bool { placeholders.contains(.expert) }

    /// The placeholder values if `name` is an instance of this template.
    public func match(_ name: String) -> [Placeholder: Int]? {
        var rest = Substring(name)
        guard rest.hasPrefix(pieces[0]) else { return nil }
        rest = rest.dropFirst(pieces[0].count)
        var values: [Placeholder: Int] = [:]
        for (i, placeholder) in placeholders.enumerated() {
            let digits = rest.prefix { $0.isASCII && $0.isNumber }
            guard !digits.isEmpty, digits.count < 10, digits == "0" || digits.first != "0", let value = Int(digits) else { return nil }
            if let previous = values[placeholder], previous != value { return nil }
            values[placeholder] = value
            rest = rest.dropFirst(digits.count)
            guard rest.hasPrefix(pieces[i + 1]) else { return nil }
            rest = rest.dropFirst(pieces[i + 1].count)
        }
        return rest.isEmpty ? values : nil
    }

    /// The name for the given placeholder values.
    public func name(layer: Int? = nil, expert: Int? = nil) -> String {
        var result = pieces[0]
        for (i, placeholder) in placeholders.enumerated() {
            switch placeholder {
            case .layer: result += String(layer!)
            case .expert: result += String(expert!)
            }
            result += pieces[i + 1]
        }
        return result
    }
}
