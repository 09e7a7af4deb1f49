import ModelFolder
import PareFormat
import Tensors

/// Writes a checkpoint from a model folder: its tensors as planned items (copied, cast,
/// trimmed, merged or transformed), re-sharded, in either weight format, with its config
/// and every other file, streaming.
///
/// Everything that can be refused is refused when the writer is made, before anything is
/// written. The output is assembled beside the destination and swapped into place only
/// once complete and flushed (`StagedOutput`). The input is only ever read.
public struct CheckpointWriter: Sendable {
    public struct Options: Sendable {
        /// Cast F32/F16/BF16 tensors to this dtype; `nil` keeps every dtype.
        public var dtype: DType?
        /// Largest shard in tensor bytes; transformers' default is 5 GB.
        public var maxShardSize: Int
        /// Replace an existing output.
        public var force: Bool
        /// The output is the input itself (`--in-place`): the new model is written beside it
        /// and swapped in only once complete, so the original survives any failure.
        public var replacesInput: Bool
        /// The format of the output's weight files.
        public var format: WeightFormat
        /// Compression settings for `.pare` output.
        public var pare: PareWriter.Options

        public init(
            dtype: DType? = nil, maxShardSize: Int = 5_000_000_000, force: Bool = false, replacesInput: Bool = false,
            format: WeightFormat = .safetensors, pare: PareWriter.Options = .init()
        ) {
            self.dtype = dtype
            self.maxShardSize = maxShardSize
            self.force = force
            self.replacesInput = replacesInput
            self.format = format
            self.pare = pare
        }
    }

    public let input: ModelFolder
    public let options: Options
    public let plan: OutputPlan
    /// The config to write (the input's when nothing changes it).
    public let config: ModelConfig?
    /// Where items that select indices get their final selections, if not from the item.
    public let selectionSource: SelectionSource?
    let staged: StagedOutput

    /// Where the output goes.
    public var output: String { staged.destination }

    /// Plans a conversion: every tensor copied, cast to `options.dtype` where it is a float.
    public init(input: ModelFolder, output: String, options: Options) throws(EmitError) {
        if options.dtype != nil, input.config?.json["quantization_config"] != nil {
            throw .quantizedCast(path: input.path)
        }
        let items = input.tensors.map { tensor in
            var dtype = tensor.info.dtype
            if let target = options.dtype, dtype.isCastable { dtype = target }
            return OutputItem(source: tensor, entry: .init(name: tensor.info.name, dtype: dtype, shape: tensor.info.shape))
        }
        var config = input.config
        if let dtype = options.dtype { config?.setDType(dtype) }
        try self.init(input: input, output: output, options: options, items: items, config: config)
    }

    /// Plans writing `items` (in order) with `config` into `output`.
    public init(
        input: ModelFolder, output: String, options: Options, items: [OutputItem], config: ModelConfig?,
        selectionSource: SelectionSource? = nil
    ) throws(EmitError) {
        var items = items
        for i in items.indices { items[i].order = i }
        self.input = input
        self.options = options
        self.config = config
        self.selectionSource = selectionSource
        plan = try OutputPlan(input: input, output: output, items: items, format: options.format, maxShardSize: options.maxShardSize)
        staged = try StagedOutput(
            destination: PathName.trimTrailingSlashes(output), isFolder: !plan.writesSingleFile, input: input,
            force: options.force, replacesInput: options.replacesInput)
    }

    /// Reports progress and asks whether to go on: called with (bytes done, bytes total)
    /// at least every 64 MiB; returning `false` stops the run, which then cleans up and
    /// throws `EmitError.interrupted`.
    public typealias Progress = (_ done: Int, _ total: Int) -> Bool

    /// Writes the output. Returns warnings about leftovers that could not be removed after
    /// the new output was already in place (the writing itself succeeded).
    ///
    /// `lateFiles` is called once the tensors are written, for extra files of the output
    /// folder whose content may depend on work done meanwhile (a provenance record with
    /// hashes of the input computed alongside); a file of the input with the same name is
    /// replaced.
    @discardableResult
    public func run(
        progress: Progress = { _, _ in true },
        lateFiles: () throws(EmitError) -> [(name: String, bytes: [UInt8])] = { [] }
    ) throws(EmitError) -> [String] {
        let total = plan.tensorBytes
        let pipeline = TensorPipeline(input: input, plan: plan, pare: options.pare, selectionSource: selectionSource)
        do throws(EmitError) {
            // A conversion reads every tensor of a .pare input, so it checks the bytes no
            // chunk covers as well: damage anywhere in the file stops it.
            for case .pare(let file, _) in input.shards {
                do throws(PareError) { try file.verifyPadding() } catch { throw .input(.pare(error)) }
            }
            let cleaned = try staged.begin()
            if plan.writesSingleFile {
                try pipeline.write(plan.shards[0], to: staged.staging, done: 0, total: total, progress: progress)
            } else {
                var done = 0
                for shard in plan.shards {
                    try pipeline.write(shard, to: staged.path(of: shard.fileName), done: done, total: total, progress: progress)
                    done += shard.tensorBytes
                }
                let late = try lateFiles()
                try writeOtherFiles(late: late, progress: progress)
            }
            try keepPermissions()
            try staged.flush(weightFiles: plan.shards.map(\.fileName))
            // Last chance to stop: after this the output is replaced.
            if !progress(total, total) { throw .interrupted }
            return cleaned + (try staged.commit())
        } catch {
            staged.discard()
            throw error
        }
    }
}
