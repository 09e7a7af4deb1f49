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

extension TrimPlan {
    /// Reads the JSON form (as in `pare-trim.json`'s `plan`).
    public init(json: JSONValue, source: String) throws(RecipeError) {
        self.init()
        func fail(_ key: String, _ problem: String) -> RecipeError { .invalid(path: source, key: "plan.\(key)", problem: problem) }
        func ints(_ value: JSONValue?, _ key: String) throws(RecipeError) -> [Int] {
            guard let items = value?.arrayValue else { throw fail(key, "must be a list of indices") }
            var result: [Int] = []
            for item in items {
                guard let n = item.intValue, n >= 0 else { throw fail(key, "holds \(item.serialized()), not an index") }
                result.append(n)
            }
            return result
        }
        func byLayer(_ value: JSONValue, _ key: String) throws(RecipeError) -> [(Int, JSONValue)] {
            guard let members = value.objectMembers else { throw fail(key, "must map layer indices to keep lists") }
            var result: [(Int, JSONValue)] = []
            for (layer, item) in members {
                guard let n = Int(layer), n >= 0 else { throw fail(key, "has key '\(layer)', not a layer index") }
                result.append((n, item))
            }
            return result
        }
        guard let members = json.objectMembers else { throw fail("", "must be a mapping") }
        for (key, value) in members {
            switch key {
            case "version":
                guard value.intValue == 1 else { throw fail(key, "must be 1") }
            case "drop_layers": dropLayers = try ints(value, key)
            case "merge":
                guard let runs = value.arrayValue else { throw fail(key, "must be a list of {layers, norms}") }
                for run in runs {
                    let layers = try ints(run["layers"], "merge.layers")
                    let norms = run["norms"]?.stringValue.flatMap(TrimRequest.NormPolicy.init(rawValue:)) ?? .first
                    merges.append(.init(layers: layers, norms: norms))
                }
            case "attention":
                for (layer, item) in try byLayer(value, key) {
                    let kv = try ints(item["kv_heads"], "attention.\(layer).kv_heads")
                    guard let groups = item["query_heads"]?.arrayValue else { throw fail("attention.\(layer).query_heads", "must be a list of lists") }
                    var query: [[Int]] = []
                    for group in groups { query.append(try ints(group, "attention.\(layer).query_heads")) }
                    attention[layer] = .init(kvHeads: kv, queryHeads: query)
                }
            case "ffn":
                for (layer, item) in try byLayer(value, key) { ffn[layer] = try ints(item, "ffn.\(layer)") }
            case "shared_expert_ffn":
                for (layer, item) in try byLayer(value, key) { sharedExpertFFN[layer] = try ints(item, "shared_expert_ffn.\(layer)") }
            case "experts":
                for (layer, item) in try byLayer(value, key) { experts[layer] = try ints(item, "experts.\(layer)") }
            case "expert_ffn":
                for (layer, item) in try byLayer(value, key) {
                    var byExpert: [Int: [Int]] = [:]
                    for (expert, list) in try byLayer(item, "expert_ffn.\(layer)") { byExpert[expert] = try ints(list, "expert_ffn.\(layer).\(expert)") }
                    expertFFN[layer] = byExpert
                }
            default:
                throw fail(key, "unknown key (known: version, merge, drop_layers, attention, ffn, expert_ffn, shared_expert_ffn, experts)")
            }
        }
    }
}
