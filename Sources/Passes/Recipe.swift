import OrderedJSON
import ModelGraph
import Tensors
import Yams

/// A trim written down to be committed and rerun: the request (counts, ratios, layers) and,
/// optionally, explicit keep lists that override scoring for the layers they name.
///
/// YAML or JSON (JSON is YAML). Keys: `drop_layers` (`[3, 20, 21]` or `"3,20-23"`),
/// `merge_layers` (`[[20, 21, 22, 23]]` or `"20-23"`), `merge_norms` (`first`|`merge`),
/// `kv_heads`, `heads`, `experts` (counts), `ffn`, `expert_ffn`, `shared_expert_ffn`, `hidden`
/// (counts or fractions), `sparsify` (`"2:4"` or `{pattern, score, stats, targets, ignore}`:
/// N:M sparsity on the trimmed weights), and `plan`: keep lists in the format of
/// `pare-trim.json`'s `plan`, so a recorded trim replays exactly with
/// `--recipe pare-trim.json`.
public struct Recipe: Sendable, Equatable {
    public var request = TrimRequest()
    /// Explicit keep lists, by original layer index.
    public var plan = TrimPlan()
    /// N:M sparsity applied to the trimmed weights as they are written.
    public var sparsify: SparsifyStep?

    public init() {}

    public static func load(path: String) throws(RecipeError) -> Recipe {
        let bytes: [UInt8]
        do { bytes = try MappedFile(path: path).withBytes { Array($0) } } catch { throw .unreadable(path: path, reason: error.description) }
        guard let text = String(validating: bytes, as: UTF8.self) else { throw .unreadable(path: path, reason: "not UTF-8 text") }
        return try parse(text, source: path)
    }

    public static func parse(_ text: String, source: String) throws(RecipeError) -> Recipe {
        let node: Yams.Node?
        do { node = try Yams.compose(yaml: text) } catch { throw .unreadable(path: source, reason: "not YAML or JSON: \(error)") }
        guard let node else { throw .unreadable(path: source, reason: "the file is empty") }
        var json = try toJSON(node, source: source)
        // A provenance file (pare-trim.json) is a recipe through its plan.
        if json["tool"] != nil, let plan = json["plan"] {
            json = .object([("plan", plan)] + (json["sparsify"].map { [("sparsify", $0)] } ?? []))
        }
        guard let members = json.objectMembers else { throw .invalid(path: source, key: "(top level)", problem: "must be a mapping of keys to values") }
        var recipe = Recipe()
        let sizeKeys = Dictionary(uniqueKeysWithValues: TrimRequest.axes.map { ($0.rawValue, $0) })
        for (key, value) in members {
            func fail(_ problem: String) -> RecipeError { .invalid(path: source, key: key, problem: problem) }
            switch key {
            case "drop_layers":
                recipe.request.dropLayers = try layerList(value, fail)
            case "merge_layers":
                recipe.request.merges = try runList(value, fail)
            case "merge_norms":
                guard let policy = value.stringValue.flatMap(TrimRequest.NormPolicy.init(rawValue:)) else { throw fail("must be first or merge") }
                recipe.request.mergeNorms = policy
            case _ where sizeKeys[key] != nil:
                let axis = sizeKeys[key]!
                recipe.request.sizes[axis] = TrimRequest.countOnly.contains(axis) ? .count(try count(value, fail)) : try size(value, fail)
            case "sparsify":
                recipe.sparsify = try sparsifyStep(value, fail)
            case "plan":
                recipe.plan = try TrimPlan(json: value, source: source)
                recipe.request.dropLayers += recipe.plan.dropLayers
                recipe.request.merges += recipe.plan.merges.map(\.layers)
            default:
                throw fail("unknown key (known: drop_layers, merge_layers, merge_norms, \(TrimRequest.axes.map(\.rawValue).joined(separator: ", ")), sparsify, plan)")
            }
        }
        return recipe
    }

    /// `sparsify: "2:4"`, or a mapping with `pattern` and optionally `score`, `stats`,
    /// `targets` and `ignore` (as `pare sparsify`'s options).
    static func sparsifyStep(_ value: JSONValue, _ fail: (String) -> RecipeError) throws(RecipeError) -> SparsifyStep {
        func pattern(_ text: String?) throws(RecipeError) -> NMPacking.Pattern {
            guard let text, let pattern = NMPacking.Pattern(text) else { throw fail("needs a pattern N:M with 1 ≤ N < M ≤ 16, such as \"2:4\"") }
            return pattern
        }
        if let text = value.stringValue { return SparsifyStep(pattern: try pattern(text)) }
        guard let members = value.objectMembers else { throw fail("must be a pattern such as \"2:4\" or a mapping with pattern, score, stats, targets, ignore") }
        var step = SparsifyStep(pattern: try pattern(value["pattern"]?.stringValue))
        for (key, field) in members {
            switch key {
            case "pattern": break
            case "score":
                guard let score = field.stringValue.flatMap(SparsifyRequest.Score.init(rawValue:)) else { throw fail("score must be magnitude or wanda") }
                step.score = score
            case "stats", "targets", "ignore":
                guard let text = field.stringValue else { throw fail("\(key) must be a string") }
                if key == "stats" { step.statsPath = text } else if key == "targets" { step.targets = text } else { step.ignore = text }
            default:
                throw fail("unknown key '\(key)' (known: pattern, score, stats, targets, ignore)")
            }
        }
        return step
    }

    static func count(_ value: JSONValue, _ fail: (String) -> RecipeError) throws(RecipeError) -> Int {
        guard let n = value.intValue, n > 0 else { throw fail("must be a positive whole number") }
        return n
    }

    static func size(_ value: JSONValue, _ fail: (String) -> RecipeError) throws(RecipeError) -> TrimRequest.Size {
        guard case .number(let text) = value, let size = TrimRequest.Size(text) else {
            throw fail("must be a channel count (6144) or a fraction in (0, 1] (0.75)")
        }
        return size
    }

    static func layerList(_ value: JSONValue, _ fail: (String) -> RecipeError) throws(RecipeError) -> [Int] {
        if let text = value.stringValue {
            guard let layers = LayerList.parse(text) else { throw fail("must list layers such as \"3,20-23\"") }
            return layers
        }
        guard let items = value.arrayValue else { throw fail("must be a list of layer indices or a string such as \"3,20-23\"") }
        var layers: [Int] = []
        for item in items {
            if let n = item.intValue, n >= 0 { layers.append(n) } else if let text = item.stringValue, let more = LayerList.parse(text) { layers += more } else { throw fail("holds \(item.serialized()), not a layer index") }
        }
        return layers
    }

    static func runList(_ value: JSONValue, _ fail: (String) -> RecipeError) throws(RecipeError) -> [[Int]] {
        if let text = value.stringValue {
            guard let runs = LayerList.parseRuns(text) else { throw fail("must list runs such as \"20-23\" or \"3-4,20-23\"") }
            return runs
        }
        guard let items = value.arrayValue else { throw fail("must be a list of runs") }
        var runs: [[Int]] = []
        for item in items {
            if let text = item.stringValue, let more = LayerList.parseRuns(text) { runs += more; continue }
            guard let layers = item.arrayValue?.compactMap(\.intValue), layers.count == item.arrayValue?.count else {
                throw fail("holds \(item.serialized()), not a run of layers")
            }
            runs.append(layers)
        }
        return runs
    }

    /// YAML → the JSON value model, keeping mapping order.
    static func toJSON(_ node: Yams.Node, source: String) throws(RecipeError) -> JSONValue {
        switch node {
        case .scalar(let scalar):
            if scalar.style == .plain {
                switch scalar.string {
                case "null", "~", "": return .null
                case "true", "True": return .bool(true)
                case "false", "False": return .bool(false)
                default:
                    if Int(scalar.string) != nil || (Double(scalar.string) != nil && scalar.string.first != ".") {
                        return .number(scalar.string)
                    }
                }
            }
            return .string(scalar.string)
        case .sequence(let sequence):
            var items: [JSONValue] = []
            for item in sequence { items.append(try toJSON(item, source: source)) }
            return .array(items)
        case .mapping(let mapping):
            var members: [(key: String, value: JSONValue)] = []
            for (key, value) in mapping {
                guard case .scalar(let k) = key else { throw .invalid(path: source, key: "(mapping)", problem: "keys must be plain strings") }
                members.append((k.string, try toJSON(value, source: source)))
            }
            return .object(members)
        case .alias:
            throw .invalid(path: source, key: "(alias)", problem: "YAML aliases are not supported in recipes")
        }
    }
}

/// Why a recipe could not be used.
public enum RecipeError: Error, Sendable, Equatable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case invalid(path: String, key: String, problem: String)

    public var description: String {
        switch self {
        case let .unreadable(path, reason): return "\(path): \(reason) [rule: recipe]"
        case let .invalid(path, key, problem): return "\(path): '\(key)' \(problem) [rule: recipe]"
        }
    }
}

/// Layer lists as users write them: `3,20-23`; merge runs: `3-4,20-23`.
public enum LayerList {
    public static func parse(_ text: String) -> [Int]? {
        var result: [Int] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.trimmingSpaces.split(separator: "-", omittingEmptySubsequences: false)
            if bounds.count == 1, let n = Int(bounds[0]), n >= 0 {
                result.append(n)
            } else if bounds.count == 2, let a = Int(bounds[0]), let b = Int(bounds[1]), a >= 0, a <= b, b - a < 100_000 {
                result += Array(a...b)
            } else {
                return nil
            }
        }
        return result
    }

    public static func parseRuns(_ text: String) -> [[Int]]? {
        var runs: [[Int]] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.trimmingSpaces.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 2, let a = Int(bounds[0]), let b = Int(bounds[1]), a >= 0, a < b, b - a < 100_000 else { return nil }
            runs.append(Array(a...b))
        }
        return runs
    }
}

extension Substring {
    var trimmingSpaces: Substring {
        var s = self
        while s.first == " " { s = s.dropFirst() }
        while s.last == " " { s = s.dropLast() }
        return s
    }
}
