import ModelGraph
import OrderedJSON

/// A fully resolved trim: every kept index of every pruned axis, by original layer index.
///
/// Keep lists are keyed by axis, layer and, for an axis chosen inside another, the kept
/// index of that outer axis (query heads inside kv head 2, channels inside expert 5). One
/// code path slices every tensor through these lists, whatever the axis.
///
/// This is what a trim records in its provenance file and what the reference surgery
/// (`tools/reference_trim.py`) replays, so the JSON form is a contract:
/// `{"version":1, "merge":[{"layers":[3,4,5],"norms":"first"}], "drop_layers":[...], "attention":{"<layer>":{"kv_heads":[...],
/// "query_heads":[[...]]}}, "ffn":{"<layer>":[...]}, "expert_ffn":{"<layer>":{"<expert>":[...]}},
/// "shared_expert_ffn":{"<layer>":[...]}, "experts":{"<layer>":[...]}, "hidden":[...]}`.
public struct TrimPlan: Sendable, Equatable {
    /// Where a keep list applies.
    public struct Key: Sendable, Hashable, Comparable {
        public var axis: Axis
        /// `nil` for an axis selected once for the model (`hidden`).
        public var layer: Int?
        /// The kept index of `axis.within` this list is chosen inside (a kv head, an expert).
        public var within: Int?

        public init(_ axis: Axis, layer: Int?, within: Int? = nil) {
            self.axis = axis
            self.layer = layer
            self.within = within
        }

        public static func < (a: Key, b: Key) -> Bool {
            (a.axis, a.layer ?? -1, a.within ?? -1) < (b.axis, b.layer ?? -1, b.within ?? -1)
        }
    }

    public struct Attention: Sendable, Equatable {
        /// Kept kv heads.
        public var kvHeads: [Int]
        /// For each kept kv head, the kept query heads inside its group (0..<group).
        public var queryHeads: [[Int]]

        public init(kvHeads: [Int], queryHeads: [[Int]]) {
            self.kvHeads = kvHeads
            self.queryHeads = queryHeads
        }
    }

    public struct Merge: Sendable, Equatable {
        /// Consecutive original layers; the first receives the merge, the rest are removed.
        public var layers: [Int]
        public var norms: TrimRequest.NormPolicy
    }

    public var merges: [Merge] = []
    public var dropLayers: [Int] = []
    /// Kept indices (ascending, original numbering) of every pruned axis.
    public var keep: [Key: [Int]] = [:]

    public init() {}

    /// Layers that are gone from the output: dropped, or merged into an earlier one.
    public var removedLayers: Set<Int> {
        Set(dropLayers).union(merges.flatMap { $0.layers.dropFirst() })
    }

    /// The kept indices of `axis` in `layer` (inside `within`), if the plan prunes it there.
    public func kept(_ axis: Axis, layer: Int?, within: Int? = nil) -> [Int]? {
        keep[Key(axis, layer: layer, within: within)]
    }

    /// Axes the plan selects on in `layer` (model-wide axes included).
    public func axes(in layer: Int?) -> Set<Axis> {
        Set(keep.keys.filter { $0.layer == nil || $0.layer == layer }.map(\.axis))
    }

    /// The kept indices of the axis `axis` is chosen within, in `layer` (every index when the
    /// plan keeps them all), or `[nil]` for an axis chosen on its own: the `within` of each
    /// of `axis`'s keep lists there.
    public func outerIndices(of axis: Axis, layer: Int?, binding: AxisBinding) -> [Int?] {
        guard let outer = axis.within else { return [nil] }
        return (kept(outer, layer: layer) ?? Array(0..<(binding.size(outer) ?? 0))).map { $0 }
    }

    /// Layers with a keep list for `axis`.
    public func layers(selecting axis: Axis) -> Set<Int> {
        Set(keep.keys.filter { $0.axis == axis }.compactMap(\.layer))
    }

    /// The plan without any keep list of `axes`.
    public func dropping(_ axes: Set<Axis>) -> TrimPlan {
        var plan = self
        plan.keep = keep.filter { !axes.contains($0.key.axis) }
        return plan
    }

    /// Removes every keep list of `axis` in `layer`.
    public mutating func clear(_ axis: Axis, layer: Int?) {
        for key in keep.keys where key.axis == axis && key.layer == layer { keep[key] = nil }
    }
}

// MARK: - The structures users name

extension TrimPlan {
    /// Per layer, the kept kv heads and the kept query heads inside each.
    public var attention: [Int: Attention] {
        get {
            var result: [Int: Attention] = [:]
            for layer in layers(selecting: .kvHeads) {
                let kv = kept(.kvHeads, layer: layer) ?? []
                result[layer] = Attention(kvHeads: kv, queryHeads: kv.map { kept(.group, layer: layer, within: $0) ?? [] })
            }
            return result
        }
        set {
            for layer in layers(selecting: .kvHeads).union(layers(selecting: .group)) {
                clear(.kvHeads, layer: layer)
                clear(.group, layer: layer)
            }
            for (layer, attention) in newValue {
                keep[Key(.kvHeads, layer: layer)] = attention.kvHeads
                for (k, query) in zip(attention.kvHeads, attention.queryHeads) { keep[Key(.group, layer: layer, within: k)] = query }
            }
        }
    }

    public var ffn: [Int: [Int]] {
        get { byLayer(.ffn) }
        set { setByLayer(.ffn, newValue) }
    }

    public var sharedExpertFFN: [Int: [Int]] {
        get { byLayer(.sharedExpertFFN) }
        set { setByLayer(.sharedExpertFFN, newValue) }
    }

    public var experts: [Int: [Int]] {
        get { byLayer(.experts) }
        set { setByLayer(.experts, newValue) }
    }

    /// Per layer, per kept expert (original index), its kept channels.
    public var expertFFN: [Int: [Int: [Int]]] {
        get {
            var result: [Int: [Int: [Int]]] = [:]
            for (key, kept) in keep where key.axis == .expertFFN {
                if let layer = key.layer, let expert = key.within { result[layer, default: [:]][expert] = kept }
            }
            return result
        }
        set {
            for key in keep.keys where key.axis == .expertFFN { keep[key] = nil }
            for (layer, byExpert) in newValue {
                for (expert, kept) in byExpert { keep[Key(.expertFFN, layer: layer, within: expert)] = kept }
            }
        }
    }

    /// Kept hidden channels, for the whole model.
    public var hidden: [Int]? {
        get { kept(.hidden, layer: nil) }
        set { keep[Key(.hidden, layer: nil)] = newValue }
    }

    private func byLayer(_ axis: Axis) -> [Int: [Int]] {
        var result: [Int: [Int]] = [:]
        for (key, kept) in keep where key.axis == axis && key.within == nil {
            if let layer = key.layer { result[layer] = kept }
        }
        return result
    }

    private mutating func setByLayer(_ axis: Axis, _ lists: [Int: [Int]]) {
        for key in keep.keys where key.axis == axis { keep[key] = nil }
        for (layer, kept) in lists { keep[Key(axis, layer: layer)] = kept }
    }
}

// MARK: - JSON

extension TrimPlan {
    /// Axes in the order the JSON form lists them after `attention` (kv heads with the
    /// query heads inside them, as pare-trim.json has always written them); every other
    /// prunable axis follows, under its own name.
    static var jsonAxes: [Axis] {
        let legacy: [Axis] = [.ffn, .expertFFN, .sharedExpertFFN, .experts]
        return legacy + Axis.prunable.filter { !legacy.contains($0) && $0 != .kvHeads && $0 != .group }
    }

    public var json: JSONValue {
        func list(_ values: [Int]) -> JSONValue { .array(values.map { .integer($0) }) }
        func byIndex<T>(_ map: [Int: T], _ render: (T) -> JSONValue) -> JSONValue {
            .object(map.keys.sorted().map { (String($0), render(map[$0]!)) })
        }
        var members: [(key: String, value: JSONValue)] = [("version", .integer(1))]
        if !merges.isEmpty {
            members.append(("merge", .array(merges.map { merge in
                .object([("layers", list(merge.layers)), ("norms", .string(merge.norms.rawValue))])
            })))
        }
        if !dropLayers.isEmpty { members.append(("drop_layers", list(dropLayers))) }
        let attention = self.attention
        if !attention.isEmpty {
            members.append(("attention", byIndex(attention) { a in
                .object([("kv_heads", list(a.kvHeads)), ("query_heads", .array(a.queryHeads.map(list)))])
            }))
        }
        for axis in Self.jsonAxes {
            let keys = keep.keys.filter { $0.axis == axis }
            guard !keys.isEmpty else { continue }
            let value: JSONValue
            if axis.scope == .model {
                value = list(keep[Key(axis, layer: nil)] ?? [])
            } else if axis.within != nil {
                var nested: [Int: [Int: [Int]]] = [:]
                for key in keys { if let layer = key.layer, let w = key.within { nested[layer, default: [:]][w] = keep[key] } }
                value = byIndex(nested) { byIndex($0, list) }
            } else {
                var lists: [Int: [Int]] = [:]
                for key in keys { if let layer = key.layer { lists[layer] = keep[key] } }
                value = byIndex(lists, list)
            }
            members.append((axis.rawValue, value))
        }
        return .object(members)
    }

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
        func byIndex(_ value: JSONValue, _ key: String) throws(RecipeError) -> [(Int, JSONValue)] {
            guard let members = value.objectMembers else { throw fail(key, "must map layer indices to keep lists") }
            var result: [(Int, JSONValue)] = []
            for (index, item) in members {
                guard let n = Int(index), n >= 0 else { throw fail(key, "has key '\(index)', not an index") }
                result.append((n, item))
            }
            return result
        }
        guard let members = json.objectMembers else { throw fail("", "must be a mapping") }
        let axes = Dictionary(uniqueKeysWithValues: Self.jsonAxes.map { ($0.rawValue, $0) })
        let known = ["version", "merge", "drop_layers", "attention"] + Self.jsonAxes.map(\.rawValue)
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
                var lists: [Int: Attention] = [:]
                for (layer, item) in try byIndex(value, key) {
                    let kv = try ints(item["kv_heads"], "attention.\(layer).kv_heads")
                    guard let groups = item["query_heads"]?.arrayValue else { throw fail("attention.\(layer).query_heads", "must be a list of lists") }
                    var query: [[Int]] = []
                    for group in groups { query.append(try ints(group, "attention.\(layer).query_heads")) }
                    guard query.count == kv.count else {
                        throw fail("attention.\(layer).query_heads", "must hold one list per kept kv head (\(kv.count))")
                    }
                    lists[layer] = .init(kvHeads: kv, queryHeads: query)
                }
                attention = lists
            case _ where axes[key] != nil:
                let axis = axes[key]!
                if axis.scope == .model {
                    keep[Key(axis, layer: nil)] = try ints(value, key)
                } else {
                    for (layer, item) in try byIndex(value, key) {
                        if axis.within != nil {
                            for (w, list) in try byIndex(item, "\(key).\(layer)") {
                                keep[Key(axis, layer: layer, within: w)] = try ints(list, "\(key).\(layer).\(w)")
                            }
                        } else {
                            keep[Key(axis, layer: layer)] = try ints(item, "\(key).\(layer)")
                        }
                    }
                }
            default:
                throw fail(key, "unknown key (known: \(known.joined(separator: ", ")))")
            }
        }
    }
}
