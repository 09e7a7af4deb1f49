import ArgumentParser
import Emit
import ModelFolder
import ModelGraph
import OrderedJSON
import Passes
import Tensors

struct Sparsify: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply N:M (2:4) sparsity and write dense, packed or compressed weights.",
        discussion: """
            Cuts each target weight into groups of M consecutive elements along its input \
            dimension (each row of an nn.Linear [out, in]; each column of a GPT-2 Conv1D \
            [in, out]) and keeps the N with the highest score; the rest become zero. Ties \
            go to the lower index, so the result is deterministic.

            Targets: by default the linear weights of the layers as the architecture \
            descriptor names them (attention q/k/v/o, MLP gate/up/down, expert and \
            shared-expert projections); embeddings, lm_head, routers, norms and biases stay \
            dense. --targets REGEX replaces that set with every 2-D float tensor whose name \
            matches; --ignore REGEX leaves matches out.

            Scores: magnitude |w|, or wanda |w_ij|·‖x_j‖₂ with per-input-channel activation \
            norms from --stats: a safetensors file holding, for each target weight W, an F32 \
            tensor named '<W>.input_norm' of length in_features (the L2 norm of input \
            channel j over the calibration tokens). Any calibration tool can write it.

            Formats:
              dense               safetensors with zeros in place (loads anywhere)
              compressed-tensors  the sparse-24-bitmask layout of compressed-tensors 0.14.0.1
                                  (.compressed/.bitmask/.shape + sparsity_config); current
                                  vLLM no longer runs it — for today's runtimes use dense
              cutlass             <W>.values [m, k/2] and <W>.meta (int16) as torch's
                                  SparseSemiStructuredTensorCUTLASS takes them (F16/BF16;
                                  see tools/load_cutlass.py)
              pare                .pare files with the sparse weights N:M-packed

            OUT gets pare-sparsify.json recording the request and the targets.

            Examples:
              pare sparsify ./model ./model-24 --pattern 2:4 --dry-run
              pare sparsify ./model ./model-24 --pattern 2:4 --format compressed-tensors
              pare sparsify ./model ./model-48 --pattern 4:8 --score wanda --stats norms.safetensors
              pare sparsify ./model ./model-24 --pattern 2:4 --ignore 'self_attn' --format pare
            """
    )

    @Argument(help: "Input model folder (or its index.json).")
    var input: String

    @Argument(help: "Output folder.")
    var output: String

    @Option(help: ArgumentHelp("Keep N of every M consecutive elements (1 ≤ N < M ≤ 16).", valueName: "N:M"))
    var pattern: String

    @Option(help: ArgumentHelp("How elements are ranked in a group.", valueName: "magnitude|wanda"))
    var score = "magnitude"

    @Option(help: ArgumentHelp("Activation statistics for --score wanda (safetensors, '<weight>.input_norm' per target).", valueName: "file"))
    var stats: String?

    @Option(help: ArgumentHelp("Sparsify every 2-D float tensor whose name matches, instead of the default linear weights.", valueName: "regex"))
    var targets: String?

    @Option(help: ArgumentHelp("Leave tensors whose name matches dense.", valueName: "regex"))
    var ignore: String?

    @Option(help: ArgumentHelp("Layout of the sparse weights.", valueName: LayoutRegistry.names.joined(separator: "|")))
    var format = "dense"

    @Option(help: ArgumentHelp("Largest shard, in tensor bytes: 5GB, 500MB, 2GiB or a byte count.", valueName: "size"))
    var maxShardSize = "5GB"

    @Option(help: ArgumentHelp("Also read architecture descriptors from this folder (they win over built-in ones).", valueName: "dir"))
    var formats: String?

    @Flag(help: "Print the plan (targets, parameters zeroed, bytes) without reading weights or writing anything.")
    var dryRun = false

    @Flag(help: "Print the plan as one JSON object on stdout.")
    var json = false

    @Flag(help: "Replace OUT if it exists (it is swapped out only once the new one is complete).")
    var force = false

    @Flag(help: "No progress bar or report.")
    var quiet = false

    func validate() throws {
        if NMPacking.Pattern(pattern) == nil {
            throw ValidationError("--pattern must be N:M with 1 ≤ N < M ≤ 16, such as 2:4 or 4:8 (got '\(pattern)')")
        }
        if SparsifyRequest.Score(rawValue: score) == nil {
            throw ValidationError("--score must be magnitude or wanda (got '\(score)')")
        }
        if LayoutRegistry.layout(named: format) == nil {
            throw ValidationError("--format must be one of \(LayoutRegistry.names.joined(separator: ", ")) (got '\(format)')")
        }
        if ByteSize.parse(maxShardSize) == nil {
            throw ValidationError("--max-shard-size must be a positive size such as 5GB or 500MB (got '\(maxShardSize)')")
        }
    }

    func run() throws {
        try reportingFailures {
            let model = try ModelFolder(path: input)
            let registry = try formats.map { dir throws(GraphError) in try DescriptorRegistry.loading(directory: dir) } ?? .builtin
            let request = SparsifyRequest(
                pattern: NMPacking.Pattern(pattern)!, score: SparsifyRequest.Score(rawValue: score)!, statsPath: stats,
                targets: targets, ignore: ignore, layout: LayoutRegistry.layout(named: format)!)
            let plan = try SparsifyPlan(model: model, request: request, registry: registry)
            let summary = SparsifySummary(plan)
            warn(plan.warnings)
            if dryRun {
                StandardStream.standardOutput.write(json ? summary.json.serialized(.pretty) + "\n" : summary.text)
                return
            }
            let arguments = CommandLine.arguments.dropFirst().joined(separator: " ")
            let provenance: JSONValue = .object([
                ("tool", .string("pare \(Pare.configuration.version)")),
                ("input", .string(input)),
                ("request", .string(arguments)),
                ("plan", summary.json),
            ])
            let writer = try CheckpointWriter(
                input: model, output: output,
                options: .init(maxShardSize: ByteSize.parse(maxShardSize)!, force: force, format: request.layout.weightFormat),
                items: plan.items, config: plan.config)
            try runShowingProgress(writer, label: "sparsifying", quiet: quiet) {
                [("pare-sparsify.json", Array((provenance.serialized(.pretty) + "\n").utf8))]
            }
            if json {
                StandardStream.standardOutput.write(summary.json.serialized(.pretty) + "\n")
            } else if !quiet {
                StandardStream.standardError.write(summary.text)
                StandardStream.standardError.write("wrote \(output)\n")
            }
        }
    }
}
