import Testing

@testable import Tensors

@Suite struct DTypeTests {
    @Test func everyReferenceDTypeIsKnownWithItsWidth() {
        let widths: [String: Int] = [
            "BOOL": 8, "U8": 8, "I8": 8, "I16": 16, "U16": 16, "I32": 32, "U32": 32, "I64": 64, "U64": 64,
            "F16": 16, "BF16": 16, "F32": 32, "F64": 64, "C64": 64, "F8_E4M3": 8, "F8_E5M2": 8,
            "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8, "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
        ]
        #expect(DType.allCases.count == widths.count)
        for (name, width) in widths {
            #expect(DType(rawValue: name)?.bitWidth == width, "\(name)")
        }
    }

    @Test func byteCountsCheckOverflowAndWholeBytes() {
        #expect(DType.f4.byteCount(elements: 4) == .bytes(2))
        #expect(DType.f4.byteCount(elements: 3) == .partialByte(bits: 12))
        #expect(DType.f6E2M3.byteCount(elements: 4) == .bytes(3))
        #expect(DType.f32.byteCount(elements: UInt64.max / 2) == .overflow)
        #expect(Shape.elementCount([1 << 32, 1 << 32]) == nil)
        #expect(Shape.elementCount([]) == 1)
        #expect(Shape.elementCount([3, 0, 5]) == 0)
    }

    @Test(arguments: [("f32", DType.f32), ("bfloat16", .bf16), ("FP16", .f16), ("half", .f16)])
    func parsesCastNames(_ name: String, _ dtype: DType) {
        #expect(DType(castName: name) == dtype)
    }

    @Test func rejectsNonCastNames() {
        #expect(DType(castName: "int8") == nil)
        #expect(DType(castName: "f8") == nil)
    }
}
