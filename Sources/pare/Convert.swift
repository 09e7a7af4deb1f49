import ArgumentParser
import Emit
import ModelFolder
import PareFormat
import Tensors

struct Convert: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Convert between safetensors and .pare, cast dtypes and re-shard, streaming.",
        discussion: """
            Reads IN (a model folder, a .safetensors or .pare file, or a \
            model.safetensors.index.json / model.pare.index.json) and writes OUT as a model \
            folder: model.safetensors, or model-0000i-of-0000n.safetensors plus \
            model.safetensors.index.json when the weights exceed --max-shard-size. With \
            --format pare the weights go into model.pare (or .pare shards with \
            model.pare.index.json): pare's lossless compressed format (formats/pare.md), which \
            picks per tensor byte-grouped zstd, N:M packing for N:M-sparse tensors, a bitmask \
            for other sparse ones, or raw bytes. Converting back gives the same bytes; every \
            chunk is checked against its CRC-32C as it is decoded. config.json is copied with its keys in order \
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
              pare convert ./model ./model-packed --format pare
              pare convert ./model-packed ./model-again          # back to safetensors
            """
    )

    @Argument(help: "Input: model folder, .safetensors or .pare file, or its .index.json.")
    var input: String

    @OptionGroup(title: "Model folder")
    var folders: FolderOptions

    @Argument(help: "Output folder (or .safetensors file when IN is a single file).")
    var output: String

    @Option(parsing: .unconditional, help: ArgumentHelp("Cast floating tensors to this dtype.", valueName: "f32|f16|bf16"), transform: Parse.dtype)
    var dtype: DType?

    @OptionGroup(title: "Output")
    var out: OutputOptions

    @OptionGroup(title: "Output")
    var weights: WeightFormatOptions

    func run() throws {
        try reportingFailures {
            let lock = out.force ? try out.lock(replacing: output) : nil
            defer { withExtendedLifetime(lock) {} }
            let model = try ModelFolder(path: input, followSymlinks: folders.followSymlinks)
            let options = CheckpointWriter.Options(
                dtype: dtype, maxShardSize: out.maxShardSize.bytes, force: out.force, format: weights.format, pare: weights.pare)
            let writer = try CheckpointWriter(input: model, output: output, options: options)
            try runShowingProgress(writer, label: "converting", quiet: out.quiet)
            if !out.quiet {
                let plan = writer.plan
                let files = plan.shards.count
                let onDisk = plan.writesSingleFile
                    ? [output]
                    : plan.shards.map { PathName.join(output, $0.fileName) }
                let stored = onDisk.reduce(0) { $0 + ((try? FileSystem.fileSize($1)) ?? 0) }
                let ratio = plan.tensorBytes > 0 ? Double(stored) / Double(plan.tensorBytes) : 1
                let sizes = weights.format == .pare
                    ? "\(ByteSize.describe(plan.tensorBytes)) of tensors stored in \(ByteSize.describe(stored)) (\(ByteSize.format(ratio, 3))×)"
                    : ByteSize.describe(plan.tensorBytes)
                StandardStream.standardError.write(
                    "wrote \(output): \(counted(model.tensors.count, "tensor")), \(sizes) in \(counted(files, "file"))\n")
            }
        }
    }
}
