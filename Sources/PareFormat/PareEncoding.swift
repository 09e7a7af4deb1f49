import Tensors

/// How a tensor's chunks are stored (`formats/pare.md`, "Encodings").
public enum PareEncoding: Sendable, Hashable {
    /// The tensor bytes unchanged.
    case raw
    /// Byte streams split by significance, each one zstd frame.
    case byteGroup
    /// N:M sparse: N values per group plus their positions, compressed.
    case nm(NMPacking.Pattern)
    /// Unstructured sparse: a bitmask of non-zero elements plus those elements, compressed.
    case bitmask

    /// The name in the index.
    public var name: String {
        switch self {
        case .raw: return "raw"
        case .byteGroup: return "bytegroup-zstd"
        case .nm: return "nm-zstd"
        case .bitmask: return "bitmask-zstd"
        }
    }

    /// Whether `dtype` can be stored this way.
    public func accepts(_ dtype: DType) -> Bool {
        switch self {
        case .raw: return true
        case .byteGroup: return dtype.bitWidth % 8 == 0
        case .nm, .bitmask: return dtype == .f16 || dtype == .bf16 || dtype == .f32
        }
    }

    /// Number of zstd frames per chunk for elements of `width` bytes.
    func frameCount(width: Int) -> Int {
        switch self {
        case .raw: return 0
        case .byteGroup: return width
        case .nm, .bitmask: return width + 1
        }
    }

    /// Tensors smaller than this are stored raw: compression would save a few bytes at most.
    public static let smallTensorBytes = 4096

    /// Share of zeros from which `bitmask-zstd` beats byte grouping.
    public static let bitmaskZeroShare = 0.3

    /// The encoding `pare` uses for a tensor, looking at its bytes.
    ///
    /// Non-float, 8-bit and sub-byte tensors and tiny ones are raw. A float tensor whose
    /// groups along the last dimension are N:M sparse gets the N:M encoding with the fewest
    /// stored bits (M from 2, 4, 8 and 16); one with at least 30 % zeros otherwise gets the
    /// bitmask; any other float tensor is byte-grouped.
    public static func choose(dtype: DType, shape: [UInt64], bytes: UnsafeRawBufferPointer) -> PareEncoding {
        guard dtype == .f16 || dtype == .bf16 || dtype == .f32, bytes.count >= smallTensorBytes else {
            return bytes.count >= smallTensorBytes && dtype.bitWidth >= 16 && dtype.isFloat ? .byteGroup : .raw
        }
        let width = dtype.bitWidth / 8
        let count = bytes.count / width
        let nonZero = width == 2
            ? BitmaskPacking.nonZeroCount(bytes.baseAddress!.assumingMemoryBound(to: UInt16.self), count: count)
            : BitmaskPacking.nonZeroCount(bytes.baseAddress!.assumingMemoryBound(to: UInt32.self), count: count)
        let zeroShare = Double(count - nonZero) / Double(count)
        guard zeroShare >= 1.0 / 16 else { return .byteGroup }
        // Stored bits per element, before compression.
        var best: (encoding: PareEncoding, bits: Double) = (.byteGroup, Double(width * 8))
        if let last = shape.last, last > 0 {
            for m in [4, 8, 16, 2] where last % UInt64(m) == 0 {
                let densest = width == 2
                    ? NMPacking.densestGroup(bytes.baseAddress!.assumingMemoryBound(to: UInt16.self), count: count, m: m)
                    : NMPacking.densestGroup(bytes.baseAddress!.assumingMemoryBound(to: UInt32.self), count: count, m: m)
                guard densest < m, let pattern = NMPacking.Pattern(n: max(1, densest), m: m) else { continue }
                let bits = Double(pattern.n) / Double(m) * Double(width * 8 + pattern.indexBits)
                if bits < best.bits { best = (.nm(pattern), bits) }
            }
        }
        // N:M keeps up to half a bit per element over the mask: a few groups with fewer
        // than N values tip the raw count, but positions compress as well as a mask.
        let maskBits = 1 + Double(nonZero) / Double(count) * Double(width * 8)
        if zeroShare >= bitmaskZeroShare, maskBits + (best.encoding == .byteGroup ? 0 : 0.5) < best.bits {
            best = (.bitmask, maskBits)
        }
        return best.encoding
    }
}

extension DType {
    /// Floating-point kinds, whose high bytes carry the exponent.
    var isFloat: Bool {
        switch self {
        case .f16, .bf16, .f32, .f64: return true
        default: return false
        }
    }
}
