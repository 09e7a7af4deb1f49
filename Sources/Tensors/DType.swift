/// The element type of a tensor, named as safetensors names it.
///
/// Every dtype the safetensors reference accepts is here, including the sub-byte float
/// kinds, which pare carries as opaque bytes: it can copy, shard and inspect them but not
/// cast them.
public enum DType: String, Sendable, CaseIterable, Hashable, Codable {
    case bool = "BOOL"
    case u8 = "U8"
    case i8 = "I8"
    case i16 = "I16"
    case u16 = "U16"
    case i32 = "I32"
    case u32 = "U32"
    case i64 = "I64"
    case u64 = "U64"
    case f16 = "F16"
    case bf16 = "BF16"
    case f32 = "F32"
    case f64 = "F64"
    case c64 = "C64"
    case f8E4M3 = "F8_E4M3"
    case f8E5M2 = "F8_E5M2"
    case f8E8M0 = "F8_E8M0"
    case f8E4M3FNUZ = "F8_E4M3FNUZ"
    case f8E5M2FNUZ = "F8_E5M2FNUZ"
    case f4 = "F4"
    case f6E2M3 = "F6_E2M3"
    case f6E3M2 = "F6_E3M2"

    /// The safetensors spelling, e.g. `"BF16"`.
    public var name: String { rawValue }

    /// Bits per element; sub-byte kinds pack several elements per byte.
    public var bitWidth: Int {
        switch self {
        case .f4: return 4
        case .f6E2M3, .f6E3M2: return 6
        case .bool, .u8, .i8, .f8E4M3, .f8E5M2, .f8E8M0, .f8E4M3FNUZ, .f8E5M2FNUZ: return 8
        case .i16, .u16, .f16, .bf16: return 16
        case .i32, .u32, .f32: return 32
        case .i64, .u64, .f64, .c64: return 64
        }
    }

    /// Whether pare can cast this dtype (the three float kinds models are trained and served in).
    public var isCastable: Bool {
        switch self {
        case .f16, .bf16, .f32: return true
        default: return false
        }
    }

    /// The byte count of `elements` elements, checked: the bit count must not overflow 64
    /// bits (as the reference checks it) and must be whole bytes.
    public func byteCount(elements: UInt64) -> ByteCountResult {
        let (bits, overflow) = elements.multipliedReportingOverflow(by: UInt64(bitWidth))
        if overflow { return .overflow }
        if bits % 8 != 0 { return .partialByte(bits: bits) }
        return .bytes(bits / 8)
    }

    public enum ByteCountResult: Equatable, Sendable {
        case bytes(UInt64)
        case overflow
        case partialByte(bits: UInt64)
    }

    /// Parses the CLI spelling of a castable dtype: `f32`, `float32`, `bf16`, ...
    public init?(castName: String) {
        switch castName.lowercased() {
        case "f32", "fp32", "float32", "float": self = .f32
        case "f16", "fp16", "float16", "half": self = .f16
        case "bf16", "bfloat16": self = .bf16
        default: return nil
        }
    }

    /// The name torch and transformers use in `config.json` (`torch_dtype`/`dtype`).
    public var torchName: String? {
        switch self {
        case .f32: return "float32"
        case .f16: return "float16"
        case .bf16: return "bfloat16"
        case .f64: return "float64"
        default: return nil
        }
    }
}
