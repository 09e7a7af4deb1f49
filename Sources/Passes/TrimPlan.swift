import OrderedJSON

/// A fully resolved trim: every kept index, by original layer (and expert) index.
///
/// This is what a trim records in its provenance file and what the reference surgery
/// (`tools/reference_trim.py`) replays, so the JSON form is a contract:
/// `{"version":1, "merge":[{"layers":[3,4,5],"norms":"first"}], "drop_layers":[...], "attention":{"<layer>":{"kv_heads":[...],
/// "query_heads":[[...]]}}, "ffn":{"<layer>":[...]}, "expert_ffn":{"<layer>":{"<expert>":[...]}},
/// "shared_expert_ffn":{"<layer>":[...]}, "experts":{"<layer>":[...]}}`.
public struct TrimPlan: Sendable, Equatable {
    public struct Attention: Sendable, Equatable {
        /// Kept kv heads.
        public var kvHeads: [Int]
        /// For each kept kv head, the kept query heads inside its group (0..<group).
        public var queryHeads: [[Int]]
    }

    public struct Merge: Sendable, Equatable {
        /// Consecutive original layers; the first receives the merge, the rest are removed.
        public var layers: [Int]
        public var norms: TrimRequest.NormPolicy
    }

    public var merges: [Merge] = []
    public var dropLayers: [Int] = []
    public var attention: [Int: Attention] = [:]
    public var ffn: [Int: [Int]] = [:]
    public var expertFFN: [Int: [Int: [Int]]] = [:]
    public var sharedExpertFFN: [Int: [Int]] = [:]
    public var experts: [Int: [Int]] = [:]

    public init() {}

    /// Layers that are gone from the output: dropped, or merged into an earlier one.
    public var removedLayers: Set<Int> {
        Set(dropLayers).union(merges.flatMap { $0.layers.dropFirst() })
    }

    public var json: JSONValue {
        func list(_ values: [Int]) -> JSONValue { .array(values.map { .integer($0) }) }
        func byLayer<T>(_ map: [Int: T], _ render: (T) -> JSONValue) -> JSONValue {
            .object(map.keys.sorted().map { (String($0), render(map[$0]!)) })
        }
        var members: [(key: String, value: JSONValue)] = [("version", .integer(1))]
        if !merges.isEmpty {
            members.append(("merge", .array(merges.map { merge in
                .object([("layers", list(merge.layers)), ("norms", .string(merge.norms.rawValue))])
            })))
        }
        if !dropLayers.isEmpty { members.append(("drop_layers", list(dropLayers))) }
        if !attention.isEmpty {
            members.append(("attention", byLayer(attention) { a in
                .object([("kv_heads", list(a.kvHeads)), ("query_heads", .array(a.queryHeads.map(list)))])
            }))
        }
        if !ffn.isEmpty { members.append(("ffn", byLayer(ffn, list))) }
        if !expertFFN.isEmpty { members.append(("expert_ffn", byLayer(expertFFN) { byLayer($0, list) })) }
        if !sharedExpertFFN.isEmpty { members.append(("shared_expert_ffn", byLayer(sharedExpertFFN, list))) }
        if !experts.isEmpty { members.append(("experts", byLayer(experts, list))) }
        return .object(members)
    }
}
