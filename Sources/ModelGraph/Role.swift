/// What a tensor is, in a closed vocabulary: passes decide by role, never by name.
///
/// `sparsify` prunes the linear weights (`isLinearWeight`), a LaCo merge keeps the first
/// layer's `norm` weights unless asked to merge them, compressed-tensors decompresses the
/// roles that are `nn.Linear` modules, and a `buffer` is copied as it is. A descriptor
/// with a role outside this list is refused, naming the file and the tensor.
public enum Role: String, Sendable, Hashable, CaseIterable {
    case embedding
    case positionEmbedding = "embedding.position"
    case tokenTypeEmbedding = "embedding.token_type"
    case lmHead = "lm_head"
    case lmHeadBias = "lm_head.bias"
    case norm
    case query = "attention.query"
    case key = "attention.key"
    case value = "attention.value"
    case output = "attention.output"
    /// GPT-2's fused q|k|v.
    case qkv = "attention.qkv"
    case queryBias = "attention.query.bias"
    case keyBias = "attention.key.bias"
    case valueBias = "attention.value.bias"
    case outputBias = "attention.output.bias"
    case qkvBias = "attention.qkv.bias"
    case gate = "mlp.gate"
    case up = "mlp.up"
    case down = "mlp.down"
    /// A fused gate|up projection (the halves laid end to end on the output dimension).
    case gateUp = "mlp.gate_up"
    case gateBias = "mlp.gate.bias"
    case upBias = "mlp.up.bias"
    case downBias = "mlp.down.bias"
    /// An MoE layer's router (one row per expert).
    case router
    case expertGate = "expert.gate"
    case expertUp = "expert.up"
    case expertDown = "expert.down"
    /// Each expert's fused gate|up projection.
    case expertGateUp = "expert.gate_up"
    case sharedExpertGate = "shared_expert.gate"
    case sharedExpertUp = "shared_expert.up"
    case sharedExpertDown = "shared_expert.down"
    /// Qwen2-MoE's scalar gate on the shared expert's output.
    case sharedExpertRouter = "shared_expert.router"
    /// BERT's pooler dense layer.
    case pooler
    /// A task head on top of the encoder (BERT's masked-LM transform).
    case head
    /// A constant the class registers (GPT-2's causal mask): not a weight.
    case buffer

    /// The weights of linear layers inside the blocks: what N:M sparsity prunes by default.
    public var isLinearWeight: Bool {
        switch self {
        case .query, .key, .value, .output, .qkv, .gate, .up, .down, .gateUp, .expertGate, .expertUp, .expertDown, .expertGateUp,
            .sharedExpertGate, .sharedExpertUp, .sharedExpertDown:
            return true
        default:
            return false
        }
    }

    /// Every role whose tensor is the weight of an `nn.Linear` module (what
    /// compressed-tensors can decompress, and must otherwise be told to ignore).
    public var isLinearModule: Bool {
        switch self {
        case .router, .sharedExpertRouter, .lmHead, .head, .pooler: return true
        default: return isLinearWeight
        }
    }
}
