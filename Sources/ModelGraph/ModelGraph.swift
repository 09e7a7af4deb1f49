import ModelFolder
import OrderedJSON
import SafeTensors
import Tensors

/// A checkpoint seen through its architecture descriptor: every tensor tied to a template,
/// a layer and expert index, and the axes of each dimension.
///
/// Building the graph reads no tensor bytes. It is the ground passes stand on: a pass
/// changes axis sizes and selects indices, and the graph knows every tensor that carries
/// the axis.
public struct ModelGraph: Sendable {
    /// One tensor of the checkpoint.
    public struct Node: Sendable {
        public var name: String
        /// Index into `descriptor.tensors`.
        public var template: Int
        public var layer: Int?
        public var expert: Int?
        public var source: ModelFolder.Tensor
        /// The shape the config implies.
        public var expectedShape: [Int]
    }

    public let model: ModelFolder
    public let descriptor: ArchitectureDescriptor
    public let binding: AxisBinding
    public let nodes: [Node]
    /// Everything wrong with the checkpoint, in tensor order (empty when it is consistent).
    public let problems: [GraphError]
    /// Tensors no template describes (each also reported in `problems`).
    public let unknownTensors: [ModelFolder.Tensor]
    /// The nodes of each layer, in tensor order, so passes never scan the whole model per layer.
    public let nodesByLayer: [Int: [Node]]

    /// The node of `template` in `layer` (and `expert`), if the checkpoint has it.
    public func node(template: Int, layer: Int?, expert: Int?) -> Node? {
        let candidates = layer.map { nodesByLayer[$0] ?? [] } ?? nodes
        return candidates.first { $0.template == template && $0.layer == layer && $0.expert == expert }
    }

    /// Builds the graph; `registry` finds the descriptor for the config's `model_type`.
    /// Structural problems (a config the descriptor cannot bind) throw; tensor problems are
    /// collected in `problems` so `validate` can report them all.
    public init(model: ModelFolder, registry: DescriptorRegistry = .builtin) throws(GraphError) {
        guard let config = model.config?.json else { throw .noConfig(path: model.path) }
        let modelType = config["model_type"]?.stringValue
        guard let modelType, let found = registry.descriptor(for: modelType) else {
            throw .unknownModelType(path: model.path, modelType: modelType, known: registry.modelTypes)
        }
        let binding = try AxisBinding(descriptor: found, config: config, path: model.path)
        for axis in [Axis.layers, .experts] {
            if let n = binding.size(axis), n > max(1, model.tensors.count) {
                throw .axisInvalid(path: model.path, axis: axis.rawValue, expression: binding.sources[axis] ?? axis.rawValue,
                                   problem: "\(n) is more than the checkpoint's \(model.tensors.count) tensors could hold")
            }
        }
        self.model = model
        self.binding = binding

        // Base-model checkpoints leave the optional prefix out of every name.
        var descriptor = found
        if let prefix = descriptor.optionalPrefix, !model.tensors.contains(where: { $0.info.name.hasPrefix(prefix) }) {
            for i in descriptor.tensors.indices where descriptor.tensors[i].name.hasPrefix(prefix) {
                descriptor.tensors[i].name.removeFirst(prefix.count)
            }
        }
        self.descriptor = descriptor
        let templates = descriptor.tensors.map { TensorTemplate($0.name) }
        var problems: [GraphError] = []
        var nodes: [Node] = []
        var seen = Set<String>()
        var unknown: [ModelFolder.Tensor] = []
        let layers = binding.layerCount
        let experts = binding.size(.experts) ?? 0
        for tensor in model.tensors {
            let name = tensor.info.name
            var matched = false
            for (index, template) in templates.enumerated() {
                guard let values = template.match(name) else { continue }
                let spec = descriptor.tensors[index]
                let layer = values[.layer], expert = values[.expert]
                if let layer, layer >= layers {
                    problems.append(.layerIndexOutOfRange(tensor: name, layer: layer, layers: layers))
                    matched = true
                    break
                }
                if let expert, expert >= experts { continue }
                if let layer, !binding.admits(spec.layers, layer: layer) { continue }
                let expected = Self.shape(of: spec, binding)
                if expected.count != tensor.info.shape.count || zip(expected, tensor.info.shape).contains(where: { $0 < 0 || UInt64($0) != $1 }) {
                    problems.append(.shapeMismatch(tensor: name, expected: expected, actual: tensor.info.shape,
                                                   axes: spec.shape.map(\.description).joined(separator: ", ")))
                }
                nodes.append(Node(name: name, template: index, layer: layer, expert: expert, source: tensor, expectedShape: expected))
                seen.insert(name)
                matched = true
                break
            }
            if !matched {
                problems.append(.unexpectedTensor(tensor: name, family: descriptor.family))
                unknown.append(tensor)
            }
        }
        // Every required instance must be there, and one a flag turns off must not be.
        for (index, spec) in descriptor.tensors.enumerated() {
            if let condition = spec.requiredIf, !condition.holds(binding.flags) {
                for node in nodes where node.template == index {
                    problems.append(.tensorTurnedOff(tensor: node.name, condition: condition.description,
                                                     key: descriptor.flags[condition.flag]?.key ?? condition.flag))
                }
                continue
            }
            if spec.optional { continue }
            if let condition = spec.optionalIf, condition.holds(binding.flags) { continue }
            for name in Self.instances(of: templates[index], spec: spec, binding: binding) where !seen.contains(name) {
                problems.append(.missingTensor(tensor: name, shape: Self.shape(of: spec, binding)))
            }
        }
        self.nodes = nodes
        self.problems = problems
        self.unknownTensors = unknown
        var byLayer: [Int: [Node]] = [:]
        for node in nodes { if let layer = node.layer { byLayer[layer, default: []].append(node) } }
        self.nodesByLayer = byLayer
    }

    /// Every name `template` takes in this model (one per layer of its kind and per expert),
    /// whether the checkpoint holds it or not (a tied `lm_head` is a module without a tensor).
    public func instances(ofTemplate index: Int) -> [String] {
        Self.instances(of: TensorTemplate(descriptor.tensors[index].name), spec: descriptor.tensors[index], binding: binding)
    }

    static func instances(of template: TensorTemplate, spec: ArchitectureDescriptor.Tensor, binding: AxisBinding) -> [String] {
        let layerRange: [Int?] = template.isPerLayer ? (0..<binding.layerCount).map { $0 } : [nil]
        let expertRange: [Int?] = template.isPerExpert ? (0..<(binding.size(.experts) ?? 0)).map { $0 } : [nil]
        var names: [String] = []
        for layer in layerRange {
            if let layer, !binding.admits(spec.layers, layer: layer) { continue }
            for expert in expertRange { names.append(template.name(layer: layer, expert: expert)) }
        }
        return names
    }

    /// The shape a tensor of this template has under the binding (dimensions that cannot be
    /// evaluated come out as -1, which never matches).
    static func shape(of spec: ArchitectureDescriptor.Tensor, _ binding: AxisBinding) -> [Int] {
        spec.shape.map { (try? binding.size(of: $0)) ?? -1 }
    }
}
