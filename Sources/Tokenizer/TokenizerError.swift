import OrderedJSON

/// Why a tokenizer cannot be loaded or cannot encode a text. Each message is one sentence
/// that names the file and, for the format, the component or key at fault.
public enum TokenizerError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The folder has no `tokenizer.json`.
    case missing(folder: String)
    case unreadable(path: String, problem: String)
    /// A key is missing or has the wrong type.
    case invalid(path: String, key: String, problem: String)
    /// A component pare does not implement; it never substitutes one that could give other ids.
    case unsupported(path: String, component: String, reason: String)
    /// A regular expression in a Split or Replace that pare's matcher cannot run.
    case pattern(path: String, pattern: String, problem: String)
    /// A token the model needs (a merge's parts, the unknown token) is not in the vocabulary.
    case notInVocabulary(path: String, token: String, needed: String)
    /// The text cannot be tokenized without an unknown token, and the model has none.
    case noUnknownToken(path: String, text: String)

    public var description: String {
        switch self {
        case let .missing(folder):
            return "\(folder) has no tokenizer.json; pare tokenizes with the tokenizer saved beside the model"
        case let .unreadable(path, problem):
            return "\(path): \(problem)"
        case let .invalid(path, key, problem):
            return "\(path): '\(key)' \(problem)"
        case let .unsupported(path, component, reason):
            return "\(path): \(component) is not supported (\(reason)); pare refuses rather than give different ids"
        case let .pattern(path, pattern, problem):
            return "\(path): the pattern \(Self.quoted(pattern)) \(problem)"
        case let .notInVocabulary(path, token, needed):
            return "\(path): \(Self.quoted(token)) is not in the vocabulary, and \(needed)"
        case let .noUnknownToken(path, text):
            return "\(path): \(Self.quoted(text)) has no token in the vocabulary and the model has no unknown token"
        }
    }

    /// A JSON string, so that spaces and control characters stay visible; long texts are cut.
    static func quoted(_ text: String) -> String {
        let scalars = text.unicodeScalars
        let shown = JSONValue.string(String(String.UnicodeScalarView(scalars.prefix(80)))).serialized()
        return scalars.count > 80 ? shown + "…" : shown
    }
}
