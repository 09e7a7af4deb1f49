import ModelFolder
import ModelGraph

/// A trim the output cannot represent, refused before anything is written, with what
/// would work instead.
public enum TrimError: Error, Sendable {

    case layerOutOfRange(layer: Int, layers: Int)
    case badMerge(layers: [Int], reason: String)
    case badKeepList(what: String, reason: String)
    case allLayersDropped(layers: Int)
    case notSupported(family: String, request: String, reason: String)
    case countOutOfRange(what: String, requested: Int, available: Int)
    case headsNotDivisible(heads: Int, kvHeads: Int, group: Int)
    case topKExceedsExperts(topK: Int, experts: Int)
    case cannotScore(tensor: String, dtype: String)
    case derivedAxisChanges(family: String, axis: String, expression: String, from: Int, to: Int)
    case indivisible(family: String, expression: String, dividend: Int, divisor: Int)
    case axisNotWritable(family: String, axis: String)
    case layerPatternUnrepresentable(kind: String)
    case layerListLength(key: String, count: Int, layers: Int)
    case unevenCounts(what: String, configKey: String, counts: [(layer: Int, count: Int)])
    case graph(GraphError)
    /// Several problems with the checkpoint: the first, and how many more `validate` lists.
    case graphProblems(first: GraphError, more: Int, input: String)
    /// The trim would write a full copy.
    case nothingRemoved(reason: String)
    /// The input could not be read while scoring (a damaged `.pare` chunk, say).
    case input(ModelFolderError)
    /// A statistics file that cannot serve the selection asked for.
    case stats(path: String, problem: String)
    /// A selection criterion that needs something the run does not have.
    case criterion(name: String, problem: String)

    public var rule: String {
        switch self {
        case .layerOutOfRange: return "layer-out-of-range"
        case .badMerge: return "bad-merge"
        case .badKeepList: return "bad-keep-list"
        case .allLayersDropped: return "all-layers-dropped"
        case .notSupported: return "not-supported"
        case .countOutOfRange: return "count-out-of-range"
        case .headsNotDivisible: return "gqa-heads-not-divisible"
        case .topKExceedsExperts: return "top-k-exceeds-experts"
        case .cannotScore: return "cannot-score"
        case .derivedAxisChanges: return "derived-axis-changes"
        case .indivisible: return "config-indivisible"
        case .axisNotWritable: return "axis-not-writable"
        case .layerPatternUnrepresentable: return "layer-pattern"
        case .layerListLength: return "layer-list-length"
        case .unevenCounts: return "uneven-counts"
        case .graph(let error): return error.rule
        case .graphProblems(let first, _, _): return first.rule
        case .nothingRemoved: return "nothing-removed"
        case .input(let error): return error.rule
        case .stats: return "stats"
        case .criterion: return "criterion"
        }
    }
}

extension TrimError: CustomStringConvertible {
    public var description: String {
        if case .graph(let error) = self { return error.description }
        if case let .graphProblems(first, more, input) = self {
            return "\(first) (and \(more) more problem\(more == 1 ? "" : "s"); run pare validate \(input) to list them)"
        }
        if case .input(let error) = self { return error.description }
        return "\(sentence) [rule: \(rule)]"
    }

    private var sentence: String {
        switch self {
        case let .layerOutOfRange(layer, layers):
            return "layer \(layer) does not exist: the model has \(layers) layers, numbered 0 to \(layers - 1)"
        case let .badMerge(layers, reason):
            return "cannot merge layers \(layers.map(String.init).joined(separator: ", ")): \(reason)"
        case let .badKeepList(what, reason):
            return "the keep list for \(what) is not usable: \(reason)"
        case let .allLayersDropped(layers):
            return "dropping all \(layers) layers leaves no model; keep at least one"
        case let .notSupported(family, request, reason):
            return "\(request) is not possible for \(family): \(reason)"
        case let .countOutOfRange(what, requested, available):
            return "cannot keep \(requested) \(what): the model has \(available); ask for 1 to \(available)"
        case let .headsNotDivisible(heads, kvHeads, group):
            let options = (1...group).map { $0 * kvHeads }.map(String.init).joined(separator: ", ")
            return "\(heads) query heads cannot be spread evenly over \(kvHeads) kv heads: query head h belongs to kv head h / \(group), the config holds one num_key_value_heads, so every group must keep the same number of query heads; ask for a multiple of \(kvHeads) (\(options)), or drop whole groups with --kv-heads"
        case let .topKExceedsExperts(topK, experts):
            return "the router picks \(topK) experts per token (num_experts_per_tok), so at least \(topK) must remain; \(experts) were asked for"
        case let .cannotScore(tensor, dtype):
            return "tensor '\(tensor)' is \(dtype), which magnitude scoring cannot read; pass explicit keep lists in a recipe"
        case let .derivedAxisChanges(family, axis, expression, from, to):
            return "\(family) derives \(axis) = \(expression) from its config, so this change would turn \(axis) from \(from) into \(to) while the weights keep \(from); its config cannot express the result"
        case let .indivisible(family, expression, dividend, divisor):
            return "the \(family) config class requires \(expression) to divide exactly, and this trim would give \(dividend) / \(divisor), so transformers would refuse the config; choose sizes for which it divides"
        case let .axisNotWritable(family, axis):
            return "the \(family) config has no key that holds '\(axis)', so its size cannot change"
        case let .layerPatternUnrepresentable(kind):
            return "after dropping these layers, which layers are \(kind) can no longer be expressed in the config; drop a different set of layers"
        case let .layerListLength(key, count, layers):
            return "config.json '\(key)' has \(count) entries for \(layers) layers, so it cannot follow the dropped layers; fix the config first"
        case let .unevenCounts(what, configKey, counts):
            let listed = counts.prefix(8).map { "layer \($0.layer): \($0.count)" }.joined(separator: ", ")
            return "layers would keep different numbers of \(what) (\(listed)\(counts.count > 8 ? ", ..." : "")), but the config holds one \(configKey) for every layer; give every layer a keep list of the same length, or a count for all"
        case .input(let error):
            return error.description
        case .graph(let error), .graphProblems(let error, _, _):
            return error.description
        case let .stats(path, problem):
            return "\(path): \(problem)"
        case let .criterion(name, problem):
            return name.hasPrefix("--") ? "\(name) \(problem)" : "--score \(name) \(problem)"
        case let .nothingRemoved(reason):
            return "this trim removes nothing, so it would write a full copy (\(reason)); ask for smaller sizes, or copy with pare convert"
        }
    }
}
