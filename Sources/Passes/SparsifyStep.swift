import Emit
import ModelFolder
import ModelGraph
import OrderedJSON
import PareFormat
import SafeTensors
import Tensors

/// N:M sparsity as the last step of a trim: the trimmed weights are pruned as they are
/// written, so one pass gives a smaller and sparse model.
///
/// Targets are chosen as `pare sparsify` chooses them, on the trimmed tensors. Wanda
/// statistics are those of the original model (a calibration run sees the untrimmed
/// one): each norm vector is looked up under the original tensor name and sliced with
/// the channels the trim keeps; a merged layer uses its first layer's norms.
public struct SparsifyStep: Sendable, Equatable {
    public var pattern: NMPacking.Pattern
    public var score: SparsifyRequest.Score
    public var statsPath: String?
    public var targets: String?
    public var ignore: String?

    public init(pattern: NMPacking.Pattern, score: SparsifyRequest.Score = .magnitude, statsPath: String? = nil, targets: String? = nil, ignore: String? = nil) {
        self.pattern = pattern
        self.score = score
        self.statsPath = statsPath
        self.targets = targets
        self.ignore = ignore
    }

    /// Whether it needs every selection before writing starts (Wanda slices its norms
    /// with them).
    public var needsFinalSelections: Bool { score == .wanda }

    public var json: JSONValue {
        var members: [(key: String, value: JSONValue)] = [("pattern", .string(pattern.description)), ("score", .string(score.rawValue))]
        if let statsPath { members.append(("stats", .string(statsPath))) }
        if let targets { members.append(("targets", .string(targets))) }
        if let ignore { members.append(("ignore", .string(ignore))) }
        return .object(members)
    }

    /// The trimmed model's items with the targets pruned as they are written; `nm-zstd` is
    /// their `.pare` encoding.
    public func apply(to trimmed: TrimmedModel) throws(SparsifyError) -> (items: [OutputItem], targets: [String]) {
        if score == .wanda, statsPath == nil { throw .statsNeeded }
        if score != .wanda, statsPath != nil { throw .statsUnused }
        let targetsRegex = try SparsifyPlan.regex(targets, option: "targets")
        let ignoreRegex = try SparsifyPlan.regex(ignore, option: "ignore")
        let stats: SafeTensorsFile?
        do { stats = try statsPath.map { path throws(SafeTensorsError) in try SafeTensorsFile(path: path) } } catch { throw .stats(error) }
        let descriptor = trimmed.graph.descriptor
        var items = trimmed.items
        var names: [String] = []
        for (i, node) in trimmed.itemNodes.enumerated() {
            var item = items[i]
            let entry = item.entry
            guard entry.shape.count == 2, entry.dtype.isCastable else { continue }
            let spec = node.map { descriptor.tensors[$0.template] }
            if let targetsRegex {
                guard entry.name.contains(targetsRegex) else { continue }
            } else {
                guard spec?.role.isLinearWeight == true else { continue }
            }
            if let ignoreRegex, entry.name.contains(ignoreRegex) { continue }
            let input: NMSparsity.InputDimension = spec?.transposed == true ? .first : .last
            let dimension = input == .last ? 1 : 0
            let inputSize = Int(entry.shape[dimension])
            guard inputSize % pattern.m == 0 else { throw .notGroupable(tensor: entry.name, inputSize: inputSize, m: pattern.m) }
            var norms: [Float]?
            if let stats, let path = statsPath {
                let source = item.source
                let original = SparseTarget(source: source, input: input)
                let all = try SparsifyPlan.norms(for: original, in: stats, path: path)
                if let kept = item.selections?[dimension] { norms = kept.map { all[$0] } } else { norms = all }
            }
            item.transform = NMPruneTransform(pattern: pattern, dtype: entry.dtype, shape: entry.shape.map { Int($0) }, input: input, norms: norms)
            item.encoding = PareLayout.encoding(pattern: pattern, input: input)
            items[i] = item
            names.append(entry.name)
        }
        guard !names.isEmpty else {
            throw .noTargets(reason: targets != nil || ignore != nil ? "no 2-D float tensor of the trimmed model matches targets and escapes ignore" : "the trimmed model has no linear weights in its layers")
        }
        return (items, names)
    }
}
