import Dispatch
#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import PareFormat
import SafeTensors
import Tensors

/// Supplies an item's kept indices when the writer reaches it, for plans that are finished
/// layer by layer while the output is written (scores computed just in time).
public protocol SelectionSource: AnyObject, Sendable {
    /// The selections of item `index` (its position in the conversion's item list).
    func selections(forItem index: Int) throws(ModelFolderError) -> [[Int]?]?
}

/// Computes an output tensor from its source tensor's bytes, a block of rows at a time, so
/// that a pass (N:M sparsity, a packed layout) streams like a copy.
///
/// Output rows follow input rows: input rows `r` give `entryBytes · r.count / rows` output
/// bytes. A transform whose output is not laid out by rows asks for all rows at once.
public protocol TensorTransform: Sendable {
    /// Input rows transformed together (a step is a multiple of it); 0 for all at once.
    var rowBlock: Int { get }
    /// Writes the output bytes of input rows `rows` into `output`. `source` is the whole
    /// source tensor.
    func apply(source: UnsafeRawBufferPointer, rows: Range<Int>, into output: UnsafeMutableRawPointer)
}

/// Rewrites a model folder's weights: dtype casts and re-sharding, streaming.
///
/// The output is assembled in a hidden folder beside the destination and renamed into
/// place only once complete and flushed, so an interrupted or failed run leaves the
/// destination as it was. The input is only ever read.
public struct Conversion: Sendable {
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

    /// One output tensor: where it comes from and what it becomes.
    public struct Item: Sendable {
        public var source: ModelFolder.Tensor
        public var entry: SafeTensorsWriter.Entry
        /// Kept indices per dimension of the source (`nil` entries keep a whole dimension);
        /// `nil` copies the tensor whole.
        public var selections: [[Int]?]?

        /// Tensors merged into `source` the LaCo way (θ + Σ(θ_k − θ), in F32, then cast back);
        /// empty for a plain copy.
        public var mergeSources: [ModelFolder.Tensor]

        /// How to store the tensor in `.pare` output; `nil` lets the conversion choose from
        /// the data (see `PareEncoding.choose`).
        public var encoding: PareEncoding?

        /// Computes the output from the source (no selections, merges or casts with it).
        public var transform: (any TensorTransform)?

        public init(
            source: ModelFolder.Tensor, entry: SafeTensorsWriter.Entry, selections: [[Int]?]? = nil,
            mergeSources: [ModelFolder.Tensor] = [], encoding: PareEncoding? = nil, transform: (any TensorTransform)? = nil
        ) {
            self.source = source
            self.entry = entry
            self.selections = selections
            self.mergeSources = mergeSources
            self.encoding = encoding
            self.transform = transform
        }

        /// Position in the conversion's item list (set by the conversion).
        public internal(set) var order = 0

        public var needsCast: Bool { source.info.dtype != entry.dtype }
        public var isWholeCopy: Bool { transform == nil && isWholeCopyExceptTransform }

        /// Whether the source reaches the writer (or its transform) whole and unmerged.
        var isWholeCopyExceptTransform: Bool { mergeSources.isEmpty && (selections?.allSatisfy({ $0 == nil }) ?? true) }
    }

    /// An output file and the tensors it holds.
    public struct Shard: Sendable {
        public var fileName: String
        public var items: [Item]
        public var tensorBytes: Int { items.reduce(0) { $0 + $1.entry.byteCount } }
    }

    public let input: ModelFolder
    public let output: String
    public let options: Options
    public let shards: [Shard]
    /// Whether the output is a bare `.safetensors` file rather than a folder.
    public let writesSingleFile: Bool
    /// The config to write (the input's when nothing changes it).
    public let config: ModelConfig?
    /// Where items that select indices get their final selections, if not from the item.
    public let selectionSource: SelectionSource?

    /// Plans the conversion and checks it can be done, before anything is written.
    public init(input: ModelFolder, output: String, options: Options) throws(ModelFolderError) {
        if options.dtype != nil, input.config?.json["quantization_config"] != nil {
            throw .quantizedCast(path: input.path)
        }
        let items = input.tensors.map { tensor in
            var dtype = tensor.info.dtype
            if let target = options.dtype, dtype.isCastable { dtype = target }
            return Item(source: tensor, entry: .init(name: tensor.info.name, dtype: dtype, shape: tensor.info.shape))
        }
        var config = input.config
        if let dtype = options.dtype { config?.setDType(dtype) }
        try self.init(input: input, output: output, options: options, items: items, config: config)
    }

    /// Plans writing `items` (in order) with `config` into `output`.
    public init(
        input: ModelFolder, output: String, options: Options, items: [Item], config: ModelConfig?,
        selectionSource: SelectionSource? = nil
    ) throws(ModelFolderError) {
        var items = items
        for i in items.indices { items[i].order = i }
        self.selectionSource = selectionSource
        self.input = input
        self.output = PathName.trimTrailingSlashes(output)
        self.options = options
        self.config = config
        let format = options.format
        writesSingleFile = input.layout == .singleFile && output.hasSuffix(format.fileExtension)
        let groups = Self.packShards(items, limit: options.maxShardSize)
        if groups.count == 1 {
            let name = writesSingleFile ? PathName.lastComponent(output) : format.singleFileName
            shards = [Shard(fileName: name, items: groups[0])]
        } else {
            if writesSingleFile { throw .singleFileNeedsShards(path: output, shards: groups.count) }
            shards = groups.enumerated().map { Shard(fileName: format.shardName($0 + 1, of: groups.count), items: $1) }
        }
        for shard in shards where format == .safetensors {
            let header = SafeTensorsWriter.headerBytes(entries: shard.items.map(\.entry), metadata: Self.outputMetadata(input.shards.first?.metadata))
            if UInt64(header.count - 8) > SafeTensorsHeader.maximumHeaderLength {
                throw .headerTooLarge(shard: shard.fileName, bytes: header.count - 8)
            }
        }
        try checkDestination()
    }

    /// Splits tensors into shards exactly as huggingface_hub's `split_state_dict_into_shards`
    /// (which transformers' `save_pretrained` uses): greedy in tensor order, a new shard when
    /// the next tensor would push the current one over the limit, and a tensor larger than
    /// the limit alone in a shard of its own, placed where it was met, while the current
    /// shard stays open.
    static func packShards(_ items: [Item], limit: Int) -> [[Item]] {
        var groups: [[Item]] = []
        var current: [Item] = []
        var currentSize = 0
        for item in items {
            let size = item.entry.byteCount
            if size > limit {
                groups.append([item])
                continue
            }
            if currentSize + size > limit {
                groups.append(current)
                current = []
                currentSize = 0
            }
            current.append(item)
            currentSize += size
        }
        if !current.isEmpty || groups.isEmpty { groups.append(current) }
        return groups
    }

    /// Refuses outputs that exist (without force) or that overlap the input.
    ///
    /// Overlap is judged on real locations: the input folder, and every file it reads or
    /// copies after symlinks are resolved (a Hugging Face cache snapshot links into a blob
    /// store elsewhere, which `--force` must never replace).
    private func checkDestination() throws(ModelFolderError) {
        let name = PathName.lastComponent(output)
        guard !name.isEmpty, name != ".", name != "..", name != "/" else {
            throw .outputOverlapsInput(input: input.path, output: output)
        }
        let parent = PathName.parent(output)
        guard FileSystem.kind(of: parent) == .directory, let parentAbsolute = FileSystem.realPath(parent) else {
            throw .notFound(path: parent)
        }
        let outputAbsolute = PathName.join(parentAbsolute, name)
        if options.replacesInput {
            // Only the input itself may be replaced, and only as a whole.
            let root = FileSystem.realPath(input.root ?? input.path)
            guard root == FileSystem.realPath(output) else { throw .outputOverlapsInput(input: input.path, output: output) }
            return
        }
        let outputs = Set([outputAbsolute, FileSystem.realPath(output) ?? outputAbsolute])
        var inputs = [FileSystem.realPath(input.root ?? input.path) ?? input.path]
        inputs += input.shards.compactMap { FileSystem.realPath($0.path) }
        if let root = input.root {
            inputs += input.otherFiles.compactMap { FileSystem.realPath(PathName.join(root, $0)) }
            inputs += [PathName.join(root, "config.json")].compactMap(FileSystem.realPath)
        }
        for out in outputs {
            for path in inputs where PathName.isSameOrInside(path, out) || PathName.isSameOrInside(out, path) {
                throw .outputOverlapsInput(input: input.path, output: output)
            }
        }
        if FileSystem.exists(output) && !options.force { throw .outputExists(path: output) }
    }

    /// Total tensor bytes the conversion writes.
    public var outputTensorBytes: Int { shards.reduce(0) { $0 + $1.tensorBytes } }

    /// Reports progress and asks whether to go on: called with (bytes done, bytes total)
    /// at least every 64 MiB; returning `false` stops the run, which then cleans up and
    /// throws `ModelFolderError.interrupted`.
    public typealias Progress = (_ done: Int, _ total: Int) -> Bool

    /// Performs the conversion. Returns warnings about leftovers that could not be removed
    /// after the new output was already in place (the conversion itself succeeded).
    @discardableResult
    ///
    /// `lateFiles` is called once the tensors are written, for extra files of the output
    /// folder whose content may depend on work done meanwhile (a provenance record with
    /// hashes computed alongside); a file of the input with the same name is replaced.
    public func run(
        progress: Progress = { _, _ in true },
        lateFiles: () throws(ModelFolderError) -> [(name: String, bytes: [UInt8])] = { [] }
    ) throws(ModelFolderError) -> [String] {
        let parent = PathName.parent(output)
        let name = PathName.lastComponent(output)
        let pid = getpid()
        let staging = PathName.join(parent, ".\(name).pare-tmp-\(pid)")
        do throws(ModelFolderError) {
            // A conversion reads every tensor of a .pare input, so it checks the bytes no
            // chunk covers as well: damage anywhere in the file stops it.
            for case .pare(let file, _) in input.shards {
                do throws(PareError) { try file.verifyPadding() } catch { throw .pare(error) }
            }
            try io { () throws(FileError) in try FileSystem.removeTree(staging) }
            if writesSingleFile {
                try writeShard(shards[0], to: staging, done: 0, progress: progress)
                try io { () throws(FileError) in try FileSystem.syncFile(staging) }
            } else {
                try io { () throws(FileError) in try FileSystem.makeDirectory(staging) }
                try writeFolder(into: staging, progress: progress, lateFiles: lateFiles)
                for shard in shards {
                    try io { () throws(FileError) in try FileSystem.syncFile(PathName.join(staging, shard.fileName)) }
                }
                try io { () throws(FileError) in try FileSystem.syncDirectory(staging) }
            }
            // Last chance to stop: after this the output is replaced.
            if !progress(outputTensorBytes, outputTensorBytes) { throw .interrupted }
            return try swapIntoPlace(staging, parent: parent)
        } catch {
            try? FileSystem.removeTree(staging)
            throw error
        }
    }

    private func io(_ body: () throws(FileError) -> Void) throws(ModelFolderError) {
        do { try body() } catch { throw .io(error) }
    }

    /// Puts the finished staging entry in place of the output. An existing output is swapped
    /// with it in one atomic exchange where the kernel can, so the output path never stops
    /// existing, and the old one is removed only once the new one is in place.
    private func swapIntoPlace(_ staging: String, parent: String) throws(ModelFolderError) -> [String] {
        var warnings: [String] = []
        if FileSystem.exists(output) {
            do throws(FileError) {
                try FileSystem.exchange(staging, output)
            } catch {
                // No atomic exchange here (old kernel or filesystem): move aside, then in.
                let retired = staging + "-old"
                try io { () throws(FileError) in try FileSystem.rename(output, to: retired) }
                do throws(FileError) {
                    try FileSystem.rename(staging, to: output)
                } catch {
                    try? FileSystem.rename(retired, to: output)
                    throw .io(error)
                }
                try? FileSystem.rename(retired, to: staging)
            }
            // `staging` now holds the previous output.
            do throws(FileError) { try FileSystem.removeTree(staging) } catch {
                warnings.append("the previous \(output) was replaced but could not be removed from \(staging): \(error.reason)")
            }
        } else {
            try io { () throws(FileError) in try FileSystem.rename(staging, to: output) }
        }
        do throws(FileError) { try FileSystem.syncDirectory(parent) } catch {
            warnings.append("could not flush the directory entry of \(output): \(error.reason)")
        }
        return warnings
    }

    private func writeFolder(
        into staging: String, progress: Progress, lateFiles: () throws(ModelFolderError) -> [(name: String, bytes: [UInt8])]
    ) throws(ModelFolderError) {
        var done = 0
        for shard in shards {
            try writeShard(shard, to: PathName.join(staging, shard.fileName), done: done, progress: progress)
            done += shard.tensorBytes
        }
        let late = try lateFiles()
        try writeOtherFiles(into: staging, progress: progress, late: late)
    }

    private func writeOtherFiles(
        into staging: String, progress: Progress, late: [(name: String, bytes: [UInt8])]
    ) throws(ModelFolderError) {
        try io { () throws(FileError) in try writeMetadataFiles(into: staging, late: late) }
        guard let root = input.root else { return }
        var directories: [String] = []
        let replaced = Set(late.map(\.name))
        for relative in input.otherFiles where !replaced.contains(relative) {
            if !progress(outputTensorBytes, outputTensorBytes) { throw .interrupted }
            try io { () throws(FileError) in
                var directory = staging
                for component in relative.split(separator: "/").dropLast() {
                    directory = PathName.join(directory, String(component))
                    if !FileSystem.exists(directory) {
                        try FileSystem.makeDirectory(directory)
                        directories.append(directory)
                    }
                }
                try FileSystem.copyFile(PathName.join(root, relative), to: PathName.join(staging, relative))
            }
        }
        for directory in directories.reversed() {
            try io { () throws(FileError) in try FileSystem.syncDirectory(directory) }
        }
    }

    private func writeMetadataFiles(into staging: String, late: [(name: String, bytes: [UInt8])]) throws(FileError) {
        if shards.count > 1 {
            let weightMap = shards.flatMap { shard in shard.items.map { ($0.entry.name, shard.fileName) } }
            let parameters = shards.reduce(UInt64(0)) { $0 + $1.items.reduce(0) { $0 + (Shape.elementCount($1.entry.shape) ?? 0) } }
            let text = ShardIndex.render(weightMap: weightMap, totalSize: outputTensorBytes, totalParameters: parameters)
            try FileSystem.writeFile(Array(text.utf8), to: PathName.join(staging, options.format.indexFileName))
        }
        if let config {
            try FileSystem.writeFile(config.bytes, to: PathName.join(staging, "config.json"))
        }
        for file in late {
            try FileSystem.writeFile(file.bytes, to: PathName.join(staging, file.name))
        }
    }

    /// Elements cast per step: bounds the cast buffer at 4 MiB of F32 whatever the tensor.
    static let castChunkElements = 1 << 20
    /// Bytes copied per step when no cast is needed, so progress and interruption are timely.
    static let copyChunkBytes = 64 << 20

    private func writeShard(_ shard: Shard, to path: String, done: Int, progress: Progress) throws(ModelFolderError) {
        let total = outputTensorBytes
        let metadata = Self.outputMetadata(input.shards.first?.metadata)
        let writer: TensorSink
        switch options.format {
        case .safetensors:
            writer = try SafeTensorsSink(path: path, entries: shard.items.map(\.entry), metadata: metadata)
        case .pare:
            let entries = try shard.items.map { (item: Item) throws(ModelFolderError) -> PareWriter.Entry in
                PareWriter.Entry(name: item.entry.name, dtype: item.entry.dtype, shape: item.entry.shape, encoding: try pareEncoding(item))
            }
            writer = try PareSink(path: path, entries: entries, metadata: metadata, options: options.pare)
        }
        func report(_ bytes: Int) throws(ModelFolderError) {
            if !progress(bytes, total) { throw .interrupted }
        }
        var written = done
        // Casts and transforms that cannot produce in place work here, tensor after tensor.
        let scratch = ScratchBuffer()
        var prefetched = 0
        for (index, planned) in shard.items.enumerated() {
            prefetch(shard.items, from: index, through: &prefetched)
            var item = planned
            if item.selections != nil, let selectionSource {
                item.selections = try selectionSource.selections(forItem: item.order)
            }
            let source = input.shards[item.source.shard]
            if let transform = item.transform, !item.mergeSources.isEmpty || !(item.selections?.allSatisfy({ $0 == nil }) ?? true) {
                // A trimmed tensor that is then transformed: its (merged, sliced) bytes first.
                let sliced = try slicedBytes(item, source: source)
                let result = sliced.withUnsafeBytes { bytes in
                    Result { () throws(ModelFolderError) in
                        try writeTransformed(item, transform, source: bytes, writer: writer, scratch: scratch) { done throws(ModelFolderError) in
                            try report(written + done)
                        }
                    }
                }
                try result.get()
            } else if let transform = item.transform {
                let result = try source.withBytes(of: item.source.info) { bytes in
                    Result { () throws(ModelFolderError) in
                        try writeTransformed(item, transform, source: bytes, writer: writer, scratch: scratch) { done throws(ModelFolderError) in
                            try report(written + done)
                        }
                    }
                }
                try result.get()
            } else if !item.mergeSources.isEmpty {
                let merged = try input.mergedBytes(base: item.source, others: item.mergeSources)
                let selections = item.selections ?? item.source.info.shape.map { _ in nil }
                // Array's closure APIs rethrow untyped errors; carry the typed one through a Result.
                let result = merged.withUnsafeBytes { bytes in
                    Result { () throws(ModelFolderError) in
                        try writeGathered(item, selections: selections, source: bytes.baseAddress!, writer: writer) { done throws(ModelFolderError) in
                            try report(written + done)
                        }
                    }
                }
                try result.get()
            } else if !item.isWholeCopy, let selections = item.selections {
                let result = try source.withBytes(of: item.source.info) { bytes in
                    Result { () throws(ModelFolderError) in
                        try writeGathered(item, selections: selections, source: bytes.baseAddress!, writer: writer) { done throws(ModelFolderError) in
                            try report(written + done)
                        }
                    }
                }
                try result.get()
            } else if !item.needsCast {
                if case .safetensors(let file) = source, options.format == .safetensors {
                    // Same bytes, same format: straight from the mapping, a piece at a time,
                    // each released once written.
                    let range = file.fileRange(of: item.source.info)
                    var offset = range.lowerBound
                    while offset < range.upperBound {
                        let count = min(Self.copyChunkBytes, range.upperBound - offset)
                        try writer.copy(from: file.mapping, at: offset, count: count)
                        offset += count
                        try report(written + (offset - range.lowerBound))
                    }
                } else {
                    var copied = 0
                    try source.forEachPiece(of: item.source.info, pieceBytes: Self.copyChunkBytes) { piece throws(ModelFolderError) in
                        try writer.write(piece)
                        copied += piece.count
                        try report(written + copied)
                    }
                }
            } else {
                let from = item.source.info.dtype, to = item.entry.dtype
                let inBytes = from.bitWidth / 8, outBytes = to.bitWidth / 8
                let space = scratch.reserve(Self.castChunkElements * 4)
                var converted = 0
                try source.forEachPiece(of: item.source.info, pieceBytes: Self.castChunkElements * inBytes) { piece throws(ModelFolderError) in
                    // Pieces of a .pare tensor are batches of chunks, larger than the scratch.
                    var start = 0
                    let elements = piece.count / inBytes
                    while start < elements {
                        let count = min(Self.castChunkElements, elements - start)
                        FloatConversion.convertInParallel(count: count, from: from, piece.baseAddress! + start * inBytes, to: to, space)
                        try writer.write(UnsafeRawBufferPointer(start: space, count: count * outBytes))
                        start += count
                        converted += count
                        try report(written + converted * outBytes)
                    }
                }
            }
            written += item.entry.byteCount
            try report(written)
        }
        // Flushed later, all shards together (see `run`), so the disk keeps working
        // while the next shard is produced.
        try writer.finish(sync: false)
    }

    /// Keeps about `prefetchBytes` of source ahead of the item at `index` being read in,
    /// so the disk reads while the cores work; of a large tensor only its start (the
    /// kernel's own read-ahead follows the reading from there). `through` is the first
    /// item not yet asked for.
    private func prefetch(_ items: [Item], from index: Int, through: inout Int) {
        func sources(_ item: Item) -> [ModelFolder.Tensor] { [item.source] + item.mergeSources }
        var ahead = 0
        through = max(through, index + 1)
        for item in items[(index + 1)..<through] {
            for source in sources(item) { ahead += min(Int(source.info.byteCount), Self.prefetchBytes) }
        }
        while through < items.count, ahead < Self.prefetchBytes {
            var pending: [(WeightFile, TensorInfo, Int)] = []
            for source in sources(items[through]) {
                let limit = Self.prefetchBytes - ahead
                guard limit > 0 else { break }
                pending.append((input.shards[source.shard], source.info, limit))
                ahead += min(Int(source.info.byteCount), limit)
            }
            // madvise blocks while the kernel queues the reads: not on this thread.
            nonisolated(unsafe) let work = pending
            Self.prefetchQueue.async { for (file, info, limit) in work { file.prefetch(info, limit: limit) } }
            through += 1
        }
    }

    private static let prefetchQueue = DispatchQueue(label: "pare.prefetch")

    /// Source bytes read ahead of the tensor being written.
    static let prefetchBytes = 64 << 20

    /// The `.pare` encoding of an output tensor: the item's own, the source's when the data
    /// is the same bytes or a cast of them (a cast keeps zeros zero), else chosen from the
    /// source's bytes for whole copies and casts, else byte grouping for floats.
    private func pareEncoding(_ item: Item) throws(ModelFolderError) -> PareEncoding {
        if let encoding = item.encoding { return encoding }
        let dtype = item.entry.dtype
        let fallback: PareEncoding = item.entry.byteCount >= PareEncoding.smallTensorBytes && dtype.isCastable ? .byteGroup : .raw
        guard item.isWholeCopy else { return fallback }
        let chosen: PareEncoding
        switch input.shards[item.source.shard] {
        case .pare(let file, _):
            chosen = file.tensor(named: item.source.info.name)?.encoding ?? fallback
        case .safetensors(let file):
            let info = item.source.info
            chosen = file.withBytes(of: info) { PareEncoding.choose(dtype: info.dtype, shape: info.shape, bytes: $0) }
        }
        if chosen == .raw, item.entry.byteCount >= PareEncoding.smallTensorBytes, dtype.isCastable { return .byteGroup }
        if chosen != .raw, !chosen.accepts(dtype) { return fallback }
        if item.entry.byteCount < PareEncoding.smallTensorBytes { return .raw }
        return chosen
    }

    /// The bytes of an item's output before its transform: the source (or its LaCo merge)
    /// with the selections applied. Holds one output tensor in memory.
    private func slicedBytes(_ item: Item, source: WeightFile) throws(ModelFolderError) -> [UInt8] {
        let info = item.source.info
        let selections = item.selections ?? info.shape.map { _ in nil }
        let gather = Gather(shape: info.shape.map { Int($0) }, elementSize: info.dtype.bitWidth / 8, selections: selections)
        let rows = gather.outputShape.first ?? 1
        var output = [UInt8](repeating: 0, count: rows * gather.outputRowBytes)
        func run(_ pointer: UnsafeRawPointer) {
            output.withUnsafeMutableBytes { gather.gather(rows: 0..<rows, from: pointer, into: $0.baseAddress!) }
        }
        if !item.mergeSources.isEmpty {
            let merged = try input.mergedBytes(base: item.source, others: item.mergeSources)
            merged.withUnsafeBytes { run($0.baseAddress!) }
        } else {
            try source.withBytes(of: info) { run($0.baseAddress!) }
        }
        return output
    }

    /// Writes a transformed tensor, a block of source rows at a time (about
    /// `gatherChunkBytes` of output per step).
    private func writeTransformed(
        _ item: Item, _ transform: any TensorTransform, source: UnsafeRawBufferPointer,
        writer: TensorSink, scratch: ScratchBuffer, progress: (Int) throws(ModelFolderError) -> Void
    ) throws(ModelFolderError) {
        // Rows of what the transform reads: the sliced tensor when there are selections.
        let shape = item.isWholeCopyExceptTransform ? item.source.info.shape : item.entry.shape
        let rows = shape.count >= 2 ? Int(shape[0]) : 1
        let total = item.entry.byteCount
        // Whole tensor at once unless the output is laid out row by row.
        var step = max(rows, 1)
        if transform.rowBlock > 0, rows > 0, total % rows == 0 {
            // Steps are bounded by what a row reads as well as what it writes: a packed
            // layout can write a few bytes for a row whose pruning works on kilobytes.
            // What a step writes fits the sink's space, so it is produced in place.
            let sourceRowBytes = shape.count >= 2 ? shape.dropFirst().reduce(item.source.info.dtype.bitWidth / 8) { $0 * Int($1) } : 0
            let outputRowBytes = max(1, total / rows)
            let rowsRead = Self.gatherChunkBytes / max(1, sourceRowBytes)
            let rowsWritten = OutputFile.maximumSpace / outputRowBytes
            step = min(step, max(1, min(rowsRead, rowsWritten) / transform.rowBlock) * transform.rowBlock)
        }
        let stepBytes = step >= rows ? total : total / rows * step
        let inPlace = stepBytes <= OutputFile.maximumSpace
        var done = 0
        var row = 0
        repeat {
            let range = row..<min(rows, row + step)
            let bytes = step >= rows ? total : total / rows * range.count
            let rowBytes = step >= rows ? 0 : total / rows
            if inPlace {
                try writer.withSpace(bytes) { Self.applyInParallel(transform, source: source, rows: range, rowBytes: rowBytes, into: $0) }
            } else {
                let buffer = scratch.reserve(stepBytes)
                Self.applyInParallel(transform, source: source, rows: range, rowBytes: rowBytes, into: buffer)
                try writer.write(UnsafeRawBufferPointer(start: buffer, count: bytes))
            }
            done += bytes
            row = range.upperBound
            try progress(done)
        } while row < rows
    }

    /// Runs a transform over `rows` on every core, in slices of whole row blocks (rows are
    /// independent); `rowBytes` 0 means the output is not laid out by rows: one call.
    static func applyInParallel(
        _ transform: any TensorTransform, source: UnsafeRawBufferPointer, rows: Range<Int>, rowBytes: Int,
        into output: UnsafeMutableRawPointer
    ) {
        let block = max(1, transform.rowBlock)
        let blocks = (rows.count + block - 1) / block
        let parts = min(FloatConversion.activeCores, blocks)
        guard rowBytes > 0, transform.rowBlock > 0, parts > 1 else {
            transform.apply(source: source, rows: rows, into: output)
            return
        }
        let perPart = (blocks + parts - 1) / parts * block
        // The buffers outlive the work, which finishes before this returns.
        nonisolated(unsafe) let source = source
        nonisolated(unsafe) let output = output
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let start = rows.lowerBound + part * perPart
            let end = min(rows.upperBound, start + perPart)
            guard start < end else { return }
            transform.apply(source: source, rows: start..<end, into: output + (start - rows.lowerBound) * rowBytes)
        }
    }

    /// Bytes of output produced per step when gathering: bounds memory whatever the tensor.
    static let gatherChunkBytes = 16 << 20

    /// Writes the selected sub-tensor of `source` (the whole source tensor's bytes), a block
    /// of output rows at a time, cast if needed.
    private func writeGathered(
        _ item: Item, selections: [[Int]?], source: UnsafeRawPointer,
        writer: TensorSink, progress: (Int) throws(ModelFolderError) -> Void
    ) throws(ModelFolderError) {
        let from = item.source.info.dtype, to = item.entry.dtype
        let gather = Gather(shape: item.source.info.shape.map { Int($0) }, elementSize: from.bitWidth / 8, selections: selections)
        let rowBytes = max(1, gather.outputRowBytes)
        let rows = gather.outputShape.first ?? 1
        let rowsPerStep = max(1, Self.gatherChunkBytes / rowBytes)
        let storage = PageBuffer(bytes: rowsPerStep * rowBytes)
        let buffer = storage.pointer
        let castStorage = item.needsCast ? PageBuffer(bytes: rowsPerStep * rowBytes / (from.bitWidth / 8) * (to.bitWidth / 8)) : nil
        let castBuffer = castStorage?.pointer
        var done = 0
        var row = 0
        while row < rows {
            let step = min(rowsPerStep, rows - row)
            gather.gather(rows: row..<(row + step), from: source, into: buffer)
            var chunk = UnsafeRawBufferPointer(start: buffer, count: step * rowBytes)
            if let castBuffer {
                let count = chunk.count / (from.bitWidth / 8)
                FloatConversion.convertInParallel(count: count, from: from, buffer, to: to, castBuffer)
                chunk = UnsafeRawBufferPointer(start: castBuffer, count: count * (to.bitWidth / 8))
            }
            try writer.write(chunk)
            done += chunk.count
            row += step
            try progress(done)
        }
    }

    /// The input's `__metadata__`, with `format: pt` added when missing (transformers
    /// refuses a file without a format).
    static func outputMetadata(_ metadata: [(key: String, value: String)]?) -> [(key: String, value: String)] {
        var result = metadata ?? []
        if !result.contains(where: { $0.key == "format" }) {
            result.insert(("format", "pt"), at: 0)
        }
        return result
    }
}
