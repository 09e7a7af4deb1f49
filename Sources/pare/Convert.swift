import ArgumentParser
import ModelFolder
import Tensors

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Cast dtypes and re-shard a checkpoint, streaming, into a new folder.",
        discussion: """
            Reads IN (a model folder, a .safetensors file or a model.safetensors.index.json) \
            and writes OUT as a model folder: model.safetensors, or \
            model-0000i-of-0000n.safetensors plus model.safetensors.index.json when the \
            weights exceed --max-shard-size. config.json is copied with its keys in order \
            (with --dtype, its torch_dtype/dtype entries are updated); every other file \
            (tokenizer, generation_config.json, README, ...) is copied unchanged. Given a \
            single .safetensors file as IN and a name ending in .safetensors as OUT, writes \
            one file.

            Only F32, F16 and BF16 tensors are cast (round to nearest even, exact for \
            subnormals and infinities); integer, bool, F64 and FP8 tensors pass unchanged. \
            Memory stays bounded by a few MiB whatever the model size.

            OUT is assembled in a hidden folder beside it and renamed into place when \
            complete: an interrupted run leaves nothing half-written, and IN is never \
            modified (an OUT inside IN, or IN inside OUT, is refused).

            Examples:
              pare convert ./model ./model-bf16 --dtype bf16
              pare convert ./model ./model-resharded --max-shard-size 2GB
              pare convert ./model.safetensors ./model-f16.safetensors --dtype f16
            """
    )

    @Argument(help: "Input: model folder, .safetensors file, or model.safetensors.index.json.")
    var input: String

    @Argument(help: "Output folder (or .safetensors file when IN is a single file).")
    var output: String

    @Option(help: ArgumentHelp("Cast floating tensors to this dtype.", valueName: "f32|f16|bf16"))
    var dtype: String?

    @Option(help: ArgumentHelp("Largest shard, in tensor bytes: 5GB, 500MB, 2GiB or a byte count.", valueName: "size"))
    var maxShardSize = "5GB"

    @Flag(help: "Replace OUT if it exists (it is swapped out only once the new one is complete).")
    var force = false

    @Flag(help: "No progress bar.")
    var quiet = false

    func validate() throws {
        if let dtype, DType(castName: dtype) == nil {
            throw ValidationError("--dtype must be one of f32, f16, bf16 (got '\(dtype)')")
        }
        if ByteSize.parse(maxShardSize) == nil {
            throw ValidationError("--max-shard-size must be a positive size such as 5GB, 500MB or 2GiB (got '\(maxShardSize)')")
        }
    }

    func run() throws {
        try reportingFailures {
            let model = try ModelFolder(path: input)
            let options = Conversion.Options(
                dtype: dtype.flatMap(DType.init(castName:)),
                maxShardSize: ByteSize.parse(maxShardSize)!,
                force: force
            )
            let conversion = try Conversion(input: model, output: output, options: options)
            try runShowingProgress(conversion, label: "converting", quiet: quiet)
            if !quiet {
                let files = conversion.shards.count
                StandardStream.standardError.write(
                    "wrote \(output): \(model.tensors.count) tensors, \(ByteSize.describe(conversion.outputTensorBytes)) in \(files) file\(files == 1 ? "" : "s")\n")
            }
        }
    }
}
