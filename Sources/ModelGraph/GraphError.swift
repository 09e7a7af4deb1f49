/// Why a model could not be described by its architecture's descriptor.
public enum GraphError: Error, Sendable, Equatable {
    case descriptorInvalid(source: String, problem: String)
    case noConfig(path: String)
    case unknownModelType(path: String, modelType: String?, known: [String])
    case configMissing(path: String, axis: String, keys: [String])
    case configNotInteger(path: String, key: String)
    case axisInvalid(path: String, axis: String, expression: String, problem: String)
    case unexpectedTensor(tensor: String, family: String)
    case missingTensor(tensor: String, shape: [Int])
    /// A tensor that exists only when a config flag holds, present while it does not.
    case tensorTurnedOff(tensor: String, condition: String, key: String)
    case shapeMismatch(tensor: String, expected: [Int], actual: [UInt64], axes: String)
    case layerIndexOutOfRange(tensor: String, layer: Int, layers: Int)

    /// A tensor no template describes: `trim --keep-unknown` copies these through.
    public var isUnexpectedTensor: Bool {
        if case .unexpectedTensor = self { return true }
        return false
    }

    public var rule: String {
        switch self {
        case .descriptorInvalid: return "descriptor"
        case .noConfig: return "no-config"
        case .unknownModelType: return "unknown-model-type"
        case .configMissing: return "config-missing-size"
        case .configNotInteger: return "config-not-integer"
        case .axisInvalid: return "axis-inconsistent"
        case .unexpectedTensor: return "unexpected-tensor"
        case .missingTensor: return "missing-tensor"
        case .tensorTurnedOff: return "tensor-turned-off"
        case .shapeMismatch: return "shape-mismatch"
        case .layerIndexOutOfRange: return "layer-out-of-range"
        }
    }
}

extension GraphError: CustomStringConvertible {
    public var description: String { "\(sentence) [rule: \(rule)]" }

    private var sentence: String {
        func dims(_ d: [Int]) -> String { "[" + d.map(String.init).joined(separator: ", ") + "]" }
        switch self {
        case let .descriptorInvalid(source, problem):
            return "\(source): invalid architecture descriptor: \(problem)"
        case let .noConfig(path):
            return "\(path): no config.json, so the architecture is unknown"
        case let .unknownModelType(path, modelType, known):
            guard let modelType else {
                return "\(path): config.json has no model_type, so the architecture is unknown (pare knows \(known.joined(separator: ", ")))"
            }
            return "\(path): no architecture descriptor for model_type '\(modelType)' (pare knows \(known.joined(separator: ", "))); describe the family in a descriptor file (the schema is formats/README.md in pare's source) and pass its folder with --formats DIR"
        case let .configMissing(path, axis, keys):
            return "\(path): config.json gives no size for axis '\(axis)' (looked for \(keys.joined(separator: ", ")))"
        case let .configNotInteger(path, key):
            return "\(path): config.json key '\(key)' is not an integer"
        case let .axisInvalid(path, axis, expression, problem):
            return "\(path): axis '\(axis)' = \(expression): \(problem)"
        case let .unexpectedTensor(tensor, family):
            return "tensor '\(tensor)' is not part of a \(family) checkpoint as the descriptor describes it (describe it in a descriptor under formats/, or let pare trim copy it unchanged with --keep-unknown)"
        case let .missingTensor(tensor, shape):
            return "tensor '\(tensor)' \(dims(shape)) is missing"
        case let .tensorTurnedOff(tensor, condition, key):
            return "tensor '\(tensor)' is present, but the descriptor says it exists only when \(condition) holds, and config.json '\(key)' says otherwise, so transformers would not load it"
        case let .shapeMismatch(tensor, expected, actual, axes):
            return "tensor '\(tensor)' has shape [\(actual.map(String.init).joined(separator: ", "))], but the config implies \(dims(expected)) (\(axes))"
        case let .layerIndexOutOfRange(tensor, layer, layers):
            return "tensor '\(tensor)' belongs to layer \(layer), but the config has \(layers) layers"
        }
    }
}
