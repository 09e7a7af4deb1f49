import ArgumentParser
import Emit
import ModelFolder
import ModelGraph
import OrderedJSON
import Passes
import Tensors

struct Trim: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Physically remove layers, attention heads, FFN channels, experts and hidden channels.",
        discussion: """
            Writes OUT as an ordinary checkpoint that transformers loads as is: tensors are \
            sliced straight from IN's files into OUT's (never the whole model in memory), \
            and config.json is rewritten to match (num_hidden_layers, num_attention_heads, \
            num_key_value_heads and an explicit head_dim, intermediate sizes, expert counts, \
            per-layer lists such as layer_types and mlp_only_layers).

            Which heads, channels and experts stay is chosen by group magnitude: a \
            structure's score is the sum of squared L2 norms of every weight removed with \
            it; the highest stay, ties go to the lower index. GQA: query head h belongs to \
            kv head h / group. --kv-heads N drops whole groups; --heads N keeps N query heads \
            spread evenly over the kv groups (N must be a multiple of the kv heads kept).

            Every layer keeps the same counts (standard transformers classes need one number \
            per config key). A request the output could not represent is refused before \
            anything is written. OUT gets pare-trim.json, the resolved plan (every kept \
            index), so the trim can be audited and replayed.

            Examples:
              pare trim ./model ./small --drop-layers 20-23 --ffn 0.75 --dry-run
              pare trim ./model ./small --kv-heads 4 --ffn 6144
              pare trim ./mixtral ./mixtral-6e --experts 6 --json
              pare trim ./model --in-place --drop-layers 20-23
              pare trim ./model ./again --recipe ./small/pare-trim.json   # replay
            """
    )

    @Argument(help: "Input model folder (safetensors or .pare weights), or its index.json.")
    var input: String

    @Argument(help: "Output folder (omit with --in-place).")
    var output: String?

    @Flag(help: "Trim IN itself: the new model is written beside it and swapped in only once complete, so the original survives any failure.")
    var inPlace = false

    @Option(help: ArgumentHelp("A recipe (YAML or JSON) with the same settings as the flags, plus explicit keep lists; flags override it. A pare-trim.json replays that trim.", valueName: "file"))
    var recipe: String?

    @Option(help: ArgumentHelp("Layers to remove, by index: 3,20-23.", valueName: "list"))
    var dropLayers: String?

    @Option(help: ArgumentHelp("Merge runs of consecutive layers into their first the LaCo way, θ_l + Σ(θ_l+k − θ_l), computed in f32 from the original weights: 20-23 or 3-4,20-23.", valueName: "runs"))
    var mergeLayers: String?

    @Option(help: ArgumentHelp("Norm weights in a merge: keep the first layer's (first, the default) or merge them too (merge).", valueName: "first|merge"))
    var mergeNorms: String?

    @Option(help: ArgumentHelp("Then apply N:M sparsity to the trimmed linear weights by magnitude, as pare sparsify does (a recipe's sparsify step can score with wanda).", valueName: "N:M"))
    var sparsify: String?

    @Option(help: ArgumentHelp("Keep N kv heads (whole GQA groups) per layer.", valueName: "N"))
    var kvHeads: Int?

    @Option(help: ArgumentHelp("Keep N query heads per layer, the same number in every kv group.", valueName: "N"))
    var heads: Int?

    @Option(help: ArgumentHelp("FFN size: channels (6144) or a fraction (0.75, rounded down). A fraction also applies to expert and shared-expert FFNs.", valueName: "N|fraction"))
    var ffn: String?

    @Option(help: ArgumentHelp("Each routed expert's FFN size (MoE).", valueName: "N|fraction"))
    var expertFfn: String?

    @Option(help: ArgumentHelp("The shared expert's FFN size (Qwen2-MoE).", valueName: "N|fraction"))
    var sharedExpertFfn: String?

    @Option(help: ArgumentHelp("Keep N routed experts per MoE layer (router rows follow).", valueName: "N"))
    var experts: Int?

    @Option(help: ArgumentHelp("Hidden size (Minitron's embedding channels): channels or a fraction. Slices embeddings, the LM head, every norm and every projection's hidden side; refused where the class derives head_dim from hidden (GPT-2, BERT).", valueName: "N|fraction"))
    var hidden: String?

    @Flag(help: "Print the plan (sizes, parameters, bytes, KV cache, config diff) and write nothing; reads no weights.")
    var dryRun = false

    @Flag(help: "Print the plan as JSON.")
    var json = false

    @Option(help: ArgumentHelp("Largest output shard: 5GB, 500MB, 2GiB.", valueName: "size"))
    var maxShardSize = "5GB"

    @Flag(help: "Replace OUT if it exists (swapped only once the new one is complete).")
    var force = false

    @Flag(help: "No progress bar or summary.")
    var quiet = false

    @Flag(help: "Leave the input's tensor SHA-256s out of pare-trim.json (they are hashed on another core while trimming).")
    var noHashes = false

    @Option(help: ArgumentHelp("Also read architecture descriptors from this folder.", valueName: "dir"))
    var formats: String?

    @Option(help: ArgumentHelp("Weight file format of OUT (IN may be either).", valueName: "safetensors|pare"))
    var format = "safetensors"

    @Flag(help: "Copy tensors the architecture descriptor does not know through unchanged, instead of refusing the checkpoint.")
    var keepUnknown = false

    func validate() throws {
        if recipe == nil && request(over: TrimRequest()).isEmpty {
            throw ValidationError("nothing to trim: give at least one of --drop-layers, --merge-layers, --kv-heads, --heads, --ffn, --expert-ffn, --shared-expert-ffn, --experts, --hidden or --recipe")
        }
        if inPlace && output != nil {
            throw ValidationError("give either OUT or --in-place, not both")
        }
        if !inPlace && output == nil && !dryRun {
            throw ValidationError("missing OUT: give an output folder, or --in-place to trim IN itself")
        }
        if let dropLayers, LayerList.parse(dropLayers) == nil {
            throw ValidationError("--drop-layers takes indices and ranges such as 3,20-23 (got '\(dropLayers)')")
        }
        if let mergeLayers, LayerList.parseRuns(mergeLayers) == nil {
            throw ValidationError("--merge-layers takes runs of consecutive layers such as 20-23 or 3-4,20-23 (got '\(mergeLayers)')")
        }
        if let mergeNorms, TrimRequest.NormPolicy(rawValue: mergeNorms) == nil {
            throw ValidationError("--merge-norms is first or merge (got '\(mergeNorms)')")
        }
        for (flag, value) in [("--kv-heads", kvHeads), ("--heads", heads), ("--experts", experts)] {
            if let value, value < 1 { throw ValidationError("\(flag) takes a positive count (got \(value))") }
        }
        for (flag, value) in [("--ffn", ffn), ("--expert-ffn", expertFfn), ("--shared-expert-ffn", sharedExpertFfn), ("--hidden", hidden)] {
            if let value, TrimRequest.Size(value) == nil {
                throw ValidationError("\(flag) takes a channel count (6144) or a fraction in (0, 1] (0.75); got '\(value)'")
            }
        }
        if ByteSize.parse(maxShardSize) == nil {
            throw ValidationError("--max-shard-size must be a positive size such as 5GB or 500MB (got '\(maxShardSize)')")
        }
        if let sparsify, NMPacking.Pattern(sparsify) == nil {
            throw ValidationError("--sparsify takes a pattern N:M with 1 ≤ N < M ≤ 16, such as 2:4 (got '\(sparsify)')")
        }
        if WeightFormat(rawValue: format) == nil {
            throw ValidationError("--format must be safetensors or pare (got '\(format)')")
        }
    }

    /// The recipe's request with every flag given on the command line on top.
    func request(over base: TrimRequest) -> TrimRequest {
        var request = base
        if let runs = mergeLayers.flatMap(LayerList.parseRuns) { request.merges = runs }
        if let policy = mergeNorms.flatMap(TrimRequest.NormPolicy.init(rawValue:)) { request.mergeNorms = policy }
        if let layers = dropLayers.flatMap(LayerList.parse) { request.dropLayers = layers }
        for (axis, count) in [(Axis.kvHeads, kvHeads), (.heads, heads), (.experts, experts)] {
            if let count { request.sizes[axis] = .count(count) }
        }
        for (axis, text) in [(Axis.ffn, ffn), (.expertFFN, expertFfn), (.sharedExpertFFN, sharedExpertFfn), (.hidden, hidden)] {
            if let size = text.flatMap(TrimRequest.Size.init) { request.sizes[axis] = size }
        }
        return request
    }

    func run() throws {
        try reportingFailures {
            let model = try ModelFolder(path: input)
            let registry = try formats.map { dir throws(GraphError) in try DescriptorRegistry.loading(directory: dir) } ?? .builtin
            let graph = try ModelGraph(model: model, registry: registry)
            let problems = graph.problems.filter { !(keepUnknown && $0.isUnexpectedTensor) }
            if let problem = problems.first {
                if problems.count > 1 {
                    StandardStream.standardError.write("pare: error: \(problem) (and \(problems.count - 1) more problem\(problems.count == 2 ? "" : "s"); run pare validate \(input) to list them)\n")
                    throw ExitCode(1)
                }
                throw TrimError.graph(problem)
            }
            let recipe = try recipe.map { path throws(RecipeError) in try Recipe.load(path: path) } ?? Recipe()
            let wanted = request(over: recipe.request)
            var step = recipe.sparsify
            if let pattern = sparsify.flatMap(NMPacking.Pattern.init) {
                step = step.map { var s = $0; s.pattern = pattern; return s } ?? SparsifyStep(pattern: pattern)
            }
            // Scores are computed layer by layer while writing when the layout does not
            // depend on them (see LayerByLayerPlan); the plan here then fixes shapes only.
            // Wanda slices its norms with the kept channels, so it needs them all first.
            let layerByLayer = !dryRun && LayerByLayerPlan.applies(to: wanted, explicit: recipe.plan) && !(step?.needsFinalSelections ?? false)
            var planner = TrimPlanner(graph: graph, scores: !dryRun && !layerByLayer)
            let plan = try planner.plan(wanted, explicit: recipe.plan)
            if keepUnknown && !graph.unknownTensors.isEmpty && (!plan.removedLayers.isEmpty || !plan.experts.isEmpty) {
                throw TrimError.notSupported(family: graph.descriptor.family, request: "--keep-unknown with dropped, merged layers or pruned experts",
                                             reason: "tensors the descriptor does not know cannot be renumbered with the layers and experts around them ('\(graph.unknownTensors[0].info.name)'); describe them in a descriptor under formats/")
            }
            if keepUnknown && !graph.unknownTensors.isEmpty {
                StandardStream.standardError.write("pare: warning: copying \(graph.unknownTensors.count) tensor\(graph.unknownTensors.count == 1 ? "" : "s") the \(graph.descriptor.family) descriptor does not know unchanged (first: '\(graph.unknownTensors[0].info.name)')\n")
            }
            let trimmed = try TrimmedModel(graph: graph, plan: plan, keepUnknown: keepUnknown)
            let summary = TrimSummary(trimmed, indicesAreFinal: !dryRun && !layerByLayer)
            let sparse = try step.map { step throws(SparsifyError) in try step.apply(to: trimmed) }
            let lazyPlan = layerByLayer ? LayerByLayerPlan(graph: graph, request: wanted, explicit: recipe.plan, layout: trimmed) : nil
            warn(trimmed.warnings)
            if dryRun {
                StandardStream.standardOutput.write(json ? withSparsify(summary.json, step, sparse?.targets).serialized(.pretty) + "\n" : summary.text + sparsifyLine(step, sparse?.targets))
                return
            }
            let hasher = noHashes ? nil : TensorHasher(model: model)
            let arguments = CommandLine.arguments.dropFirst().joined(separator: " ")
            func provenance() throws(ModelFolderError) -> [(name: String, bytes: [UInt8])] {
                var members: [(key: String, value: JSONValue)] = [
                    ("tool", .string("pare \(Pare.configuration.version)")),
                    ("input", .string(input)),
                    ("request", .string(arguments)),
                    ("plan", ((try? lazyPlan?.finish()) ?? plan).json),
                ] + (step.map { [("sparsify", $0.json)] } ?? []) + [
                    ("input_files", .array(model.shards.enumerated().map { i, shard in
                        .object([("file", .string(PathName.lastComponent(model.shardNames[i]))), ("bytes", .integer(shard.fileSize))])
                    })),
                ]
                if let hasher {
                    members.append(("input_tensors", .array(try hasher.wait().map { .object([("name", .string($0.name)), ("sha256", .string($0.sha256))]) })))
                }
                return [("pare-trim.json", Array((JSONValue.object(members).serialized(.pretty) + "\n").utf8))]
            }
            let destination = output ?? model.root ?? model.path
            let writer = try CheckpointWriter(
                input: model, output: destination,
                options: .init(maxShardSize: ByteSize.parse(maxShardSize)!, force: force, replacesInput: inPlace, format: WeightFormat(rawValue: format)!),
                items: sparse?.items ?? trimmed.items, config: trimmed.config, selectionSource: lazyPlan)
            try runShowingProgress(writer, label: "trimming", quiet: quiet, lateFiles: provenance)
            let final = try lazyPlan.map { lazy throws(TrimError) in
                TrimSummary(try TrimmedModel(graph: graph, plan: try lazy.finish(), keepUnknown: keepUnknown), indicesAreFinal: true)
            } ?? summary
            if json {
                StandardStream.standardOutput.write(withSparsify(final.json, step, sparse?.targets).serialized(.pretty) + "\n")
            } else if !quiet {
                StandardStream.standardError.write(final.text + sparsifyLine(step, sparse?.targets))
                StandardStream.standardError.write("wrote \(destination)\n")
            }
        }
    }

    /// The plan's JSON with the sparsify step and its targets added.
    private func withSparsify(_ json: JSONValue, _ step: SparsifyStep?, _ targets: [String]?) -> JSONValue {
        guard let step, let targets, case .object(var members) = json else { return json }
        var described = step.json
        _ = described.set("targets", to: .array(targets.map { .string($0) }), appendIfMissing: true)
        members.append(("sparsify", described))
        return .object(members)
    }

    private func sparsifyLine(_ step: SparsifyStep?, _ targets: [String]?) -> String {
        guard let step, let targets else { return "" }
        return "then \(step.pattern) sparsity by \(step.score.rawValue) on \(targets.count) trimmed weight\(targets.count == 1 ? "" : "s")\n"
    }
}
