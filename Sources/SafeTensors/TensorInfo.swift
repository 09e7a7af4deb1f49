import Tensors

/// One tensor as a safetensors header describes it.
public struct TensorInfo: Sendable, Hashable {
    public var name: String
    public var dtype: DType
    public var shape: [UInt64]
    /// Byte range relative to the start of the data section.
    public var dataOffsets: Range<UInt64>

    public init(name: String, dtype: DType, shape: [UInt64], dataOffsets: Range<UInt64>) {
        self.name = name
        self.dtype = dtype
        self.shape = shape
        self.dataOffsets = dataOffsets
    }

    /// Number of elements (validated not to overflow when the header was read).
    public var elementCount: UInt64 { Shape.elementCount(shape) ?? 0 }

    public var byteCount: UInt64 { dataOffsets.upperBound - dataOffsets.lowerBound }
}
