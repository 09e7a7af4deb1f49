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
              pare sparsify ./model --pattern 2:4 --dry-run
              pare sparsify ./model ./m24 --pattern 2:4 --format compressed-tensors
              pare sparsify ./model ./m48 --pattern 4:8 --score wanda --stats s.safetensors
              pare sparsify ./model ./m24 --pattern 2:4 --ignore self_attn --format pare
            """
    )

    @Argument(help: "Input model folder (or its index.json).")
    var input: String

    @OptionGroup(title: "Model folder")
    var folders: FolderOptions

    @Argument(help: "Output folder (not needed with --dry-run).")
    var output: String?

    @Option(parsing: .unconditional, help: ArgumentHelp("Keep N of every M consecutive elements (1 ≤ N < M ≤ 16).", valueName: "N:M"), transform: Parse.pattern)
    var pattern: NMPacking.Pattern

    @Option(help: ArgumentHelp("How elements are ranked in a group.", valueName: "magnitude|wanda"))
    var score: SparsifyRequest.Score = .magnitude

    @Option(help: ArgumentHelp("Activation statistics for --score wanda (safetensors, '<weight>.input_norm' per target).", valueName: "file"))
    var stats: String?

    @Option(help: ArgumentHelp("Sparsify every 2-D float tensor whose name matches, instead of the default linear weights.", valueName: "regex"))
    var targets: String?

    @Option(help: ArgumentHelp("Leave tensors whose name matches dense.", valueName: "regex"))
    var ignore: String?

    @Option(help: ArgumentHelp("Layout of the sparse weights (default: dense).", valueName: LayoutRegistry.names.joined(separator: "|")), transform: Parse.layout)
    var format: any SparseLayout = DenseLayout()

    @Flag(help: "Print the plan (targets, parameters zeroed, bytes) without reading weights or writing anything.")
    var dryRun = false

    @Flag(help: "Print the plan as one JSON object on stdout.")
    var json = false

    @OptionGroup(title: "Output")
    var out: OutputOptions

    @OptionGroup(title: "Architecture")
    var descriptors: DescriptorOptions

    func validate() throws {
        if output == nil && !dryRun {
            throw ValidationError("missing OUT: give an output folder, or --dry-run to print the plan")
        }
    }

    func run() throws {
        try reportingFailures {
            let model = try ModelFolder(path: input, followSymlinks: folders.followSymlinks)
            let request = SparsifyRequest(
                pattern: pattern, score: score, statsPath: stats, targets: targets, ignore: ignore, layout: format)
            let plan = try SparsifyPlan(model: model, request: request, registry: try descriptors.registry())
            let summary = SparsifySummary(plan)
            warn(plan.warnings)
            if dryRun {
                StandardStream.standardOutput.write(json ? summary.json.serialized(.pretty) + "\n" : summary.text)
                return
            }
            guard let output else { return }
            let lock = out.force ? try out.lock(replacing: output) : nil
            defer { withExtendedLifetime(lock) {} }
            let provenance = Provenance.thisRun(input: input)
            let writer = try CheckpointWriter(
                input: model, output: output,
                options: .init(maxShardSize: out.maxShardSize.bytes, force: out.force, format: request.layout.weightFormat),
                items: plan.items, config: plan.config)
            try runShowingProgress(writer, label: "sparsifying", quiet: out.quiet) {
                [Provenance.file("pare-sparsify.json", provenance.record(plan: summary.json))]
            }
            if json {
                StandardStream.standardOutput.write(summary.json.serialized(.pretty) + "\n")
            } else if !out.quiet {
                StandardStream.standardError.write(summary.text)
                StandardStream.standardError.write("wrote \(output)\n")
            }
        }
    }
}
