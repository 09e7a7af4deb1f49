import OrderedJSON

/// Axis sizes, flags and layer kinds of one model, read from its config through a descriptor.
public struct AxisBinding: Sendable {
    public let descriptor: ArchitectureDescriptor
    public private(set) var sizes: [Axis: Int] = [:]
    /// The config key each axis was read from (`nil` for defaults and computed axes).
    public private(set) var sources: [Axis: String] = [:]
    public private(set) var flags: [String: Bool] = [:]
    /// The config value of each list or integer a layer kind reads.
    private var config: JSONValue

    /// Binds every axis; fails naming the axis and the config keys when a size is missing
    /// or inconsistent (e.g. heads not divisible by kv heads).
    public init(descriptor: ArchitectureDescriptor, config: JSONValue, path: String) throws(GraphError) {
        self.descriptor = descriptor
        self.config = config
        var pending = descriptor.axes
        // Config-read axes first, then defaults and computed ones as their inputs appear.
        for (axis, spec) in descriptor.axes {
            for key in spec.keys {
                guard let value = config[key], !value.isNull else { continue }
                guard let n = value.intValue else { throw .configNotInteger(path: path, key: key) }
                guard n >= 0, n <= 1 << 40 else {
                    throw .axisInvalid(path: path, axis: axis.rawValue, expression: key, problem: "\(n) is not a usable size")
                }
                sizes[axis] = n
                sources[axis] = key
                pending[axis] = nil
                break
            }
        }
        var progress = true
        while !pending.isEmpty && progress {
            progress = false
            for (axis, spec) in pending.sorted(by: { $0.key < $1.key }) {
                guard let expression = spec.value ?? spec.default else {
                    throw .configMissing(path: path, axis: axis.rawValue, keys: spec.keys)
                }
                guard expression.axes.allSatisfy({ sizes[$0] != nil }) else { continue }
                do {
                    sizes[axis] = try expression.evaluate { sizes[$0] }
                } catch {
                    throw .axisInvalid(path: path, axis: axis.rawValue, expression: expression.text, problem: Self.describe(error))
                }
                pending[axis] = nil
                progress = true
            }
        }
        if let (axis, spec) = pending.first {
            throw .axisInvalid(path: path, axis: axis.rawValue, expression: (spec.value ?? spec.default)?.text ?? "?",
                               problem: "it depends on axes that cannot be resolved")
        }
        for (flag, spec) in descriptor.flags {
            flags[flag] = config[spec.key]?.boolValue ?? spec.default
        }
    }

    static func describe(_ error: AxisExpression.EvaluationError) -> String {
        switch error {
        case .unknownAxis(let name): return "unknown axis '\(name)'"
        case .inexactDivision(let a, let b): return "\(a) is not divisible by \(b)"
        case .overflow: return "the size overflows"
        }
    }

    public func size(_ axis: Axis) -> Int? { sizes[axis] }

    /// The number of layers (the `layers` axis).
    public var layerCount: Int { sizes[.layers] ?? 0 }

    /// Whether layer `index` is of the named kind (see `layer_kinds` in formats/README.md).
    public func layer(_ index: Int, isOfKind kind: String) -> Bool {
        guard let spec = descriptor.layerKinds[kind] else { return false }
        if let list = spec.excludeList, let items = config[list]?.arrayValue,
            items.contains(where: { $0.intValue == index })
        {
            return false
        }
        if let step = spec.step, let n = config[step]?.intValue, n > 0, (index + 1) % n != 0 { return false }
        if let axis = spec.requires, (sizes[axis] ?? 0) <= 0 { return false }
        return true
    }

    /// Whether a tensor's `layers` filter admits layer `index`.
    public func admits(_ filter: ArchitectureDescriptor.LayerFilter?, layer index: Int) -> Bool {
        guard let filter else { return true }
        return layer(index, isOfKind: filter.kind) != filter.negated
    }

    /// The size of one dimension.
    public func size(of dimension: ArchitectureDescriptor.Dimension) throws(AxisExpression.EvaluationError) -> Int {
        switch dimension {
        case .expression(let e): return try e.evaluate { sizes[$0] }
        case .concat(let parts):
            var total = 0
            for part in parts { total += try part.evaluate { sizes[$0] } }
            return total
        }
    }
}
