import ArgumentParser
import Calibration
import Emit
import ModelFolder
import ModelGraph
import OrderedJSON
import Passes
import Runtime
import Tensors

/// `--compensate`: what a trim folds the removed structures' mean contribution into.
enum Compensation: String, ExpressibleByArgument {
    case bias
}

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

            With calibration statistics (--stats from pare calibrate, or --calibrate \
            --tokens FILE to collect them now) the choice is made from data instead: \
            Minitron's activation importance for heads (a kv group scores the sum of its \
            query heads), FFN channels and hidden channels; the norm of each expert's \
            outputs for experts; ShortGPT's block influence for --drop-layers auto:N. \
            --score picks the criteria: magnitude|activation for widths and experts, \
            frequency (routing counts) for experts, bi|last for auto layer drops. \
            pare-trim.json then records the statistics' digests, the criteria and every score. \
            --compensate bias folds the mean contribution of removed FFN channels and heads \
            into the down / output projection's bias (FLAP), turning on mlp_bias or \
            attention_bias where the family needs it.

            --hidden N prunes the residual stream's width (Minitron's embedding channels): \
            one selection for the whole model, sliced from the embeddings, the LM head, \
            every norm and every projection's hidden side.

            Every layer keeps the same counts (standard transformers classes need one number \
            per config key). A request the output could not represent is refused before \
            anything is written. OUT gets pare-trim.json, the resolved plan (every kept \
            index), so the trim can be audited and replayed.

            Examples:
              pare trim ./model ./small --drop-layers 20-23 --ffn 0.75 --dry-run
              pare trim ./model ./small --kv-heads 4 --ffn 6144
              pare trim ./mixtral ./mixtral-6e --experts 6 --json
              pare trim ./model --in-place --drop-layers 20-23
              pare trim ./model ./narrow --hidden 0.75 --heads 24
              pare trim ./model ./again --recipe ./small/pare-trim.json
              pare trim ./model ./small --stats stats.safetensors --ffn 0.5 --drop-layers auto:4
              pare trim ./model ./small --calibrate --tokens calib.safetensors --heads 16 --score activation
              pare trim ./model ./small --drop-layers auto:4 --score last
              pare trim ./model ./small --stats stats.safetensors --ffn 0.5 --compensate bias
              pare trim ./mixtral ./m6 --experts 6 --score reconstruction --calibrate --tokens calib.safetensors
              pare trim ./model ./short --merge-layers auto --target-layers 24 --calibrate --tokens calib.safetensors
            """
    )

    @Argument(help: "Input model folder (safetensors or .pare weights), or its index.json.")
    var input: String

    @OptionGroup(title: "Model folder")
    var folders: FolderOptions

    @Argument(help: "Output folder (omit with --in-place).")
    var output: String?

    @Flag(help: "Trim IN itself: the new model is written beside it and swapped in only once complete, so the original survives any failure.")
    var inPlace = false

    @Option(help: ArgumentHelp("A recipe (YAML or JSON) with the same settings as the flags, plus explicit keep lists; flags override it. A pare-trim.json replays that trim.", valueName: "file"))
    var recipe: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Layers to remove, by index (3,20-23), or auto:N for the N chosen by --score bi (block influence, needs statistics) or last.", valueName: "list|auto:N"), transform: Parse.layerDrop)
    var dropLayers: LayerDrop?

    @Option(parsing: .unconditional, help: ArgumentHelp("Merge runs of consecutive layers into their first the LaCo way, θ_l + Σ(θ_l+k − θ_l), computed in f32 from the original weights: 20-23 or 3-4,20-23; or auto for LaCo's search down to --target-layers (with --calibrate).", valueName: "runs|auto"), transform: Parse.runs)
    var mergeLayers: LayerMerge?

    @Option(name: .customLong("target-layers"), help: ArgumentHelp("--merge-layers auto: stop at this many layers.", valueName: "N"), transform: Parse.count)
    var targetLayers: Int?

    @Option(name: .customLong("merge-span"), help: ArgumentHelp("--merge-layers auto: layers merged at a time (default 7, the LaCo authors' Llama2 setting).", valueName: "M"), transform: Parse.count)
    var mergeSpan: Int?

    @Option(name: .customLong("merge-interval"), help: ArgumentHelp("--merge-layers auto: layers to step down after an accepted merge (default 1).", valueName: "I"), transform: Parse.count)
    var mergeInterval: Int?

    @Option(help: ArgumentHelp("--merge-layers auto: the least cosine of the final hidden states against the original's that keeps a merge (default 0.45).", valueName: "T"), transform: Parse.similarity)
    var threshold: Double?

    @Option(help: ArgumentHelp("Norm weights in a merge: keep the first layer's (first, the default) or merge them too (merge).", valueName: "first|merge"))
    var mergeNorms: TrimRequest.NormPolicy?

    @Option(parsing: .unconditional, help: ArgumentHelp("Then apply N:M sparsity to the trimmed linear weights by magnitude, as pare sparsify does (a recipe's sparsify step can score with wanda).", valueName: "N:M"), transform: Parse.pattern)
    var sparsify: NMPacking.Pattern?

    @Option(parsing: .unconditional, help: ArgumentHelp("Keep N kv heads (whole GQA groups) per layer.", valueName: "N"), transform: Parse.count)
    var kvHeads: Int?

    @Option(parsing: .unconditional, help: ArgumentHelp("Keep N query heads per layer, the same number in every kv group.", valueName: "N"), transform: Parse.count)
    var heads: Int?

    @Option(parsing: .unconditional, help: ArgumentHelp("FFN size: channels (6144) or a fraction (0.75, rounded down). A fraction also applies to expert and shared-expert FFNs.", valueName: "N|fraction"), transform: Parse.size)
    var ffn: TrimRequest.Size?

    @Option(parsing: .unconditional, help: ArgumentHelp("Each routed expert's FFN size (MoE).", valueName: "N|fraction"), transform: Parse.size)
    var expertFfn: TrimRequest.Size?

    @Option(parsing: .unconditional, help: ArgumentHelp("The shared expert's FFN size (Qwen2-MoE).", valueName: "N|fraction"), transform: Parse.size)
    var sharedExpertFfn: TrimRequest.Size?

    @Option(parsing: .unconditional, help: ArgumentHelp("Keep N routed experts per MoE layer (router rows follow).", valueName: "N"), transform: Parse.count)
    var experts: Int?

    @Option(parsing: .unconditional, help: ArgumentHelp("Hidden size (Minitron's embedding channels): channels or a fraction. Refused where the class derives head_dim from hidden (GPT-2, BERT).", valueName: "N|fraction"), transform: Parse.size)
    var hidden: TrimRequest.Size?

    @OptionGroup(title: "Selection from data")
    var selection: SelectionOptions

    @Option(help: ArgumentHelp("FLAP's bias compensation: fold the mean contribution of removed FFN channels and heads (on the calibration tokens) into the down / output projection's bias; a config switch such as mlp_bias is turned on where the family needs one. Needs --stats or --calibrate.", valueName: "bias"))
    var compensate: Compensation?

    @Flag(help: "Print the plan (sizes, parameters, bytes, KV cache, config diff) and write nothing; reads no weights.")
    var dryRun = false

    @Flag(help: "Print the plan as JSON.")
    var json = false

    @OptionGroup(title: "Output")
    var out: OutputOptions

    @OptionGroup(title: "Output")
    var weights: WeightFormatOptions

    @Flag(help: "Leave the input's tensor SHA-256s out of pare-trim.json (they are hashed on another core while trimming).")
    var noHashes = false

    @OptionGroup(title: "Architecture")
    var descriptors: DescriptorOptions

    @Flag(help: "Copy tensors the architecture descriptor does not know through unchanged, instead of refusing the checkpoint.")
    var keepUnknown = false

    func validate() throws {
        let autoMerge: Bool
        if case .auto? = mergeLayers { autoMerge = true } else { autoMerge = false }
        if autoMerge != (targetLayers != nil) {
            throw ValidationError(autoMerge ? "--merge-layers auto needs --target-layers N: the depth to stop at" : "--target-layers is read by --merge-layers auto")
        }
        if !autoMerge && (mergeSpan != nil || mergeInterval != nil || threshold != nil) {
            throw ValidationError("--merge-span, --merge-interval and --threshold are read by --merge-layers auto")
        }
        if autoMerge && !selection.calibrate {
            throw ValidationError("--merge-layers auto runs the model on calibration tokens: add --calibrate --tokens FILE")
        }
        if recipe == nil && sparsify == nil && request(over: TrimRequest()).isEmpty && autoDrop == nil && !autoMerge {
            throw ValidationError("nothing to trim: give at least one of --drop-layers, --merge-layers, --kv-heads, --heads, --ffn, --expert-ffn, --shared-expert-ffn, --experts, --hidden or --recipe")
        }
        if inPlace && output != nil {
            throw ValidationError("give either OUT or --in-place, not both")
        }
        if !inPlace && output == nil && !dryRun {
            throw ValidationError("missing OUT: give an output folder, or --in-place to trim IN itself")
        }
    }

    var autoDrop: Int? {
        if case .auto(let n)? = dropLayers { return n }
        return nil
    }

    /// The recipe's request with every flag given on the command line on top.
    func request(over base: TrimRequest) -> TrimRequest {
        var request = base
        if case .runs(let runs)? = mergeLayers { request.merges = runs }
        if let mergeNorms { request.mergeNorms = mergeNorms }
        if case .layers(let layers)? = dropLayers { request.dropLayers = layers }
        let given: [(Axis, TrimRequest.Size?)] = [
            (.kvHeads, kvHeads.map(TrimRequest.Size.count)), (.heads, heads.map(TrimRequest.Size.count)),
            (.experts, experts.map(TrimRequest.Size.count)), (.ffn, ffn), (.expertFFN, expertFfn),
            (.sharedExpertFFN, sharedExpertFfn), (.hidden, hidden),
        ]
        for case let (axis, size?) in given { request.sizes[axis] = size }
        return request
    }

    func run() throws {
        try reportingFailures {
            // In place, the lock is taken before the model is read: a plan made from a model
            // that another run then replaces would undo that run's work.
            let lock = inPlace && !dryRun ? try out.lock(replacing: input) : nil
            defer { withExtendedLifetime(lock) {} }
            let model = try ModelFolder(path: input, followSymlinks: folders.followSymlinks)
            let graph = try ModelGraph(model: model, registry: try descriptors.registry())
            let recipe = try recipe.map { path throws(RecipeError) in try Recipe.load(path: path) } ?? Recipe()
            var step = recipe.sparsify
            if let sparsify {
                step = step.map { var s = $0; s.pattern = sparsify; return s } ?? SparsifyStep(pattern: sparsify)
            }
            // A flag overrides the recipe: its keep lists for that axis go (a count for heads
            // replaces the lists of kv heads and of the query heads inside them).
            var overridden = Set<Axis>()
            for (axis, _) in request(over: TrimRequest()).sizes {
                overridden.formUnion(TrimRequest.planAxes(for: axis))
            }
            var request = request(over: recipe.request)
            let explicit = recipe.plan.dropping(overridden)
            let searchExperts = selection.score?.experts == .reconstruction ? request.count(.experts) : nil
            // Widths, auto drops and compensation read statistics; LaCo alone does not.
            let needed = !request.sizes.isEmpty || autoDrop != nil || compensate != nil || selection.score != nil
            let evidence = try selection.evidence(for: model, graph: graph, searchExperts: searchExperts, needed: needed, quiet: out.quiet || json)
            let statistics = evidence?.statistics
            let criteria = (selection.score ?? TrimCriteria()).resolved(hasStatistics: statistics != nil)
            if criteria.needsStatistics && statistics == nil {
                let named = [criteria.width, criteria.depth, criteria.experts].compactMap { $0 }.first { $0 != .magnitude && $0 != .last }
                throw TrimError.criterion(name: named?.rawValue ?? "", problem: "ranks by calibration statistics: give --stats FILE (from pare calibrate) or --calibrate --tokens FILE")
            }
            var depth: [(key: String, value: JSONValue)] = []
            if let targetLayers {
                guard request.merges.isEmpty, request.dropLayers.isEmpty, autoDrop == nil else {
                    throw TrimError.criterion(name: "--merge-layers auto", problem: "chooses every merge itself; give it without other layer drops or merges")
                }
                let (runs, record) = try selection.collapse(
                    graph: graph, targetLayers: targetLayers, span: mergeSpan, interval: mergeInterval, threshold: threshold,
                    mergeNorms: request.mergeNorms == .merge, quiet: out.quiet || json)
                request.merges = runs
                depth.append(("merge", record))
            }
            if let count = autoDrop {
                let excluded = Set(request.dropLayers).union(request.merges.joined())
                let (layers, record) = try DepthSelection.choose(
                    count, criterion: criteria.depth, statistics: statistics, layers: graph.binding.layerCount, excluded: excluded)
                request.dropLayers += layers
                depth.append(("drop", record))
            }
            let depthRecord: JSONValue? = depth.isEmpty ? nil : .object(depth)
            let scores = evidence.map {
                ActivationScores(statistics: $0.statistics, criteria: criteria, binding: graph.binding, expertSubsets: $0.expertSubsets)
            }
            if compensate != nil && statistics == nil {
                throw ValidationError("--compensate bias folds in the mean of each removed channel on calibration tokens: give --stats FILE or --calibrate --tokens FILE")
            }
            let job = try TrimJob(
                graph: graph, request: request, explicit: explicit, sparsify: step,
                keepUnknown: keepUnknown, dryRun: dryRun, selectionScores: scores, depthRecord: depthRecord,
                compensation: compensate == nil ? nil : statistics)
            warn(job.warnings)
            if dryRun {
                let report = job.report(job.summary(dryRun: true))
                StandardStream.standardOutput.write(json ? report.json.serialized(.pretty) + "\n" : report.text)
                return
            }
            let hasher = noHashes ? nil : TensorHasher(model: model)
            let provenance = Provenance.thisRun(input: input)
            // In place through a symlink: the folder it points at is replaced and the link
            // kept (swapping at the link's path would put a folder where the link was).
            let destination = output ?? (inPlace ? FileSystem.realPath(model.root ?? model.path) : nil) ?? model.root ?? model.path
            let outputLock = !inPlace && out.force ? try out.lock(replacing: destination) : nil
            defer { withExtendedLifetime(outputLock) {} }
            let writer = try job.writer(
                to: destination,
                options: .init(maxShardSize: out.maxShardSize.bytes, force: out.force, replacesInput: inPlace, format: weights.format, pare: weights.pare))
            try runShowingProgress(writer, label: "trimming", quiet: out.quiet, lateFiles: job.provenanceFiles(provenance, hasher: hasher))
            let report = job.report(try job.finalSummary())
            if json {
                StandardStream.standardOutput.write(report.json.serialized(.pretty) + "\n")
            } else if !out.quiet {
                StandardStream.standardError.write(report.text)
                StandardStream.standardError.write("wrote \(destination)\n")
            }
        }
    }
}
