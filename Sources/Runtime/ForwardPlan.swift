import ModelFolder
import ModelGraph
import OrderedJSON

/// A model ready to run: its descriptor's compute section resolved against config.json
/// (sizes, epsilon, activation, rope frequencies, windows) and the tensors each step reads.
///
/// Building it reads no weights. Everything a family does differently comes from the
/// descriptor; this type only combines known pieces.
public struct ForwardPlan: Sendable {
    public let graph: ModelGraph
    public let spec: ComputeSpec
    public var family: String { graph.descriptor.family }
    public let causal: Bool

    /// Layers the executor runs (after any collapse).
    public var layers: Int { layerRuns.count }
    /// The checkpoint layers behind each layer the executor runs: one, or a LaCo run whose
    /// first layer receives θ + Σ(θ_k − θ) of the others (see `collapsing`).
    public private(set) var layerRuns: [[Int]]
    /// Whether a collapsed layer's norms are merged too (else the first layer's are kept).
    public private(set) var mergesNorms = false
    public let hidden: Int
    public let heads: Int
    public let kvHeads: Int
    public let headDim: Int
    public let vocab: Int
    /// The learned position table's size (GPT-2, BERT); nil with rotary positions.
    public let positions: Int?

    public let norm: NormKindValue
    public let epsilon: Float
    public let unitOffset: Bool
    public let activation: Activation
    public let rope: Rope?
    public let scale: Float
    public let attentionSoftcap: Float?
    public let finalSoftcap: Float?
    /// The sliding window of each checkpoint layer (nil: full attention).
    private let layerWindows: [Int?]
    /// The sliding window of each layer run (nil: full attention).
    public var windows: [Int?] { layerRuns.map { layerWindows[$0[0]] } }
    public let expertsPerToken: Int
    public let renormalize: Bool

    public init(graph: ModelGraph) throws(RuntimeError) {
        self.graph = graph
        let descriptor = graph.descriptor
        guard let spec = descriptor.compute else {
            throw .noCompute(family: descriptor.family, source: "formats/\(descriptor.family).json")
        }
        self.spec = spec
        if let problem = graph.problems.first(where: { !$0.isUnexpectedTensor }) {
            throw .modelInvalid(path: graph.model.path, problem: problem.description)
        }
        guard let config = graph.model.config?.json else { throw .modelInvalid(path: graph.model.path, problem: "no config.json") }
        for rule in spec.unsupported {
            guard let held = config[rule.key], !held.isNull else { continue }
            if let value = rule.value, held != value { continue }
            throw .unsupported(what: "models with '\(rule.key)': \(held.serialized(.compact)) (config.json)")
        }
        causal = descriptor.causal
        let b = graph.binding
        func size(_ axis: Axis) throws(RuntimeError) -> Int {
            guard let n = b.size(axis) else { throw .configInvalid(key: axis.rawValue, problem: "is not bound by the config") }
            return n
        }
        let layers = b.layerCount
        layerRuns = (0..<layers).map { [$0] }
        hidden = try size(.hidden)
        heads = try size(.heads)
        kvHeads = b.size(.kvHeads) ?? heads
        headDim = try size(.headDim)
        vocab = try size(.vocab)
        positions = b.size(.positions)
        guard kvHeads > 0, heads % kvHeads == 0 else {
            throw .configInvalid(key: "num_key_value_heads", problem: "(\(kvHeads)) does not divide the \(heads) attention heads")
        }

        norm = spec.norm.kind == .rms ? .rms : .layer
        guard let eps = spec.norm.epsilon.value(in: config) else {
            throw .configInvalid(key: spec.norm.epsilon.keys.first ?? "epsilon", problem: "is missing and the descriptor has no default")
        }
        epsilon = Float(eps)
        unitOffset = spec.norm.unitOffset
        let actName = spec.mlp.activation.value(in: config) ?? "silu"
        guard let activation = Activation(configName: actName) else {
            throw .unsupported(what: "the activation '\(actName)' (\(spec.mlp.activation.keys.joined(separator: "/")); pare runs silu, gelu, gelu_new, gelu_pytorch_tanh, gelu_fast and relu)")
        }
        self.activation = activation

        switch spec.positions {
        case .learned:
            rope = nil
        case .rope(let r):
            var params: [String: Double] = [:]
            var type = "default"
            var theta = r.theta.value(in: config)
            var partial = r.partialRotaryFactor.value(in: config) ?? 1
            if let key = r.parameters.first(where: { config[$0]?.objectMembers != nil }), let members = config[key]?.objectMembers {
                for (k, v) in members {
                    if let d = v.doubleValue { params[k] = d }
                }
                type = config[key]?["rope_type"]?.stringValue ?? config[key]?["type"]?.stringValue ?? "default"
                if let t = params["rope_theta"] { theta = t }
                if let p = params["partial_rotary_factor"] { partial = p }
            }
            guard let theta else { throw .configInvalid(key: "rope_theta", problem: "is missing and the descriptor has no default") }
            rope = try Rope(headDim: headDim, theta: theta, partialRotaryFactor: partial, type: type, parameters: params)
        }

        if let base = spec.attention.scaleBase, let v = base.value(in: config) {
            scale = Float(1 / v.squareRoot())
        } else {
            scale = Float(1 / Double(headDim).squareRoot())
        }
        attentionSoftcap = spec.attention.logitSoftcap?.value(in: config).map(Float.init)
        finalSoftcap = spec.finalLogitSoftcap?.value(in: config).map(Float.init)

        var windows = [Int?](repeating: nil, count: layers)
        if let w = spec.attention.slidingWindow, let size = w.size.value(in: config), size > 0,
           w.enabledBy?.value(in: config) ?? true {
            if let key = w.layerTypes, let types = config[key]?.arrayValue {
                guard types.count == layers else {
                    throw .configInvalid(key: key, problem: "lists \(types.count) layer types for \(layers) layers")
                }
                for (l, t) in types.enumerated() where t.stringValue == w.slidingType { windows[l] = size }
            } else {
                let first = w.firstLayer?.value(in: config) ?? 0
                for l in 0..<layers where l >= first { windows[l] = size }
            }
        }
        layerWindows = windows
        expertsPerToken = b.size(.expertsPerToken) ?? 0
        renormalize = spec.moe?.renormalize.value(in: config) ?? false
        if b.size(.experts) != nil && spec.moe != nil && !(1...(b.size(.experts) ?? 1)).contains(expertsPerToken) {
            throw .configInvalid(key: "num_experts_per_tok", problem: "is \(expertsPerToken), outside 1...\(b.size(.experts) ?? 0)")
        }
    }

    // MARK: Finding tensors

    /// The node of the first tensor with `role` in `layer` (and `expert`), if the checkpoint has one.
    public func node(_ role: Role, layer run: Int? = nil, expert: Int? = nil) -> ModelGraph.Node? {
        let layer = run.map { layerRuns[$0][0] }
        let candidates = layer.map { graph.nodesByLayer[$0] ?? [] } ?? graph.nodes
        return candidates.first { graph.descriptor.tensors[$0.template].role == role && $0.layer == layer && $0.expert == expert }
    }

    /// The node of a template (a norm module's weight or bias).
    public func node(template: Int, layer run: Int?) -> ModelGraph.Node? {
        let layer = run.map { layerRuns[$0][0] }
        return graph.node(template: template, layer: TensorTemplate(graph.descriptor.tensors[template].name).isPerLayer ? layer : nil, expert: nil)
    }

    /// This plan with runs of consecutive checkpoint layers collapsed into their first, the
    /// LaCo way (`runs` lists each run of two or more layers; the others stay as they are),
    /// so a merge can be measured without writing the model.
    public func collapsing(_ runs: [[Int]], mergeNorms: Bool = false) -> ForwardPlan {
        var copy = self
        let starts = Dictionary(runs.map { ($0[0], $0) }, uniquingKeysWith: { a, _ in a })
        let absorbed = Set(runs.flatMap { $0.dropFirst() })
        copy.layerRuns = (0..<graph.binding.layerCount).filter { !absorbed.contains($0) }.map { starts[$0] ?? [$0] }
        copy.mergesNorms = mergeNorms
        return copy
    }

    /// The tensors merged into `node` when its layer heads a collapsed run: the same tensor
    /// (and expert) of the run's other layers. Norms only when `mergesNorms`.
    public func mergeSources(of node: ModelGraph.Node) -> [ModelGraph.Node] {
        guard let layer = node.layer, let run = layerRuns.first(where: { $0[0] == layer }), run.count > 1 else { return [] }
        if graph.descriptor.tensors[node.template].role == .norm && !mergesNorms { return [] }
        return run.dropFirst().compactMap { graph.node(template: node.template, layer: $0, expert: node.expert) }
    }

    /// Whether a tensor is stored transposed (`[in, out]`, GPT-2's Conv1D).
    public func isTransposed(_ node: ModelGraph.Node) -> Bool { graph.descriptor.tensors[node.template].transposed }

    /// The concatenated segments of a fused tensor's output dimension (GPT-2's q|k|v).
    public func segments(of node: ModelGraph.Node) -> [Int]? {
        let spec = graph.descriptor.tensors[node.template]
        let outputDim = spec.transposed ? spec.shape.count - 1 : 0
        guard spec.shape.indices.contains(outputDim), case .concat(let parts) = spec.shape[outputDim] else { return nil }
        var sizes: [Int] = []
        for part in parts {
            guard let n = try? graph.binding.size(of: .expression(part)) else { return nil }
            sizes.append(n)
        }
        return sizes
    }

    /// Whether layer `layer` routes tokens to experts (it has a router).
    public func isMoE(layer: Int) -> Bool { node(.router, layer: layer) != nil }

    /// Experts in an MoE layer.
    public var experts: Int { graph.binding.size(.experts) ?? 0 }

    /// The tensor that maps final hidden states to logits: `lm_head`, or the token
    /// embedding when the head is tied (or the checkpoint has no head).
    public var headNode: ModelGraph.Node? { node(.lmHead) ?? node(.embedding) }
}
