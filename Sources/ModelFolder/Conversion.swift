#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import SafeTensors
import Tensors

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

        public init(dtype: DType? = nil, maxShardSize: Int = 5_000_000_000, force: Bool = false) {
            self.dtype = dtype
            self.maxShardSize = maxShardSize
            self.force = force
        }
    }

    /// One output tensor: where it comes from and what it becomes.
    public struct Item: Sendable {
        public var source: ModelFolder.Tensor
        public var entry: SafeTensorsWriter.Entry
        public var needsCast: Bool { source.info.dtype != entry.dtype }
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

    /// Plans the conversion and checks it can be done, before anything is written.
    public init(input: ModelFolder, output: String, options: Options) throws(ModelFolderError) {
        self.input = input
        self.output = PathName.trimTrailingSlashes(output)
        self.options = options
        writesSingleFile = input.layout == .singleFile && output.hasSuffix(".safetensors")

        let items = input.tensors.map { tensor in
            var dtype = tensor.info.dtype
            if let target = options.dtype, dtype.isCastable { dtype = target }
            return Item(source: tensor, entry: .init(name: tensor.info.name, dtype: dtype, shape: tensor.info.shape))
        }
        // Greedy packing in tensor order, as transformers shards: a new shard starts when the
        // next tensor would push the current one over the limit.
        var groups: [[Item]] = [[]]
        var current = 0
        for item in items {
            if !groups[groups.count - 1].isEmpty && current + item.entry.byteCount > options.maxShardSize {
                groups.append([])
                current = 0
            }
            groups[groups.count - 1].append(item)
            current += item.entry.byteCount
        }
        if groups.count == 1 {
            let name = writesSingleFile ? PathName.lastComponent(output) : "model.safetensors"
            shards = [Shard(fileName: name, items: groups[0])]
        } else {
            if writesSingleFile { throw .singleFileNeedsShards(path: output, shards: groups.count) }
            shards = groups.enumerated().map { Shard(fileName: ShardIndex.shardName($0 + 1, of: groups.count), items: $1) }
        }
        try checkDestination()
    }

    /// Refuses outputs that exist (without force) or that overlap the input.
    private func checkDestination() throws(ModelFolderError) {
        let inputAbsolute = FileSystem.realPath(input.root ?? input.path) ?? input.path
        let parent = PathName.parent(output)
        guard FileSystem.kind(of: parent) == .directory, let parentAbsolute = FileSystem.realPath(parent) else {
            throw .notFound(path: parent)
        }
        let outputAbsolute = PathName.join(parentAbsolute, PathName.lastComponent(output))
        let resolvedOutput = FileSystem.realPath(output) ?? outputAbsolute
        for candidate in [outputAbsolute, resolvedOutput] {
            if candidate == inputAbsolute || candidate.hasPrefix(inputAbsolute + "/")
                || inputAbsolute.hasPrefix(candidate + "/")
            {
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

    /// Performs the conversion.
    public func run(progress: Progress = { _, _ in true }) throws(ModelFolderError) {
        let parent = PathName.parent(output)
        let name = PathName.lastComponent(output)
        let pid = getpid()
        let staging = PathName.join(parent, ".\(name).pare-tmp-\(pid)")
        do throws(ModelFolderError) {
            try io { () throws(FileError) in try FileSystem.removeTree(staging) }
            if writesSingleFile {
                try writeShard(shards[0], to: staging, done: 0, progress: progress)
            } else {
                try io { () throws(FileError) in try FileSystem.makeDirectory(staging) }
                try writeFolder(into: staging, progress: progress)
                try io { () throws(FileError) in try FileSystem.syncDirectory(staging) }
            }
            try io { () throws(FileError) in try swapIntoPlace(staging, parent: parent, name: name, pid: pid) }
        } catch {
            try? FileSystem.removeTree(staging)
            throw error
        }
    }

    private func io(_ body: () throws(FileError) -> Void) throws(ModelFolderError) {
        do { try body() } catch { throw .io(error) }
    }

    /// Renames the finished staging folder to the output; an existing output is moved aside
    /// first and removed only once the new one is in place.
    private func swapIntoPlace(_ staging: String, parent: String, name: String, pid: Int32) throws(FileError) {
        if FileSystem.exists(output) {
            let retired = PathName.join(parent, ".\(name).pare-old-\(pid)")
            try FileSystem.rename(output, to: retired)
            do throws(FileError) {
                try FileSystem.rename(staging, to: output)
            } catch {
                try? FileSystem.rename(retired, to: output)
                throw error
            }
            try FileSystem.removeTree(retired)
        } else {
            try FileSystem.rename(staging, to: output)
        }
        try FileSystem.syncDirectory(parent)
    }

    private func writeFolder(into staging: String, progress: Progress) throws(ModelFolderError) {
        var done = 0
        for shard in shards {
            try writeShard(shard, to: PathName.join(staging, shard.fileName), done: done, progress: progress)
            done += shard.tensorBytes
        }
        try io { () throws(FileError) in try writeOtherFiles(into: staging) }
    }

    private func writeOtherFiles(into staging: String) throws(FileError) {
        if shards.count > 1 {
            let weightMap = shards.flatMap { shard in shard.items.map { ($0.entry.name, shard.fileName) } }
            let parameters = shards.reduce(UInt64(0)) { $0 + $1.items.reduce(0) { $0 + $1.source.info.elementCount } }
            let text = ShardIndex.render(weightMap: weightMap, totalSize: outputTensorBytes, totalParameters: parameters)
            try writeFile(Array(text.utf8), to: PathName.join(staging, ShardIndex.fileName))
        }
        if var config = input.config {
            if let dtype = options.dtype { config.setDType(dtype) }
            try writeFile(config.bytes, to: PathName.join(staging, "config.json"))
        }
        guard let root = input.root else { return }
        for relative in input.otherFiles {
            var directory = staging
            for component in relative.split(separator: "/").dropLast() {
                directory = PathName.join(directory, String(component))
                if !FileSystem.exists(directory) { try FileSystem.makeDirectory(directory) }
            }
            try FileSystem.copyFile(PathName.join(root, relative), to: PathName.join(staging, relative))
        }
    }

    private func writeFile(_ bytes: [UInt8], to path: String) throws(FileError) {
        let file = try OutputFile(creating: path)
        try file.write(bytes)
        try file.sync()
        try file.close()
    }

    /// Elements cast per step: bounds the cast buffer at 4 MiB of F32 whatever the tensor.
    static let castChunkElements = 1 << 20
    /// Bytes copied per step when no cast is needed, so progress and interruption are timely.
    static let copyChunkBytes = 64 << 20

    private func writeShard(_ shard: Shard, to path: String, done: Int, progress: Progress) throws(ModelFolderError) {
        let total = outputTensorBytes
        let metadata = Self.outputMetadata(input.shards.first?.header.metadata)
        let writer: SafeTensorsWriter
        do { writer = try SafeTensorsWriter(path: path, entries: shard.items.map(\.entry), metadata: metadata) } catch { throw .io(error) }
        func report(_ bytes: Int) throws(ModelFolderError) {
            if !progress(bytes, total) { throw .interrupted }
        }
        var written = done
        var buffer: UnsafeMutableRawPointer?
        defer { buffer?.deallocate() }
        for item in shard.items {
            let source = input.shards[item.source.shard]
            let range = source.fileRange(of: item.source.info)
            if !item.needsCast {
                var offset = range.lowerBound
                while offset < range.upperBound {
                    let count = min(Self.copyChunkBytes, range.upperBound - offset)
                    try io { () throws(FileError) in try writer.copy(from: source.mapping, at: offset, count: count) }
                    offset += count
                    try report(written + (offset - range.lowerBound))
                }
            } else {
                let from = item.source.info.dtype, to = item.entry.dtype
                let inBytes = from.bitWidth / 8, outBytes = to.bitWidth / 8
                let scratch = buffer ?? UnsafeMutableRawPointer.allocate(byteCount: Self.castChunkElements * 4, alignment: 64)
                buffer = scratch
                source.mapping.adviseSequential(range)
                let elements = Int(item.source.info.elementCount)
                var start = 0
                while start < elements {
                    let count = min(Self.castChunkElements, elements - start)
                    let chunk = (range.lowerBound + start * inBytes)..<(range.lowerBound + (start + count) * inBytes)
                    source.mapping.withBytes(in: chunk) { bytes in
                        FloatConversion.convert(count: count, from: from, bytes.baseAddress!, to: to, scratch)
                    }
                    try io { () throws(FileError) in try writer.write(UnsafeRawBufferPointer(start: scratch, count: count * outBytes)) }
                    source.mapping.adviseDone(chunk)
                    start += count
                    try report(written + start * outBytes)
                }
            }
            written += item.entry.byteCount
            try report(written)
        }
        try io { () throws(FileError) in try writer.finish() }
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
