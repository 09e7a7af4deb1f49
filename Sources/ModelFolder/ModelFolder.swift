import PareFormat
import SafeTensors
import Tensors

/// A Hugging Face model as pare reads it: config, weights (one file or shards behind an
/// index), and every other file, which is carried through unchanged.
///
/// Opening reads headers only. It refuses what it cannot account for: weights in formats
/// pare cannot read, safetensors files the index does not list, or tensors stored twice.
public final class ModelFolder: Sendable {
    /// How the input was named.
    public enum Layout: Sendable, Equatable {
        /// A folder with `config.json` and weights.
        case folder
        /// A bare `.safetensors` or `.pare` file (no config, no other files).
        case singleFile
        /// A `*.safetensors.index.json` or `*.pare.index.json` path; its folder is the model.
        case index
    }

    /// A tensor and the shard that holds it.
    public struct Tensor: Sendable, Hashable {
        public var info: TensorInfo
        /// Index into `shards`.
        public var shard: Int
    }

    public let path: String
    /// Whether symlinks out of the folder were allowed (`--follow-symlinks`).
    public let followsSymlinks: Bool
    public let layout: Layout
    /// The folder holding the model, or `nil` for a bare file.
    public let root: String?
    public let config: ModelConfig?
    /// Weight files in reading order, as paths relative to `root` (or the file's path).
    public let shardNames: [String]
    public let shards: [WeightFile]
    /// The format of the weight files.
    public let format: WeightFormat
    public let index: ShardIndex?
    /// The index file's path, when the weights are sharded behind one.
    public let indexPath: String?
    /// Every tensor, shard by shard in file order, each shard's in data order.
    public let tensors: [Tensor]
    /// Files other than weights, the index and config.json, relative to `root`, sorted.
    public let otherFiles: [String]
    /// Subfolders that hold weights of modules around the model (a sentence-transformers
    /// `2_Dense` head): not read, copied with the other files.
    public let extraModules: [String]

    /// Extensions of weight formats pare cannot read, with a name for the error message.
    static let foreignWeightFormats: [(suffix: String, format: String)] = [
        (".bin", "PyTorch pickle (.bin)"), (".pt", "PyTorch pickle (.pt)"), (".pth", "PyTorch pickle (.pth)"),
        (".ckpt", "checkpoint (.ckpt)"), (".h5", "TensorFlow/Keras (.h5)"), (".msgpack", "Flax (.msgpack)"),
        (".gguf", "GGUF"), (".onnx", "ONNX"), (".pkl", "pickle (.pkl)"), (".npz", "NumPy (.npz)"),
    ]

    /// Files with a weight-like extension that hold no weights, copied through as is.
    static let knownNonWeights: Set<String> = ["training_args.bin"]

    /// Opens a model. Every file read must resolve inside the folder (the repository cache
    /// folder, for a Hugging Face hub snapshot, whose files link to `../../blobs/`); a
    /// symlink out of it is refused unless `followSymlinks`.
    public init(path: String, followSymlinks: Bool = false) throws(ModelFolderError) {
        self.path = path
        followsSymlinks = followSymlinks
        guard let kind = FileSystem.kind(of: path) else { throw .notFound(path: path) }
        let name = PathName.lastComponent(path)

        var indexPath: String?
        var weightPaths: [String] = []
        var format = WeightFormat.safetensors
        switch kind {
        case .file where WeightFormat.allCases.contains(where: { name.hasSuffix($0.indexSuffix) }):
            layout = .index
            root = PathName.parent(path)
            indexPath = path
            format = WeightFormat.allCases.first { name.hasSuffix($0.indexSuffix) }!
        case .file where WeightFormat(fileName: name) != nil:
            layout = .singleFile
            root = nil
            weightPaths = [path]
            format = WeightFormat(fileName: name)!
        case .directory:
            layout = .folder
            root = path
        default:
            throw .notAModel(path: path)
        }

        var others: [String] = []
        var modules: [String] = []
        if let root {
            // A folder with neither config.json nor weights at its top level is something
            // else (a repository, a virtualenv): say so before reading anything below it.
            let top: [String]
            do { top = try FileSystem.list(root) } catch { throw .io(error) }
            if layout == .folder, !top.contains("config.json"), !top.contains(where: { name in
                WeightFormat(fileName: name) != nil || WeightFormat.allCases.contains { name.hasSuffix($0.indexSuffix) }
                    || Self.foreignWeightFormats.contains { name.hasSuffix($0.suffix) }
            }) {
                throw .notAModel(path: path)
            }
            let files = try Self.walk(root, confinedTo: followSymlinks ? nil : Self.confinement(of: root))
            func isForeign(_ file: String) -> Bool {
                !Self.knownNonWeights.contains(PathName.lastComponent(file)) && Self.foreignWeightFormats.contains { file.hasSuffix($0.suffix) }
            }
            let below = files.filter { $0.contains("/") && (WeightFormat(fileName: PathName.lastComponent($0)) != nil || isForeign($0)) }
            modules = Array(Set(below.map { String($0.split(separator: "/")[0]) })).sorted()
            if let foreign = files.first(where: { !$0.contains("/") && isForeign($0) }) {
                let format = Self.foreignWeightFormats.first { foreign.hasSuffix($0.suffix) }!.format
                throw .unreadableWeights(path: PathName.join(root, foreign), format: format)
            }
            let topLevel = files.filter { !$0.contains("/") }
            if indexPath == nil {
                let indexes = topLevel.filter { file in WeightFormat.allCases.contains { file.hasSuffix($0.indexSuffix) } }
                if indexes.count > 1 {
                    throw .ambiguousWeights(path: root, files: indexes)
                }
                indexPath = indexes.first.map { PathName.join(root, $0) }
                if let index = indexes.first { format = WeightFormat.allCases.first { index.hasSuffix($0.indexSuffix) }! }
            }
            let allWeights = topLevel.filter { WeightFormat(fileName: $0) != nil }
            if let indexPath {
                let indexName = PathName.lastComponent(indexPath)
                let parsed: ShardIndex
                do { parsed = try ShardIndex.read(path: indexPath) } catch { throw .safeTensors(error) }
                guard !parsed.weightMap.isEmpty else { throw .noWeights(path: indexPath) }
                let listed = Set(parsed.shardNames)
                if let stray = allWeights.first(where: { !listed.contains($0) }) {
                    throw .unlistedSafeTensors(path: PathName.join(root, stray), index: indexName)
                }
                if let foreign = parsed.shardNames.first(where: { WeightFormat(fileName: $0) != format }) {
                    throw .safeTensors(.indexMalformed(path: indexPath, problem: "the index lists '\(foreign)', which is not a \(format.fileExtension) file"))
                }
                weightPaths = parsed.shardNames.map { PathName.join(root, $0) }
                index = parsed
                others = files.filter { $0 != indexName && !listed.contains($0) && $0 != "config.json" }
            } else {
                guard !allWeights.isEmpty else { throw .noWeights(path: root) }
                guard allWeights.count == 1 else { throw .ambiguousWeights(path: root, files: allWeights) }
                weightPaths = [PathName.join(root, allWeights[0])]
                format = WeightFormat(fileName: allWeights[0])!
                index = nil
                others = files.filter { $0 != allWeights[0] && $0 != "config.json" }
            }
            let configPath = PathName.join(root, "config.json")
            config = FileSystem.kind(of: configPath) == .file ? try ModelConfig.read(path: configPath) : nil
        } else {
            index = nil
            config = nil
        }
        self.format = format
        otherFiles = others
        extraModules = modules
        let isBareFile = layout == .singleFile
        shardNames = weightPaths.map { isBareFile ? $0 : PathName.lastComponent($0) }

        var opened: [WeightFile] = []
        for weightPath in weightPaths {
            guard FileSystem.kind(of: weightPath) == .file else {
                throw .missingShard(path: weightPath, index: indexPath.map(PathName.lastComponent) ?? "the index")
            }
            opened.append(try WeightFile(path: weightPath, format: format))
        }
        shards = opened

        // Sized once: growing by doubling held two copies of each at the peak.
        let count = opened.reduce(0) { $0 + $1.tensors.count }
        var all: [Tensor] = []
        all.reserveCapacity(count)
        // Which shard holds each name: needed to find a name in two shards and to check the
        // index. A lone file's header has already refused a repeated name.
        let needsOwners = opened.count > 1 || index != nil
        var owner: [String: Int] = [:]
        if needsOwners { owner.reserveCapacity(count) }
        for (i, shard) in opened.enumerated() {
            for info in shard.tensors {
                if needsOwners {
                    if let first = owner[info.name] {
                        throw .safeTensors(.tensorInTwoShards(tensor: info.name, first: shardNames[first], second: shardNames[i]))
                    }
                    owner[info.name] = i
                }
                all.append(Tensor(info: info, shard: i))
            }
        }
        if let index, let indexPath {
            for (tensor, shard) in index.weightMap {
                guard let i = owner[tensor], shardNames[i] == shard else {
                    throw .safeTensors(.indexMissingTensor(path: indexPath, tensor: tensor, shard: shard))
                }
            }
            if all.count != index.weightMap.count {
                let listed = Set(index.weightMap.map(\.tensor))
                let extra = all.first { !listed.contains($0.info.name) }!
                throw .safeTensors(.indexUnlistedTensor(path: indexPath, tensor: extra.info.name, shard: shardNames[extra.shard]))
            }
        }
        tensors = all
        self.indexPath = index == nil ? nil : indexPath
    }

    /// Entries that belong to tools, not to the model, and are never copied: version
    /// control (a git-lfs clone keeps every weight again under `.git/lfs`), the
    /// huggingface_hub download cache of `--local-dir`, and pare's own staging folders.
    static func isSkipped(_ name: String, atTopLevel: Bool) -> Bool {
        if name == ".git" || name.hasPrefix(".") && (name.contains(".pare-tmp-") || name.contains(".pare-old-")) {
            return true
        }
        return atTopLevel && name == ".cache"
    }

    /// The real folder a model's files must resolve into: the folder itself, or for a hub
    /// cache snapshot (`models--org--name/snapshots/<revision>`) the repository's cache
    /// folder, which holds the `blobs/` its links point at.
    public static func confinement(of root: String) -> String {
        let real = FileSystem.realPath(root) ?? root
        let parent = PathName.parent(real)
        if PathName.lastComponent(parent) == "snapshots" { return PathName.parent(parent) }
        return real
    }

    /// Refuses `path` when it is a symlink that resolves outside `confinement` (a folder's
    /// `confinement(of:)`): the one rule for every file pare reads for a model.
    public static func checkConfined(_ path: String, in confinement: String) throws(ModelFolderError) {
        if FileSystem.isSymlink(path), let real = FileSystem.realPath(path), !PathName.isSameOrInside(real, confinement) {
            throw .symlinkOutside(link: path, target: real)
        }
    }

    /// Every regular file below `root`, as sorted relative paths.
    ///
    /// Symlinks are followed (a Hugging Face cache snapshot is all symlinks into its blob
    /// store), so their contents are what gets copied, but with `confinedTo` only into that
    /// folder. Whatever cannot be carried through is an error rather than a silent omission:
    /// a link out of the folder, a dangling link, a link loop, a socket or a device.
    static func walk(_ root: String, confinedTo confinement: String? = nil) throws(ModelFolderError) -> [String] {
        var result: [String] = []
        func visit(_ relative: String, ancestors: Set<String>) throws(ModelFolderError) {
            let absolute = relative.isEmpty ? root : PathName.join(root, relative)
            let names: [String]
            do { names = try FileSystem.list(absolute) } catch { throw .io(error) }
            for name in names where !Self.isSkipped(name, atTopLevel: relative.isEmpty) {
                let child = relative.isEmpty ? name : relative + "/" + name
                let path = PathName.join(root, child)
                if let confinement { try Self.checkConfined(path, in: confinement) }
                switch FileSystem.kind(of: path) {
                case .directory:
                    let real = FileSystem.realPath(path) ?? path
                    guard !ancestors.contains(real) else { throw .uncopyableFile(path: path, reason: "a symlink loop back to \(real)") }
                    try visit(child, ancestors: ancestors.union([real]))
                case .file:
                    result.append(child)
                case .other:
                    throw .uncopyableFile(path: path, reason: "not a regular file or folder")
                case nil:
                    throw .uncopyableFile(path: path, reason: "a dangling symlink")
                }
            }
        }
        try visit("", ancestors: [FileSystem.realPath(root) ?? root])
        return result
    }

    /// Total tensor data bytes.
    public var tensorBytes: UInt64 { tensors.reduce(0) { $0 + $1.info.byteCount } }

    /// Total element count.
    public var parameterCount: UInt64 { tensors.reduce(0) { $0 + $1.info.elementCount } }

    /// What is odd but not wrong, one sentence each: an index whose `metadata.total_size`
    /// is not the tensors' bytes (transformers ignores it; download tools size by it).
    public var warnings: [String] {
        guard let index, let indexPath, let declared = index.metadata?["total_size"]?.uint64Value, declared != tensorBytes else { return [] }
        return ["\(indexPath): metadata.total_size says \(declared) bytes, but the tensors hold \(tensorBytes)"]
    }
}
