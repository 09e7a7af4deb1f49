import OrderedJSON

/// Reads a descriptor's `compute` section (schema version 3), checking every key.
extension DescriptorReader {
    /// Activations the executor implements, by the names `hidden_act` uses.
    static let activations = ["silu", "swish", "gelu", "gelu_new", "gelu_pytorch_tanh", "gelu_fast", "relu"]

    func compute(_ value: JSONValue, tensors: [ArchitectureDescriptor.Tensor]) throws(GraphError) -> ComputeSpec {
        let key = "compute"
        let fields = try members(value, key, allowed: [
            "norm", "positions", "rope", "embedding", "attention_branch", "mlp_branch", "attention", "mlp", "moe", "final_norm",
            "final_logit_softcap", "unsupported",
        ])
        func field(_ f: String) -> JSONValue? { fields.first { $0.key == f }?.value }

        func module(_ v: JSONValue?, _ k: String) throws(GraphError) -> ComputeSpec.NormModule? {
            guard let v else { return nil }
            let name = try string(v, k)
            guard let weight = tensors.firstIndex(where: { $0.name == name + ".weight" }) else {
                throw fail(k, "names module '\(name)', but the descriptor has no tensor '\(name).weight'")
            }
            guard tensors[weight].role == .norm else {
                throw fail(k, "names module '\(name)', whose weight has role '\(tensors[weight].role.rawValue)', not 'norm'")
            }
            return .init(module: name, weight: weight, bias: tensors.firstIndex { $0.name == name + ".bias" })
        }

        // norm
        guard let normValue = field("norm") else { throw fail("\(key).norm", "is missing (every family normalises)") }
        let normFields = try members(normValue, "\(key).norm", allowed: ["kind", "epsilon", "unit_offset"])
        func normField(_ f: String) -> JSONValue? { normFields.first { $0.key == f }?.value }
        let kindText = try string(normField("kind"), "\(key).norm.kind")
        guard let kind = ComputeSpec.NormKind(rawValue: kindText) else {
            throw fail("\(key).norm.kind", "is '\(kindText)' (known: \(ComputeSpec.NormKind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        guard let epsilonValue = normField("epsilon") else { throw fail("\(key).norm.epsilon", "is missing") }
        let norm = ComputeSpec.Norm(
            kind: kind, epsilon: try number(epsilonValue, "\(key).norm.epsilon"),
            unitOffset: try normField("unit_offset").map { v throws(GraphError) in try bool(v, "\(key).norm.unit_offset") } ?? false)

        // positions
        let positionsText = try string(field("positions"), "\(key).positions")
        let positions: ComputeSpec.Positions
        switch positionsText {
        case "rope":
            var rope = ComputeSpec.Rope(
                theta: .init(keys: ["rope_theta"], default: 10000), parameters: ["rope_parameters", "rope_scaling"],
                partialRotaryFactor: .init(keys: ["partial_rotary_factor"], default: 1))
            if let ropeValue = field("rope") {
                let rf = try members(ropeValue, "\(key).rope", allowed: ["theta", "parameters", "partial_rotary_factor"])
                for (name, v) in rf {
                    switch name {
                    case "theta": rope.theta = try number(v, "\(key).rope.theta")
                    case "parameters": rope.parameters = try strings(v, "\(key).rope.parameters")
                    default: rope.partialRotaryFactor = try number(v, "\(key).rope.partial_rotary_factor")
                    }
                }
            }
            positions = .rope(rope)
        case "learned":
            guard field("rope") == nil else { throw fail("\(key).rope", "is set, but positions are 'learned'") }
            guard tensors.contains(where: { $0.role == .positionEmbedding }) else {
                throw fail("\(key).positions", "is 'learned', but no tensor has role 'embedding.position'")
            }
            positions = .learned
        default:
            throw fail("\(key).positions", "is '\(positionsText)' (known: rope, learned)")
        }

        // embedding
        var embedding = ComputeSpec.Embedding(scaleBySqrtHidden: false, norm: nil)
        if let v = field("embedding") {
            let ef = try members(v, "\(key).embedding", allowed: ["scale", "norm"])
            for (name, v) in ef {
                if name == "norm" {
                    embedding.norm = try module(v, "\(key).embedding.norm")
                } else {
                    let text = try string(v, "\(key).embedding.scale")
                    guard text == "sqrt_hidden" else { throw fail("\(key).embedding.scale", "is '\(text)' (known: sqrt_hidden)") }
                    embedding.scaleBySqrtHidden = true
                }
            }
        }

        func branch(_ name: String) throws(GraphError) -> ComputeSpec.Branch {
            let k = "\(key).\(name)"
            guard let v = field(name) else { throw fail(k, "is missing (say which norms the branch has: norm_in, norm_out, norm_sum)") }
            let bf = try members(v, k, allowed: ["norm_in", "norm_out", "norm_sum"])
            func f(_ n: String) -> JSONValue? { bf.first { $0.key == n }?.value }
            return .init(normIn: try module(f("norm_in"), "\(k).norm_in"), normOut: try module(f("norm_out"), "\(k).norm_out"),
                         normSum: try module(f("norm_sum"), "\(k).norm_sum"))
        }
        let attentionBranch = try branch("attention_branch")
        let mlpBranch = try branch("mlp_branch")

        // attention
        var attention = ComputeSpec.Attention(scaleBase: nil, qkNorm: nil, logitSoftcap: nil, slidingWindow: nil)
        if let v = field("attention") {
            let af = try members(v, "\(key).attention", allowed: ["scale_base", "qk_norm", "logit_softcap", "sliding_window"])
            for (name, v) in af {
                let k = "\(key).attention.\(name)"
                switch name {
                case "scale_base": attention.scaleBase = try number(v, k)
                case "logit_softcap": attention.logitSoftcap = try number(v, k)
                case "qk_norm":
                    let qf = try members(v, k, allowed: ["query", "key", "over"])
                    func f(_ n: String) -> JSONValue? { qf.first { $0.key == n }?.value }
                    guard let q = try module(f("query"), "\(k).query"), let kk = try module(f("key"), "\(k).key") else {
                        throw fail(k, "needs both 'query' and 'key'")
                    }
                    let overText = try string(f("over"), "\(k).over")
                    guard let over = ComputeSpec.QKNormScope(rawValue: overText) else {
                        throw fail("\(k).over", "is '\(overText)' (known: head, width)")
                    }
                    attention.qkNorm = .init(query: q, key: kk, over: over)
                default:
                    let sf = try members(v, k, allowed: ["size", "enabled_by", "layer_types", "sliding_type", "first_layer"])
                    func f(_ n: String) -> JSONValue? { sf.first { $0.key == n }?.value }
                    guard let size = f("size") else { throw fail("\(k).size", "is missing") }
                    attention.slidingWindow = .init(
                        size: try integer(size, "\(k).size"),
                        enabledBy: try f("enabled_by").map { v throws(GraphError) in try switchValue(v, "\(k).enabled_by") },
                        layerTypes: try f("layer_types").map { v throws(GraphError) in try string(v, "\(k).layer_types") },
                        slidingType: try f("sliding_type").map { v throws(GraphError) in try string(v, "\(k).sliding_type") }
                            ?? "sliding_attention",
                        firstLayer: try f("first_layer").map { v throws(GraphError) in try integer(v, "\(k).first_layer") })
                }
            }
        }

        // mlp
        guard let mlpValue = field("mlp") else { throw fail("\(key).mlp", "is missing") }
        let mf = try members(mlpValue, "\(key).mlp", allowed: ["gated", "activation"])
        func mlpField(_ f: String) -> JSONValue? { mf.first { $0.key == f }?.value }
        let activation = try text(mlpField("activation"), "\(key).mlp.activation")
        if let d = activation.default, !Self.activations.contains(d) {
            throw fail("\(key).mlp.activation", "defaults to '\(d)', which the executor does not implement (known: \(Self.activations.joined(separator: ", ")))")
        }
        let mlp = ComputeSpec.MLP(gated: try bool(mlpField("gated"), "\(key).mlp.gated"), activation: activation)
        if mlp.gated && !tensors.contains(where: { $0.role == .gate || $0.role == .gateUp || $0.role == .expertGate || $0.role == .expertGateUp }) {
            throw fail("\(key).mlp.gated", "is true, but no tensor has a gate role")
        }

        // moe
        var moe: ComputeSpec.MoE?
        if let v = field("moe") {
            let of = try members(v, "\(key).moe", allowed: ["renormalize"])
            guard let r = of.first?.value else { throw fail("\(key).moe.renormalize", "is missing") }
            moe = .init(renormalize: try switchValue(r, "\(key).moe.renormalize"), gated: mlp.gated)
            guard tensors.contains(where: { $0.role == .router }) else { throw fail("\(key).moe", "is set, but no tensor has role 'router'") }
        } else if tensors.contains(where: { $0.role == .router }) {
            throw fail("\(key).moe", "is missing, but the family has a router (say how routing weights are renormalised)")
        }

        var unsupported: [ComputeSpec.Unsupported] = []
        if let v = field("unsupported") {
            guard let items = v.arrayValue else { throw fail("\(key).unsupported", "must be a list") }
            for (i, item) in items.enumerated() {
                let k = "\(key).unsupported[\(i)]"
                let uf = try members(item, k, allowed: ["key", "value"])
                unsupported.append(.init(key: try string(uf.first { $0.key == "key" }?.value, "\(k).key"),
                                         value: uf.first { $0.key == "value" }?.value))
            }
        }

        return ComputeSpec(
            norm: norm, positions: positions, embedding: embedding, attentionBranch: attentionBranch, mlpBranch: mlpBranch,
            attention: attention, mlp: mlp, moe: moe, finalNorm: try module(field("final_norm"), "\(key).final_norm"),
            finalLogitSoftcap: try field("final_logit_softcap").map { v throws(GraphError) in try number(v, "\(key).final_logit_softcap") },
            unsupported: unsupported)
    }

    /// `{"keys": [...], "default": D}` or a bare literal (a constant).
    private func configObject(_ v: JSONValue, _ k: String) throws(GraphError) -> (keys: [String], default: JSONValue?)? {
        guard v.objectMembers != nil else { return nil }
        let f = try members(v, k, allowed: ["keys", "default"])
        guard let keys = f.first(where: { $0.key == "keys" })?.value else { throw fail("\(k).keys", "is missing") }
        let list = try strings(keys, "\(k).keys")
        guard !list.isEmpty else { throw fail("\(k).keys", "must name at least one config key") }
        return (list, f.first { $0.key == "default" }?.value)
    }

    func number(_ v: JSONValue, _ k: String) throws(GraphError) -> ComputeSpec.ConfigValue<Double> {
        if let (keys, d) = try configObject(v, k) {
            guard let d else { return .init(keys: keys) }
            guard let n = d.doubleValue else { throw fail("\(k).default", "must be a number") }
            return .init(keys: keys, default: n)
        }
        guard let n = v.doubleValue else { throw fail(k, "must be a number or {\"keys\": [...], \"default\": number}") }
        return .init(default: n)
    }

    func integer(_ v: JSONValue, _ k: String) throws(GraphError) -> ComputeSpec.ConfigValue<Int> {
        if let (keys, d) = try configObject(v, k) {
            guard let d, !d.isNull else { return .init(keys: keys) }
            guard let n = d.intValue else { throw fail("\(k).default", "must be an integer") }
            return .init(keys: keys, default: n)
        }
        guard let n = v.intValue else { throw fail(k, "must be an integer or {\"keys\": [...], \"default\": integer}") }
        return .init(default: n)
    }

    func switchValue(_ v: JSONValue, _ k: String) throws(GraphError) -> ComputeSpec.ConfigValue<Bool> {
        if let (keys, d) = try configObject(v, k) {
            guard let d else { return .init(keys: keys) }
            return .init(keys: keys, default: try bool(d, "\(k).default"))
        }
        return .init(default: try bool(v, k))
    }

    func text(_ v: JSONValue?, _ k: String) throws(GraphError) -> ComputeSpec.ConfigValue<String> {
        guard let v else { throw fail(k, "is missing") }
        if let (keys, d) = try configObject(v, k) {
            guard let d else { return .init(keys: keys) }
            return .init(keys: keys, default: try string(d, "\(k).default"))
        }
        return .init(default: try string(v, k))
    }
}
