import ArgumentParser
import Calibration
import Foundation
import ModelFolder
import ModelGraph
import OrderedJSON
import Runtime
import Tensors

struct Calibrate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on calibration tokens and write the statistics data-aware trims read.",
        discussion: """
            pare runs the model itself, on the CPU, one layer at a time (as pare eval does), \
            and records, in one safetensors file of F32 tensors (formats/stats.md):

              <weight>.input_norm          Wanda: sqrt(Σ x²) per input channel of every \
            linear weight (pare sparsify --score wanda)
              layers.L.attention.heads     Minitron importance of each query head
              layers.L.mlp.channels        Minitron importance of each FFN channel (also \
            per expert, and for the shared expert)
              hidden                       Minitron importance of each hidden channel
              layers.L.block_influence     ShortGPT: 1 − mean cos(layer input, output)
              layers.L.router.*            MoE: tokens and summed weight per expert, NAEE's β
              layers.L.experts.output_norm MoE: the norm of each expert's outputs

            Minitron importance of an activation X[b, t, c] is sqrt(Σ_b (mean_t |X[b, t, c]|)²) \
            over sequences b and their tokens t. The metadata records the token count, the \
            windows and the SHA-256 of the model's index (or single weight file), which \
            pare trim --stats checks.

            A few hundred thousand tokens of text like the model's use are typical (Minitron \
            used 1024 samples; ShortGPT and Wanda, 128 × 2048 tokens). The file is written \
            aside and renamed when complete.

            Examples:
              pare calibrate ./model --tokens calib.safetensors -o stats.safetensors
              pare calibrate ./model --tokens ids.jsonl --seq-len 2048 --samples 128 -o stats.safetensors --json
              pare trim ./model ./small --stats stats.safetensors --ffn 0.5
            """
    )

    @Argument(help: "Model folder to calibrate (safetensors or .pare).")
    var model: String

    @OptionGroup(title: "Model folder")
    var folders: FolderOptions

    @OptionGroup(title: "Tokens")
    var text: TokenOptions

    @Option(name: [.customShort("o"), .long], help: ArgumentHelp("The statistics file to write (safetensors).", valueName: "file"))
    var output: String

    @Option(help: ArgumentHelp("Threads for OpenBLAS and pare's own loops (default: every core).", valueName: "N"),
            transform: Parse.count)
    var threads: Int?

    @Flag(help: "Replace an existing statistics file.")
    var force = false

    @Flag(help: "Print one JSON object (stable field names) instead of text.")
    var json = false

    @Flag(help: "No progress bar.")
    var quiet = false

    @OptionGroup var descriptors: DescriptorOptions

    func run() throws {
        try reportingFailures {
            if !force, FileSystem.kind(of: output) != nil {
                throw RuntimeError.io(path: output, problem: "already exists (give --force to replace it)")
            }
            let folder = try ModelFolder(path: model, followSymlinks: folders.followSymlinks)
            let plan = try ForwardPlan(graph: try ModelGraph(model: folder, registry: try descriptors.registry()))
            let batch = try text.source.batch(model: model, for: plan, followSymlinks: folders.followSymlinks)
            let cores = threads ?? FloatConversion.activeCores
            BLAS.threads = cores
            let metadata = try StatisticsFile.metadata(model: folder, batch: batch, source: text.source.path)
            let pass = try CalibrationPass(plan: plan, batch: batch, threads: cores, source: text.source.path)
            let result = try ProgressBar.running("calibrate", quiet: quiet || json, tokens: batch.tokenCount) { progress in
                try pass.run(progress: progress)
            }
            try StatisticsFile.write(result.statistics, metadata: metadata, to: output)
            if json {
                let members: [(key: String, value: JSONValue)] = [
                    ("model", .string(model)),
                    ("family", .string(plan.family)),
                    ("output", .string(output)),
                    ("model_sha256", .string(metadata.first { $0.key == "model_sha256" }!.value)),
                    ("sequences", .integer(result.sequences)),
                    ("tokens", .integer(result.tokens)),
                    ("statistics", .integer(result.statistics.count)),
                    ("seconds", .double(result.seconds)),
                    ("tokens_per_second", .double(result.tokensPerSecond)),
                    ("threads", .integer(cores)),
                    ("blas_core", .string(BLAS.coreName)),
                    ("resident_bytes", .integer(result.residentBytes)),
                    ("peak_rss_bytes", .integer(ProcessMemory.peakResidentBytes)),
                ]
                StandardStream.standardOutput.write(JSONValue.object(members).serialized(.pretty) + "\n")
            } else if !quiet {
                StandardStream.standardError.write(
                    "\(model) (\(plan.family)): \(counted(result.sequences, "sequence")), \(counted(result.tokens, "token")) in \(String(format: "%.2f", result.seconds)) s (\(String(format: "%.0f", result.tokensPerSecond)) tokens/s)\n"
                        + "wrote \(result.statistics.count) statistics to \(output)\n")
            }
        }
    }
}
