import OrderedJSON
import SafeTensors
import Tensors

/// What `pare inspect` reports: architecture sizes from the config, counts from the weights.
public struct ModelSummary: Sendable {
    /// Config keys that hold each size, in the order they are tried. Families name the same
    /// size differently (GPT-2's `n_layer`, T5's `d_model`); this table is data so that a
    /// new spelling is a line here, not a branch in code.
    public static let configKeys: [(field: String, keys: [String])] = [
        ("layers", ["num_hidden_layers", "n_layer", "num_layers", "n_layers"]),
        ("hidden_size", ["hidden_size", "n_embd", "d_model", "dim"]),
        ("attention_heads", ["num_attention_heads", "n_head", "num_heads", "n_heads"]),
        ("kv_heads", ["num_key_value_heads", "num_kv_heads", "n_head_kv", "multi_query_group_num"]),
        ("head_dim", ["head_dim"]),
        ("intermediate_size", ["intermediate_size", "n_inner", "ffn_dim", "d_ff"]),
        ("moe_intermediate_size", ["moe_intermediate_size"]),
        ("shared_expert_intermediate_size", ["shared_expert_intermediate_size"]),
        ("experts", ["num_local_experts", "num_experts", "n_routed_experts"]),
        ("experts_per_token", ["num_experts_per_tok", "num_experts_per_token", "moe_top_k"]),
        ("vocab_size", ["vocab_size"]),
    ]

    public struct DTypeTotals: Sendable {
        public var tensors = 0
        public var parameters: UInt64 = 0
        public var bytes: UInt64 = 0
    }

    public struct ShardTotals: Sendable {
        public var file: String
        public var tensors: Int
        public var bytes: Int
    }

    public var path: String
    public var modelType: String?
    public var architectures: [String]?
    /// Sizes by field name (see `configKeys`), `nil` where the config does not say.
    public var sizes: [String: Int?]
    public var tieWordEmbeddings: Bool?
    public var parameters: UInt64
    public var bytes: UInt64
    public var dtypes: [(dtype: DType, totals: DTypeTotals)]
    public var shards: [ShardTotals]
    /// Subfolders with weights of other modules, not read (see `ModelFolder.extraModules`).
    public var extraModules: [String]
    public var tensors: [ModelFolder.Tensor]
    public var shardNames: [String]
    /// The weight files' format.
    public var format: WeightFormat
    /// For `.pare` files: each tensor's encoding and stored bytes, by name.
    public var storage: [String: (encoding: String, storedBytes: UInt64)]

    public init(_ model: ModelFolder) {
        path = model.path
        let json = Self.textConfig(model.config?.json)
        // The model's own type (e.g. "llava"), even when sizes come from its text_config.
        modelType = model.config?.json["model_type"]?.stringValue ?? json?["model_type"]?.stringValue
        architectures = model.config?.json["architectures"]?.arrayValue?.compactMap(\.stringValue)
        var sizes: [String: Int?] = [:]
        for (field, keys) in Self.configKeys {
            var found: Int?
            for key in keys {
                if let value = json?[key]?.intValue {
                    found = value
                    break
                }
            }
            sizes[field] = .some(found)
        }
        if let json {
            // The defaults every HF config shares: kv heads = heads (no GQA), head_dim =
            // hidden / heads. Family-specific ones (GPT-2's n_inner = 4 × hidden) come from
            // the architecture descriptors, see `filling(from:)`.
            if sizes["kv_heads"]! == nil { sizes["kv_heads"] = sizes["attention_heads"]! }
            if sizes["head_dim"]! == nil, let hidden = sizes["hidden_size"]!, let heads = sizes["attention_heads"]!, heads > 0 {
                sizes["head_dim"] = hidden / heads
            }
            tieWordEmbeddings = json["tie_word_embeddings"]?.boolValue ?? model.config?.json["tie_word_embeddings"]?.boolValue
        }
        self.sizes = sizes

        var byDType: [DType: DTypeTotals] = [:]
        var order: [DType] = []
        for tensor in model.tensors {
            if byDType[tensor.info.dtype] == nil { order.append(tensor.info.dtype) }
            byDType[tensor.info.dtype, default: .init()].tensors += 1
            byDType[tensor.info.dtype]!.parameters += tensor.info.elementCount
            byDType[tensor.info.dtype]!.bytes += tensor.info.byteCount
        }
        dtypes = order.map { ($0, byDType[$0]!) }
        parameters = model.parameterCount
        bytes = model.tensorBytes
        shards = model.shards.enumerated().map { i, shard in
            ShardTotals(file: PathName.lastComponent(model.shardNames[i]), tensors: shard.tensors.count, bytes: shard.fileSize)
        }
        tensors = model.tensors
        extraModules = model.extraModules
        shardNames = model.shardNames.map(PathName.lastComponent)
        format = model.format
        var storage: [String: (encoding: String, storedBytes: UInt64)] = [:]
        for case .pare(let file, _) in model.shards {
            for tensor in file.tensors { storage[tensor.name] = (tensor.encoding.name, tensor.storedBytes) }
        }
        self.storage = storage
    }

    /// Bytes of all weight files on disk.
    public var fileBytes: Int { shards.reduce(0) { $0 + $1.bytes } }

    /// The summary with the sizes its config leaves to defaults filled in from `axes`:
    /// an axis size (as an architecture descriptor binds it) fills a field when the axis is
    /// read from one of the field's config keys.
    public func filling(from axes: [String: (keys: [String], size: Int)]) -> ModelSummary {
        var copy = self
        for (field, keys) in Self.configKeys where (copy.sizes[field] ?? nil) == nil {
            if let axis = axes.values.first(where: { !Set($0.keys).isDisjoint(with: keys) }) {
                copy.sizes[field] = .some(axis.size)
            }
        }
        return copy
    }

    /// Multimodal configs keep the language model's sizes in `text_config`.
    private static func textConfig(_ json: JSONValue?) -> JSONValue? {
        guard let json else { return nil }
        if json["num_hidden_layers"] == nil && json["n_layer"] == nil, let text = json["text_config"], text.objectMembers != nil {
            return text
        }
        return json
    }

    /// The `--json` form. Field names are stable: scripts depend on them.
    public func json(includeTensors: Bool) -> JSONValue {
        func optionalInt(_ v: Int??) -> JSONValue { (v ?? nil).map { .integer($0) } ?? .null }
        var members: [(key: String, value: JSONValue)] = [
            ("path", .string(path)),
            ("format", .string(format.rawValue)),
            ("model_type", modelType.map { .string($0) } ?? .null),
            ("architectures", architectures.map { .array($0.map { .string($0) }) } ?? .null),
        ]
        for (field, _) in Self.configKeys { members.append((field, optionalInt(sizes[field]))) }
        members.append(("tie_word_embeddings", tieWordEmbeddings.map { .bool($0) } ?? .null))
        members.append(("parameters", .integer(parameters)))
        members.append(("bytes", .integer(bytes)))
        members.append(("file_bytes", .integer(fileBytes)))
        members.append(("dtypes", .object(dtypes.map { dtype, totals in
            (dtype.name, .object([
                ("tensors", .integer(totals.tensors)),
                ("parameters", .integer(totals.parameters)),
                ("bytes", .integer(totals.bytes)),
            ]))
        })))
        members.append(("shards", .array(shards.map { shard in
            .object([("file", .string(shard.file)), ("tensors", .integer(shard.tensors)), ("bytes", .integer(shard.bytes))])
        })))
        if !extraModules.isEmpty { members.append(("extra_modules", .array(extraModules.map { .string($0) }))) }
        if includeTensors {
            members.append(("tensors", .array(tensors.map { tensor in
                var fields: [(key: String, value: JSONValue)] = [
                    ("name", .string(tensor.info.name)),
                    ("dtype", .string(tensor.info.dtype.name)),
                    ("shape", .array(tensor.info.shape.map { .integer($0) })),
                    ("file", .string(shardNames[tensor.shard])),
                ]
                if let stored = storage[tensor.info.name] {
                    fields += [("encoding", .string(stored.encoding)), ("stored_bytes", .integer(stored.storedBytes))]
                }
                return .object(fields)
            })))
        }
        return .object(members)
    }
}
