import ArgumentParser
import ModelFolder
import ModelGraph
import OrderedJSON
import Passes
import Tensors

struct Trim: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Physically remove layers, attention heads, FFN channels and experts.",
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
            """
    )

    @Argument(help: "Input model folder (or model.safetensors.index.json).")
    var input: String

    @Argument(help: "Output folder.")
    var output: String

    @Option(help: ArgumentHelp("Layers to remove, by index: 3,20-23.", valueName: "list"))
    var dropLayers: String?

    @Option(help: ArgumentHelp("Merge runs of consecutive layers into their first the LaCo way, θ_l + Σ(θ_l+k − θ_l), computed in f32 from the original weights: 20-23 or 3-4,20-23.", valueName: "runs"))
    var mergeLayers: String?

    @Option(help: ArgumentHelp("Norm weights in a merge: keep the first layer's (first) or merge them too (merge).", valueName: "first|merge"))
    var mergeNorms = "first"

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

    @Option(help: ArgumentHelp("Also read architecture descriptors from this folder.", valueName: "dir"))
    var formats: String?

    func validate() throws {
        if let dropLayers, Self.parseLayers(dropLayers) == nil {
            throw ValidationError("--drop-layers takes indices and ranges such as 3,20-23 (got '\(dropLayers)')")
        }
        if let mergeLayers, Self.parseRuns(mergeLayers) == nil {
            throw ValidationError("--merge-layers takes runs of consecutive layers such as 20-23 or 3-4,20-23 (got '\(mergeLayers)')")
        }
        if TrimRequest.NormPolicy(rawValue: mergeNorms) == nil {
            throw ValidationError("--merge-norms is first or merge (got '\(mergeNorms)')")
        }
        for (flag, value) in [("--ffn", ffn), ("--expert-ffn", expertFfn), ("--shared-expert-ffn", sharedExpertFfn)] {
            if let value, TrimRequest.Size(value) == nil {
                throw ValidationError("\(flag) takes a channel count (6144) or a fraction in (0, 1] (0.75); got '\(value)'")
            }
        }
        if ByteSize.parse(maxShardSize) == nil {
            throw ValidationError("--max-shard-size must be a positive size such as 5GB or 500MB (got '\(maxShardSize)')")
        }
    }

    static func parseLayers(_ text: String) -> [Int]? {
        var result: [Int] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            if bounds.count == 1, let n = Int(bounds[0]), n >= 0 {
                result.append(n)
            } else if bounds.count == 2, let a = Int(bounds[0]), let b = Int(bounds[1]), a >= 0, a <= b {
                result += Array(a...b)
            } else {
                return nil
            }
        }
        return result
    }

    /// `3-4,20-23` → [[3, 4], [20, 21, 22, 23]].
    static func parseRuns(_ text: String) -> [[Int]]? {
        var runs: [[Int]] = []
        for part in text.split(separator: ",", omittingEmptySubsequences: false) {
            let bounds = part.split(separator: "-", omittingEmptySubsequences: false)
            guard bounds.count == 2, let a = Int(bounds[0]), let b = Int(bounds[1]), a >= 0, a < b else { return nil }
            runs.append(Array(a...b))
        }
        return runs
    }

    var request: TrimRequest {
        var request = TrimRequest()
        request.merges = mergeLayers.flatMap(Self.parseRuns) ?? []
        request.mergeNorms = TrimRequest.NormPolicy(rawValue: mergeNorms) ?? .first
        request.dropLayers = dropLayers.flatMap(Self.parseLayers) ?? []
        request.kvHeads = kvHeads
        request.heads = heads
        request.ffn = ffn.flatMap(TrimRequest.Size.init)
        request.expertFFN = expertFfn.flatMap(TrimRequest.Size.init)
        request.sharedExpertFFN = sharedExpertFfn.flatMap(TrimRequest.Size.init)
        request.experts = experts
        return request
    }

    func run() throws {
        try reportingFailures {
            let model = try ModelFolder(path: input)
            let registry = try formats.map { dir throws(GraphError) in try DescriptorRegistry.loading(directory: dir) } ?? .builtin
            let graph = try ModelGraph(model: model, registry: registry)
            if let problem = graph.problems.first {
                throw TrimError.graph(problem)
            }
            var planner = TrimPlanner(graph: graph, scores: !dryRun)
            let plan = try planner.plan(request)
            let trimmed = try TrimmedModel(graph: graph, plan: plan)
            let summary = TrimSummary(trimmed, indicesAreFinal: !dryRun)
            if dryRun {
                StandardStream.standardOutput.write(json ? summary.json.serialized(.pretty) + "\n" : summary.text)
                return
            }
            let provenance = JSONValue.object([
                ("tool", .string("pare \(Pare.configuration.version)")),
                ("input", .string(input)),
                ("request", .string(CommandLine.arguments.dropFirst().joined(separator: " "))),
                ("plan", plan.json),
                ("input_files", .array(model.shards.enumerated().map { i, shard in
                    .object([("file", .string(PathName.lastComponent(model.shardNames[i]))), ("bytes", .integer(shard.fileSize))])
                })),
            ])
            let conversion = try Conversion(
                input: model, output: output,
                options: .init(maxShardSize: ByteSize.parse(maxShardSize)!, force: force),
                items: trimmed.items, config: trimmed.config,
                extraFiles: [("pare-trim.json", Array((provenance.serialized(.pretty) + "\n").utf8))])
            let bar = ProgressBar(label: "trimming", quiet: quiet)
            Interruption.install()
            defer { bar.finish() }
            let warnings = try conversion.run { done, total in
                bar.update(done: done, total: total)
                return !Interruption.isRequested
            }
            bar.finish()
            for warning in warnings { StandardStream.standardError.write("pare: warning: \(warning)\n") }
            if json {
                StandardStream.standardOutput.write(summary.json.serialized(.pretty) + "\n")
            } else if !quiet {
                StandardStream.standardError.write(summary.text)
                StandardStream.standardError.write("wrote \(output)\n")
            }
        }
    }
}
