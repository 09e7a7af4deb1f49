import OrderedJSON
import Testing

@testable import ModelFolder

@Suite struct ByteSizeAndConfigTests {
    @Test(arguments: [
        ("5GB", 5_000_000_000), ("500MB", 500_000_000), ("2MiB", 2_097_152), ("1.5GB", 1_500_000_000),
        ("100KB", 100_000), ("4KiB", 4096), ("123456", 123_456), ("10 MB", 10_000_000), ("7b", 7),
    ])
    func parsesSizes(_ text: String, _ bytes: Int) {
        #expect(ByteSize.parse(text) == bytes)
    }

    @Test(arguments: ["", "0", "-5MB", "GB", "5XB", "1e400", "99999999999999999999TB"])
    func rejectsBadSizes(_ text: String) {
        #expect(ByteSize.parse(text) == nil)
    }

    @Test func rewritesEveryFloatDTypeEntryAndNothingElse() throws {
        let text = #"{"dtype":"float32","text_config":{"torch_dtype":"torch.float16","dtype":"int8"},"vision":{"x":1},"eps":1e-05}"#
        var config = try ModelConfig(bytes: Array(text.utf8), path: "config.json")
        #expect(config.bytes == Array(text.utf8))  // untouched: byte for byte
        #expect(config.setDType(.bf16) == 2)
        let json = config.json
        #expect(json["dtype"]?.stringValue == "bfloat16")
        #expect(json["text_config"]?["torch_dtype"]?.stringValue == "bfloat16")
        #expect(json["text_config"]?["dtype"]?.stringValue == "int8")  // not a float dtype: left alone
        #expect(json.objectMembers?.map(\.key) == ["dtype", "text_config", "vision", "eps"])
        #expect(String(decoding: config.bytes, as: UTF8.self).contains("\"eps\": 1e-05"))
        #expect(String(decoding: config.bytes, as: UTF8.self).hasSuffix("}\n"))
    }

    @Test func countsReadForPeople() {
        #expect(Count.short(102_720) == "103K")
        #expect(Count.short(1_235_814_400) == "1.24B")
        #expect(Count.short(999) == "999")
        #expect(Count.grouped(1_234_567) == "1,234,567")
        #expect(ByteSize.describe(411_000) == "411 kB")
        #expect(ByteSize.describe(4_940_000_000) == "4.94 GB")
    }
}
