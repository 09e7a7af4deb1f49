import OrderedJSON

/// One architecture family as data: config keys → axis sizes, tensor templates → axes.
///
/// Read from `formats/<family>.json` (schema in `formats/README.md`). Reading is strict:
/// an unknown key, axis, role, flag or layer kind is an error that names the file and the
/// key, because a descriptor that is silently misread turns a pass off or on without
/// saying so.
public struct ArchitectureDescriptor: Sendable {
    /// How one axis gets its size.
    public struct AxisSpec: Sendable {
        /// Config keys tried in order.
        public var keys: [String]
        /// Used when no key is present (or its value is null).
        public var `default`: AxisExpression?
        /// Always computed from other axes (the config cannot set it).
        public var value: AxisExpression?
    }

    public struct Flag: Sendable {
        public var key: String
        public var `default`: Bool
    }

    /// A flag, or its negation (`!flag`).
    public struct Condition: Sendable, Hashable, CustomStringConvertible {
        public var flag: String
        public var negated: Bool

        public func holds(_ flags: [String: Bool]) -> Bool { (flags[flag] ?? false) != negated }
        public var description: String { (negated ? "!" : "") + flag }
    }

    /// A named subset of layers (see `layer_kinds` in formats/README.md).
    public struct LayerKind: Sendable {
        public var excludeList: String?
        public var step: String?
        public var requires: Axis?
    }

    /// A layer kind, or its complement (`!kind`).
    public struct LayerFilter: Sendable, Hashable {
        public var kind: String
        public var negated: Bool
    }

    /// One dimension: a product/quotient expression, or segments laid end to end.
    public enum Dimension: Sendable, CustomStringConvertible {
        case expression(AxisExpression)
        case concat([AxisExpression])

        public var description: String {
            switch self {
            case .expression(let e): return e.text
            case .concat(let parts): return parts.map(\.text).joined(separator: "|")
            }
        }

        /// Every axis the dimension names.
        public var axes: Set<Axis> {
            switch self {
            case .expression(let e): return Set(e.axes)
            case .concat(let parts): return Set(parts.flatMap(\.axes))
            }
        }
    }

    public struct Tensor: Sendable {
        public var name: String
        public var shape: [Dimension]
        public var role: Role
        /// May be absent (biases some checkpoints have).
        public var optional: Bool
        /// May be absent when the condition holds (`lm_head` with tied embeddings).
        public var optionalIf: Condition?
        /// Present exactly when the condition holds (a bias behind `attention_bias`).
        public var requiredIf: Condition?
        /// Only in layers of this kind (or not of it).
        public var layers: LayerFilter?
        /// A GPT-2 `Conv1D` weight, stored `[in, out]`.
        public var transposed: Bool
        /// Axes the tensor's module computes one statistic across (a norm over the full
        /// width of all heads): pruning any of them is refused.
        public var statisticOver: [Axis]
    }

    /// Config values that follow the layers when layers are dropped.
    public struct LayerConfig: Sendable {
        public var slice: [String] = []
        public var remap: [String] = []
        public var countBelow: [String] = []
    }

    public var version: Int
    public var family: String
    public var modelTypes: [String]
    public var axes: [Axis: AxisSpec]
    public var flags: [String: Flag]
    public var layerKinds: [String: LayerKind]
    public var tensors: [Tensor]
    public var layerConfig: LayerConfig
    /// A prefix some checkpoints of the family leave out of every name that has it (the
    /// base model saved on its own: GPT-2's `transformer.`, BERT's `bert.`).
    public var optionalPrefix: String?
    /// Quotients the family's config class requires to be exact (Llama's `hidden / heads`,
    /// checked when the config is built even though the head size is read from `head_dim`).
    public var divisible: [AxisExpression] = []
    /// Whether attention is causal (a decoder, which keeps a KV cache while generating) or
    /// bidirectional (an encoder such as BERT, which has none).
    public var causal = true
    /// How the blocks compute (schema version 3); nil for a descriptor that only describes
    /// tensors, which pare can trim and convert but not run.
    public var compute: ComputeSpec?

    /// Schema versions this pare reads.
    public static let versions = 1...3

    /// Reads a descriptor; `source` names the file in errors.
    public static func decode(_ bytes: [UInt8], source: String) throws(GraphError) -> ArchitectureDescriptor {
        let json: JSONValue
        do { json = try JSONParser.parse(bytes) } catch {
            throw .descriptorInvalid(source: source, problem: "not JSON: \(error)")
        }
        return try DescriptorReader(source: source).descriptor(json)
    }
}

/// Reads the JSON form, checking every key against the schema.
struct DescriptorReader {
    let source: String

    func fail(_ key: String, _ problem: String) -> GraphError {
        .descriptorInvalid(source: source, problem: key.isEmpty ? problem : "'\(key)' \(problem)")
    }

    func members(_ value: JSONValue?, _ key: String, allowed: [String]) throws(GraphError) -> [(key: String, value: JSONValue)] {
        guard let members = value?.objectMembers else { throw fail(key, "must be an object") }
        var seen = Set<String>()
        for (name, _) in members where !seen.insert(name).inserted {
            throw fail(key.isEmpty ? name : "\(key).\(name)", "appears twice (JSON readers disagree on which one counts)")
        }
        for (name, _) in members where !allowed.contains(name) {
            throw fail(key.isEmpty ? name : "\(key).\(name)", "is not a key of the schema (allowed here: \(allowed.joined(separator: ", ")))")
        }
        return members
    }

    func string(_ value: JSONValue?, _ key: String) throws(GraphError) -> String {
        guard let text = value?.stringValue else { throw fail(key, "must be a string") }
        return text
    }

    func strings(_ value: JSONValue?, _ key: String) throws(GraphError) -> [String] {
        guard let items = value?.arrayValue else { throw fail(key, "must be a list of strings") }
        var result: [String] = []
        for item in items {
            guard let text = item.stringValue else { throw fail(key, "must be a list of strings") }
            result.append(text)
        }
        return result
    }

    func bool(_ value: JSONValue?, _ key: String) throws(GraphError) -> Bool {
        guard let flag = value?.boolValue else { throw fail(key, "must be true or false") }
        return flag
    }

    func axis(_ name: String, _ key: String) throws(GraphError) -> Axis {
        guard let axis = Axis(rawValue: name) else {
            throw fail(key, "names '\(name)', which is not an axis (known: \(Axis.all.map(\.rawValue).joined(separator: ", ")))")
        }
        return axis
    }

    func expression(_ text: String, _ key: String) throws(GraphError) -> AxisExpression {
        do { return try AxisExpression(text) } catch { throw fail(key, error.description) }
    }

    func descriptor(_ json: JSONValue) throws(GraphError) -> ArchitectureDescriptor {
        let top = try members(json, "", allowed: [
            "version", "family", "model_types", "axes", "flags", "layer_kinds", "tensors", "layer_config", "optional_prefix",
            "divisible", "causal", "compute",
        ])
        func member(_ name: String) -> JSONValue? { top.first { $0.key == name }?.value }
        guard let version = member("version")?.intValue else { throw fail("version", "must be an integer") }
        guard ArchitectureDescriptor.versions.contains(version) else {
            throw fail("version", "is \(version), which this pare does not read (it reads versions \(ArchitectureDescriptor.versions.lowerBound) to \(ArchitectureDescriptor.versions.upperBound))")
        }
        let family = try string(member("family"), "family")
        let modelTypes = try strings(member("model_types"), "model_types")
        guard !modelTypes.isEmpty else { throw fail("model_types", "must name at least one model_type") }

        var axes: [Axis: ArchitectureDescriptor.AxisSpec] = [:]
        for (name, value) in try members(member("axes"), "axes", allowed: Axis.all.map(\.rawValue)) {
            let key = "axes.\(name)"
            let fields = try members(value, key, allowed: ["keys", "default", "value"])
            func field(_ f: String) -> JSONValue? { fields.first { $0.key == f }?.value }
            var spec = ArchitectureDescriptor.AxisSpec(keys: [], default: nil, value: nil)
            if let keys = field("keys") { spec.keys = try strings(keys, "\(key).keys") }
            if let text = field("default") { spec.default = try expression(try string(text, "\(key).default"), "\(key).default") }
            if let text = field("value") { spec.value = try expression(try string(text, "\(key).value"), "\(key).value") }
            if spec.value != nil && (!spec.keys.isEmpty || spec.default != nil) {
                throw fail(key, "has a value and keys or a default; a computed axis has only a value")
            }
            if spec.value == nil && spec.keys.isEmpty {
                throw fail(key, "needs config keys to read, or a value to compute")
            }
            axes[axis_(name)] = spec
        }
        for (axis, spec) in axes {
            for expression in [spec.default, spec.value].compactMap({ $0 }) {
                if let missing = expression.axes.first(where: { axes[$0] == nil }) {
                    throw fail("axes.\(axis)", "uses axis '\(missing)', which the descriptor does not define")
                }
            }
        }

        var flags: [String: ArchitectureDescriptor.Flag] = [:]
        if let value = member("flags") {
            guard let entries = value.objectMembers else { throw fail("flags", "must be an object") }
            for (name, spec) in entries {
                let fields = try members(spec, "flags.\(name)", allowed: ["key", "default"])
                func field(_ f: String) -> JSONValue? { fields.first { $0.key == f }?.value }
                flags[name] = .init(key: try string(field("key"), "flags.\(name).key"),
                                    default: try field("default").map { v throws(GraphError) in try bool(v, "flags.\(name).default") } ?? false)
            }
        }

        var kinds: [String: ArchitectureDescriptor.LayerKind] = [:]
        if let value = member("layer_kinds") {
            guard let entries = value.objectMembers else { throw fail("layer_kinds", "must be an object") }
            for (name, spec) in entries {
                let key = "layer_kinds.\(name)"
                let fields = try members(spec, key, allowed: ["exclude_list", "step", "requires"])
                func field(_ f: String) -> JSONValue? { fields.first { $0.key == f }?.value }
                var kind = ArchitectureDescriptor.LayerKind()
                kind.excludeList = try field("exclude_list").map { v throws(GraphError) in try string(v, "\(key).exclude_list") }
                kind.step = try field("step").map { v throws(GraphError) in try string(v, "\(key).step") }
                if let requires = field("requires") {
                    let a = try axis(try string(requires, "\(key).requires"), "\(key).requires")
                    guard axes[a] != nil else { throw fail("\(key).requires", "names axis '\(a)', which the descriptor does not define") }
                    kind.requires = a
                }
                kinds[name] = kind
            }
        }

        guard let tensorList = member("tensors")?.arrayValue, !tensorList.isEmpty else {
            throw fail("tensors", "must be a non-empty list")
        }
        var tensors: [ArchitectureDescriptor.Tensor] = []
        for (index, item) in tensorList.enumerated() {
            let name = item["name"]?.stringValue
            let key = "tensors[\(index)]" + (name.map { " (\($0))" } ?? "")
            tensors.append(try tensor(item, key: key, axes: axes, flags: flags, kinds: kinds))
        }

        var layerConfig = ArchitectureDescriptor.LayerConfig()
        if let value = member("layer_config") {
            let fields = try members(value, "layer_config", allowed: ["slice", "remap", "count_below"])
            for (name, list) in fields {
                let keys = try strings(list, "layer_config.\(name)")
                switch name {
                case "slice": layerConfig.slice = keys
                case "remap": layerConfig.remap = keys
                default: layerConfig.countBelow = keys
                }
            }
        }
        let prefix = try member("optional_prefix").map { v throws(GraphError) in try string(v, "optional_prefix") }
        var divisible: [AxisExpression] = []
        if let value = member("divisible") {
            for text in try strings(value, "divisible") {
                let e = try expression(text, "divisible")
                guard e.rest.contains(where: { $0.0 == .divide }) else { throw fail("divisible", "holds '\(text)', which has no quotient to check") }
                if let missing = e.axes.first(where: { axes[$0] == nil }) {
                    throw fail("divisible", "uses axis '\(missing)', which the descriptor does not define")
                }
                divisible.append(e)
            }
        }
        let causal = try member("causal").map { v throws(GraphError) in try bool(v, "causal") } ?? true
        var compute: ComputeSpec?
        if let value = member("compute") {
            guard version >= 3 else { throw fail("compute", "needs schema version 3 (this file says \(version))") }
            compute = try self.compute(value, tensors: tensors)
        }
        return ArchitectureDescriptor(
            version: version, family: family, modelTypes: modelTypes, axes: axes, flags: flags, layerKinds: kinds,
            tensors: tensors, layerConfig: layerConfig, optionalPrefix: prefix, divisible: divisible, causal: causal,
            compute: compute)
    }

    /// An axis key already checked against the vocabulary by `members(allowed:)`.
    private func axis_(_ name: String) -> Axis { Axis(rawValue: name)! }

    func tensor(
        _ item: JSONValue, key: String, axes: [Axis: ArchitectureDescriptor.AxisSpec], flags: [String: ArchitectureDescriptor.Flag],
        kinds: [String: ArchitectureDescriptor.LayerKind]
    ) throws(GraphError) -> ArchitectureDescriptor.Tensor {
        let fields = try members(item, key, allowed: [
            "name", "shape", "role", "optional", "optional_if", "required_if", "layers", "transposed", "statistic_over",
        ])
        func field(_ f: String) -> JSONValue? { fields.first { $0.key == f }?.value }
        let name = try string(field("name"), "\(key).name")
        let template = TensorTemplate(name)
        if template.placeholders.count != name.filter({ $0 == "{" }).count || name.filter({ $0 == "}" }).count != template.placeholders.count {
            throw fail("\(key).name", "has a placeholder other than {layer} and {expert}")
        }
        if template.isPerExpert && !template.isPerLayer {
            throw fail("\(key).name", "has {expert} without {layer}: experts belong to a layer")
        }
        guard let dims = field("shape")?.arrayValue else { throw fail("\(key).shape", "must be a list of dimensions") }
        var shape: [ArchitectureDescriptor.Dimension] = []
        for dim in dims {
            if let text = dim.stringValue {
                shape.append(.expression(try expression(text, "\(key).shape")))
            } else {
                let parts = try members(dim, "\(key).shape", allowed: ["concat"])
                let texts = try strings(parts.first?.value, "\(key).shape.concat")
                var expressions: [AxisExpression] = []
                for text in texts { expressions.append(try expression(text, "\(key).shape.concat")) }
                shape.append(.concat(expressions))
            }
        }
        for dim in shape {
            if let never = dim.axes.first(where: { $0 == .layers || $0 == .expertsPerToken }) {
                throw fail("\(key).shape", "uses '\(never)', which counts \(never == .layers ? "blocks ({layer} ranges over it)" : "the router's picks") and is never a tensor dimension")
            }
            if let missing = dim.axes.first(where: { axes[$0] == nil }) {
                throw fail("\(key).shape", "uses axis '\(missing)', which the descriptor does not define in 'axes'")
            }
        }
        guard let roleName = field("role")?.stringValue else {
            throw fail("\(key).role", "is missing (every tensor has a role: \(Role.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let role = Role(rawValue: roleName) else {
            throw fail("\(key).role", "is '\(roleName)', which is not a role (known: \(Role.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        func condition(_ f: String) throws(GraphError) -> ArchitectureDescriptor.Condition? {
            guard let value = field(f) else { return nil }
            let text = try string(value, "\(key).\(f)")
            let negated = text.hasPrefix("!")
            let flag = negated ? String(text.dropFirst()) : text
            guard flags[flag] != nil else {
                throw fail("\(key).\(f)", "names flag '\(flag)', which the descriptor does not define in 'flags'")
            }
            return .init(flag: flag, negated: negated)
        }
        var filter: ArchitectureDescriptor.LayerFilter?
        if let value = field("layers") {
            let text = try string(value, "\(key).layers")
            let negated = text.hasPrefix("!")
            let kind = negated ? String(text.dropFirst()) : text
            guard kinds[kind] != nil else {
                throw fail("\(key).layers", "names layer kind '\(kind)', which the descriptor does not define in 'layer_kinds'")
            }
            guard TensorTemplate(name).isPerLayer else { throw fail("\(key).layers", "is set on a tensor whose name has no {layer}") }
            filter = .init(kind: kind, negated: negated)
        }
        var over: [Axis] = []
        if let value = field("statistic_over") {
            for text in try strings(value, "\(key).statistic_over") {
                let a = try axis(text, "\(key).statistic_over")
                guard shape.contains(where: { $0.axes.contains(a) }) else {
                    throw fail("\(key).statistic_over", "names axis '\(a)', which none of the tensor's dimensions carries")
                }
                over.append(a)
            }
        }
        let optional = try field("optional").map { v throws(GraphError) in try bool(v, "\(key).optional") } ?? false
        let optionalIf = try condition("optional_if")
        let requiredIf = try condition("required_if")
        if [optional, optionalIf != nil, requiredIf != nil].filter({ $0 }).count > 1 {
            throw fail(key, "has more than one of optional, optional_if and required_if")
        }
        return .init(
            name: name, shape: shape, role: role, optional: optional, optionalIf: optionalIf, requiredIf: requiredIf, layers: filter,
            transposed: try field("transposed").map { v throws(GraphError) in try bool(v, "\(key).transposed") } ?? false,
            statisticOver: over)
    }
}
