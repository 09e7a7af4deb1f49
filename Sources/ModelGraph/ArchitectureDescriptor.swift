import Foundation

/// One architecture family as data: config keys → axis sizes, tensor templates → axes.
///
/// Decoded from `formats/<family>.json` (schema in `formats/README.md`).
public struct ArchitectureDescriptor: Sendable, Decodable {
    public struct Axis: Sendable, Decodable {
        /// Config keys tried in order.
        public var keys: [String]?
        /// Used when no key is present (or its value is null).
        public var `default`: String?
        /// Always computed from other axes.
        public var value: String?
    }

    public struct Flag: Sendable, Decodable {
        public var key: String
        public var `default`: Bool
    }

    public struct LayerKind: Sendable, Decodable {
        public var exclude_list: String?
        public var step: String?
        public var requires: String?
    }

    /// One dimension: a product/quotient expression, or segments laid end to end.
    public enum Dimension: Sendable, Decodable, CustomStringConvertible {
        case expression(AxisExpression)
        case concat([AxisExpression])

        public init(from decoder: Decoder) throws {
            let container = try decoder.singleValueContainer()
            if let text = try? container.decode(String.self) {
                self = .expression(try AxisExpression(text))
                return
            }
            struct Concat: Decodable { var concat: [String] }
            let concat = try container.decode(Concat.self)
            self = .concat(try concat.concat.map { try AxisExpression($0) })
        }

        public var description: String {
            switch self {
            case .expression(let e): return e.text
            case .concat(let parts): return parts.map(\.text).joined(separator: "|")
            }
        }
    }

    public struct Tensor: Sendable, Decodable {
        public var name: String
        public var shape: [Dimension]
        public var role: String?
        public var optional: Bool?
        public var optional_if: String?
        /// A layer kind, or `!kind` for its complement.
        public var layers: String?
        public var transposed: Bool?
    }

    public struct LayerConfig: Sendable, Decodable {
        public var slice: [String]?
        public var remap: [String]?
        public var count_below: [String]?
    }

    public var version: Int
    public var family: String
    public var model_types: [String]
    public var axes: [String: Axis]
    public var flags: [String: Flag]?
    public var layer_kinds: [String: LayerKind]?
    public var tensors: [Tensor]
    public var layer_config: LayerConfig?
    /// A prefix some checkpoints of the family leave out of every name that has it (the
    /// base model saved on its own: GPT-2's `transformer.`, BERT's `bert.`).
    public var optional_prefix: String?

    /// Decodes a descriptor; `source` names the file in errors.
    public static func decode(_ bytes: [UInt8], source: String) throws(GraphError) -> ArchitectureDescriptor {
        do {
            let descriptor = try JSONDecoder().decode(ArchitectureDescriptor.self, from: Data(bytes))
            guard descriptor.version == 1 else {
                throw GraphError.descriptorInvalid(source: source, problem: "version \(descriptor.version) is not supported (this pare reads version 1)")
            }
            return descriptor
        } catch let error as GraphError {
            throw error
        } catch let error as AxisExpression.ParseError {
            throw .descriptorInvalid(source: source, problem: error.description)
        } catch let DecodingError.keyNotFound(key, context) {
            throw .descriptorInvalid(source: source, problem: "missing '\(key.stringValue)' at \(context.codingPath.map(\.stringValue).joined(separator: "."))")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context) {
            throw .descriptorInvalid(source: source, problem: "wrong type at \(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)")
        } catch {
            throw .descriptorInvalid(source: source, problem: "\(error)")
        }
    }
}
