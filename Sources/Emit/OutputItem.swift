import ModelFolder
import PareFormat
import SafeTensors

/// One output tensor: where it comes from and what it becomes.
public struct OutputItem: Sendable {
    public var source: ModelFolder.Tensor
    public var entry: SafeTensorsWriter.Entry
    /// Kept indices per dimension of the source (`nil` entries keep a whole dimension);
    /// `nil` copies the tensor whole.
    public var selections: [[Int]?]?

    /// Tensors merged into `source` the LaCo way (θ + Σ(θ_k − θ), in F32, then cast back);
    /// empty for a plain copy.
    public var mergeSources: [ModelFolder.Tensor]

    /// How to store the tensor in `.pare` output; `nil` lets the writer choose from the
    /// data (see `PareEncodingPolicy`).
    public var encoding: PareEncoding?

    /// Computes the output from the source (no selections, merges or casts with it).
    public var transform: (any TensorTransform)?

    /// The output bytes themselves, computed while planning (a compensated bias, a zero
    /// bias a config switch creates): the source is then only named, never read.
    public var contents: [UInt8]?

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

    /// An item whose bytes are given: `entry`'s tensor, named after `source` for messages.
    public init(contents: [UInt8], entry: SafeTensorsWriter.Entry, nominalSource source: ModelFolder.Tensor) {
        precondition(contents.count == entry.byteCount, "contents must fill the entry")
        self.init(source: source, entry: entry)
        self.contents = contents
    }

    /// The item copying `tensor` as it is.
    public init(copying tensor: ModelFolder.Tensor) {
        self.init(source: tensor, entry: .init(name: tensor.info.name, dtype: tensor.info.dtype, shape: tensor.info.shape))
    }

    /// Position in the writer's item list (set by the writer).
    public internal(set) var order = 0

    public var needsCast: Bool { source.info.dtype != entry.dtype }
    public var isWholeCopy: Bool { contents == nil && transform == nil && isWholeCopyExceptTransform }

    /// Whether the source reaches the writer (or its transform) whole and unmerged.
    var isWholeCopyExceptTransform: Bool { mergeSources.isEmpty && (selections?.allSatisfy({ $0 == nil }) ?? true) }
}
