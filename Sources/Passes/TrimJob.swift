import Emit
import ModelFolder
import ModelGraph
import OrderedJSON
import Tensors

/// A whole `pare trim`: a request resolved against a model into a plan, its summary, and
/// the writer that streams the trimmed checkpoint out.
///
/// Scores are computed layer by layer while writing when the layout does not depend on
/// them (`LayerByLayerPlan`); the plan made here then fixes shapes only, and the final
/// one is known once the output is written. A dry run reads no weights at all.
public struct TrimJob {
    public let graph: ModelGraph
    public let request: TrimRequest
    /// Keep lists given in a recipe.
    public let explicit: TrimPlan
    /// N:M sparsity applied to the trimmed weights as they are written.
    public let sparsify: SparsifyStep?
    public let keepUnknown: Bool
    /// Scores from calibration statistics, when the trim selects by data.
    public let selectionScores: ActivationScores?
    /// What chose the layers of `--drop-layers auto:N` ("drop") and `--merge-layers auto`
    /// ("merge"), for the record.
    public let depthRecord: JSONValue?
    /// The trimmed model as planned now (shapes final; indices final unless planned layer
    /// by layer while writing).
    public let trimmed: TrimmedModel
    /// Items with the sparsify step applied, and the names it prunes.
    public let sparse: (items: [OutputItem], targets: [String])?
    /// Things the user should know, one sentence each.
    public let warnings: [String]
    private let lazyPlan: LayerByLayerPlan?

    public var model: ModelFolder { graph.model }

    /// Plans the trim. `dryRun` reads no weights: the first indices stand in for the ones
    /// scoring will choose, with the same counts, shapes and sizes.
    public init(
        graph: ModelGraph, request: TrimRequest, explicit: TrimPlan = TrimPlan(), sparsify: SparsifyStep? = nil,
        keepUnknown: Bool = false, dryRun: Bool = false, selectionScores: ActivationScores? = nil, depthRecord: JSONValue? = nil,
        compensation: CalibrationStatistics? = nil
    ) throws {
        let problems = graph.problems.filter { !(keepUnknown && $0.isUnexpectedTensor) }
        if let problem = problems.first {
            throw problems.count > 1 ? TrimError.graphProblems(first: problem, more: problems.count - 1, input: graph.model.path) : .graph(problem)
        }
        self.graph = graph
        self.request = request
        self.explicit = explicit
        self.sparsify = sparsify
        self.keepUnknown = keepUnknown
        self.selectionScores = selectionScores
        self.depthRecord = depthRecord
        // Wanda slices its norms with the kept channels, so it needs them all first.
        // So does bias compensation, which computes the biases from them while planning.
        let layerByLayer = !dryRun && LayerByLayerPlan.applies(to: request, explicit: explicit) && !(sparsify?.needsFinalSelections ?? false)
            && compensation == nil
        var planner = TrimPlanner(graph: graph, scores: !dryRun && !layerByLayer, selectionScores: selectionScores)
        let plan = try planner.plan(request, explicit: explicit)
        var warnings: [String] = []
        let family = graph.descriptor.family
        if keepUnknown, let unknown = graph.unknownTensors.first {
            if plan.keep.keys.contains(where: { $0.axis.scope == .model }) {
                throw TrimError.notSupported(family: family, request: "--keep-unknown with --hidden",
                                             reason: "tensors the descriptor does not know may carry the hidden size, and would be copied at the old width ('\(unknown.info.name)'); describe them in a descriptor under formats/")
            }
            if !plan.removedLayers.isEmpty || !plan.experts.isEmpty {
                throw TrimError.notSupported(family: family, request: "--keep-unknown with dropped, merged layers or pruned experts",
                                             reason: "tensors the descriptor does not know cannot be renumbered with the layers and experts around them ('\(unknown.info.name)'); describe them in a descriptor under formats/")
            }
            let count = graph.unknownTensors.count
            warnings.append("copying \(count) tensor\(count == 1 ? "" : "s") the \(family) descriptor does not know unchanged (first: '\(unknown.info.name)')")
        }
        // Modules around the model (a sentence-transformers Dense head) are copied as they
        // are: fine unless they read a size the trim changes, which only --hidden does.
        if let module = graph.model.extraModules.first {
            if plan.keep.keys.contains(where: { $0.axis == .hidden }) {
                throw TrimError.notSupported(family: family, request: "--hidden",
                                             reason: "'\(module)' holds the weights of a module after the model (a sentence-transformers head), which reads the hidden size; pare copies such modules unchanged, so it would no longer fit")
            }
            warnings.append("copying \(graph.model.extraModules.map { "'\($0)'" }.joined(separator: ", ")) unchanged: the module\(graph.model.extraModules.count == 1 ? "" : "s") after the model keep reading the hidden size, which this trim does not change")
        }
        var trimmed = try TrimmedModel(graph: graph, plan: plan, keepUnknown: keepUnknown)
        if let compensation { trimmed = try trimmed.compensatingBiases(with: compensation) }
        warnings += try Self.footguns(request, trimmed: trimmed, sparsifies: sparsify != nil)
        self.trimmed = trimmed
        self.warnings = warnings + trimmed.warnings
        sparse = try sparsify.map { step throws(SparsifyError) in try step.apply(to: trimmed) }
        lazyPlan = layerByLayer ? LayerByLayerPlan(graph: graph, request: request, explicit: explicit, layout: trimmed, selectionScores: selectionScores) : nil
    }

    /// Refuses a trim that removes nothing, and warns about sizes that are probably not
    /// what was meant: a fraction of 1.0 keeps everything, a count can keep under 1 %.
    static func footguns(_ request: TrimRequest, trimmed: TrimmedModel, sparsifies: Bool) throws(TrimError) -> [String] {
        let before = trimmed.graph.binding.sizes, after = trimmed.sizes
        var warnings: [String] = []
        let graph = trimmed.graph
        let surviving = (0..<graph.binding.layerCount).filter { !trimmed.plan.removedLayers.contains($0) }
        for axis in TrimRequest.axes {
            guard let size = request.sizes[axis], let b = before[axis], let a = after[axis] else { continue }
            // An axis no surviving layer carries (the FFN of dropped dense layers) is not kept.
            let carried = axis.scope == .model
                || TrimRequest.planAxes(for: axis).contains { planned in surviving.contains { graph.layer($0, carries: planned) } }
            guard carried else { continue }
            if a == b {
                let hint = size.isRatio ? ": \(size) is a fraction of them; a count is a whole number, such as \(max(1, b / 2))" : ""
                warnings.append("\(axis.option) \(size) keeps all \(b) \(axis.noun)\(hint)")
            } else if a * 100 < b {
                warnings.append("\(axis.option) \(size) keeps \(a) of \(b) \(axis.noun), under 1 %")
            }
        }
        let removesLayers = !trimmed.plan.removedLayers.isEmpty
        if !removesLayers && !sparsifies && before.allSatisfy({ after[$0.key] == $0.value }) {
            throw .nothingRemoved(reason: warnings.isEmpty ? "every size stays as it is" : warnings.joined(separator: "; "))
        }
        return warnings
    }

    /// The plan as a report: text for people, JSON for scripts (with the sparsify step).
    public func report(_ summary: TrimSummary) -> (text: String, json: JSONValue) {
        var (text, json) = (summary.text, summary.json)
        if let selection = selectionRecord, case .object(var members) = json {
            members.append(("selection", selection))
            json = .object(members)
            text += selectionLine
        }
        guard let sparsify, let sparse, case .object(var members) = json else { return (text, json) }
        var described = sparsify.json
        _ = described.set("targets", to: .array(sparse.targets.map { .string($0) }), appendIfMissing: true)
        members.append(("sparsify", described))
        let line = "then \(sparsify.pattern) sparsity by \(sparsify.score.rawValue) on \(sparse.targets.count) trimmed weight\(sparse.targets.count == 1 ? "" : "s")\n"
        return (text + line, .object(members))
    }

    /// One line saying what chose the removed structures.
    private var selectionLine: String {
        var parts: [String] = []
        if let scores = selectionScores {
            var what: [String] = []
            if let w = scores.criteria.width, request.sizes.keys.contains(where: { $0 != .experts }) { what.append("widths by \(w.rawValue)") }
            if let e = scores.criteria.experts, request.sizes[.experts] != nil { what.append("experts by \(e.rawValue)") }
            let tokens = scores.statistics.metadata("tokens").map { ", \($0) tokens" } ?? ""
            if !what.isEmpty { parts.append(what.joined(separator: ", ") + " (statistics: \(scores.statistics.source)\(tokens))") }
        }
        if let drop = depthRecord?["drop"], let criterion = drop["criterion"]?.stringValue, let dropped = drop["dropped"]?.arrayValue {
            let name = criterion == "bi" ? "lowest block influence" : "last before the final layer"
            parts.append("layers \(dropped.compactMap(\.intValue).map(String.init).joined(separator: ", ")) dropped (\(name))")
        }
        if let merge = depthRecord?["merge"], let runs = merge["merges"]?.arrayValue {
            let text = runs.compactMap { $0.arrayValue?.compactMap(\.intValue) }.map { "\($0.first ?? 0)-\($0.last ?? 0)" }
            let tried = merge["trials"]?.arrayValue?.count ?? 0
            parts.append("layers \(text.isEmpty ? "none" : text.joined(separator: ", ")) merged (LaCo, \(tried) trial\(tried == 1 ? "" : "s"))")
        }
        return parts.isEmpty ? "" : "chosen from data: " + parts.joined(separator: "; ") + "\n"
    }

    /// The summary as planned now (indices are stand-ins in a dry run or layer by layer).
    public func summary(dryRun: Bool) -> TrimSummary {
        TrimSummary(trimmed, indicesAreFinal: !dryRun && lazyPlan == nil)
    }

    /// The summary with every index final: after writing, for a plan made layer by layer.
    public func finalSummary() throws(TrimError) -> TrimSummary {
        guard let lazyPlan else { return summary(dryRun: false) }
        return TrimSummary(try TrimmedModel(graph: graph, plan: try lazyPlan.finish(), keepUnknown: keepUnknown), indicesAreFinal: true)
    }

    /// How the trim chose what it removed, when it chose from data: the statistics (file and
    /// digests), the criteria, and every score it ranked by.
    public var selectionRecord: JSONValue? {
        guard selectionScores != nil || depthRecord != nil else { return nil }
        var members: [(key: String, value: JSONValue)] = []
        if let stats = selectionScores?.statistics {
            members.append(("stats", .string(stats.source)))
            if let sha = stats.fileSHA256 { members.append(("stats_sha256", .string(sha))) }
            for key in ["model_sha256", "tokens", "sequences", "tool"] {
                if let value = stats.metadata(key) { members.append((key, .string(value))) }
            }
        }
        if let criteria = selectionScores?.criteria {
            members.append(("criteria", .object([
                ("widths", criteria.width.map { .string($0.rawValue) } ?? .null),
                ("experts", criteria.experts.map { .string($0.rawValue) } ?? .null),
            ])))
        }
        if let depthRecord { members.append(("layers", depthRecord)) }
        if let subsets = selectionScores?.subsetRecord { members.append(("expert_subsets", subsets)) }
        if let scores = selectionScores?.record { members.append(("scores", scores)) }
        return .object(members)
    }

    /// The writer of the trimmed checkpoint.
    public func writer(to output: String, options: CheckpointWriter.Options) throws(EmitError) -> CheckpointWriter {
        try CheckpointWriter(
            input: model, output: output, options: options, items: sparse?.items ?? trimmed.items, config: trimmed.config,
            selectionSource: lazyPlan)
    }

    /// `pare-trim.json`, built once the tensors are written (the final plan and the input
    /// hashes computed meanwhile by `hasher` are known only then).
    public func provenanceFiles(_ provenance: Provenance, hasher: TensorHasher?) -> () throws(EmitError) -> [(name: String, bytes: [UInt8])] {
        { () throws(EmitError) in
            // The final plan, never the stand-in indices: a record that replays another
            // model than the one written would be worse than none.
            let plan: TrimPlan
            if let lazyPlan {
                do throws(TrimError) { plan = try lazyPlan.finish() } catch { throw .planFailed(reason: error.description) }
            } else {
                plan = trimmed.plan
            }
            var extra: [(key: String, value: JSONValue)] = sparsify.map { [("sparsify", $0.json)] } ?? []
            if let selection = selectionRecord { extra.append(("selection", selection)) }
            extra.append(("input_files", Provenance.inputFiles(of: model)))
            if let hasher {
                do throws(ModelFolderError) { extra.append(("input_tensors", Provenance.tensorHashes(try hasher.wait()))) } catch { throw .input(error) }
            }
            return [Provenance.file("pare-trim.json", provenance.record(plan: plan.json, extra: extra))]
        }
    }
}
