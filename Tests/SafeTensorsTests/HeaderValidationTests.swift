import Testing
import TestSupport

@testable import SafeTensors
import Tensors

/// Each rule of the reference implementation, one malformed buffer per case.
@Suite struct HeaderValidationTests {
    func parse(_ bytes: [UInt8]) throws(SafeTensorsError) -> SafeTensorsHeader {
        let result = bytes.withUnsafeBytes { buffer in
            Result { () throws(SafeTensorsError) in try SafeTensorsHeader.parse(file: buffer, path: "x.safetensors") }
        }
        return try result.get()
    }

    func rule(of bytes: [UInt8]) -> String? {
        do {
            _ = try parse(bytes)
            return nil
        } catch {
            return error.rule
        }
    }

    static let rules: Set<String> = [
        "file-too-small", "header-too-large", "header-out-of-bounds", "header-utf8", "header-json",
        "header-structure", "unknown-dtype", "metadata-not-string-map", "duplicate-tensor",
        "offsets-contiguous", "shape-overflow", "span-mismatch", "data-size",
    ]

    @Test func readsANullMetadataAsNone() throws {
        let parsed = try parse(safetensorsBytes(header: "{\"__metadata__\":null,\(Self.f32x2)}", data: Array(repeating: 0, count: 8)))
        #expect(parsed.metadata == nil)
        #expect(parsed.tensors.count == 1)
    }

    static let f32x2 = #""t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}"#

    @Test func acceptsAWellFormedFileAndSortsByOffset() throws {
        let header = #"{"__metadata__":{"format":"pt"},"b":{"dtype":"F16","shape":[2],"data_offsets":[8,12]},"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#
        let parsed = try parse(safetensorsBytes(header: header, data: Array(repeating: 0, count: 12)))
        #expect(parsed.tensors.map(\.name) == ["a", "b"])
        #expect(parsed.metadata?.first?.key == "format")
        #expect(parsed.dataStart == 8 + header.utf8.count)
    }

    @Test func acceptsEmptyScalarAndZeroSizedTensors() throws {
        let header = #"{"s":{"dtype":"F64","shape":[],"data_offsets":[0,8]},"z":{"dtype":"I32","shape":[0,4],"data_offsets":[8,8]}}"#
        let parsed = try parse(safetensorsBytes(header: header, data: Array(repeating: 0, count: 8)))
        #expect(parsed.tensors.map(\.elementCount) == [1, 0])
        #expect(try parse(safetensorsBytes(header: "{}      ", data: [])).tensors.isEmpty)
    }

    @Test(arguments: [
        ([UInt8](), "file-too-small"),
        ([1, 0, 0, 0, 0, 0, 0], "file-too-small"),
        (safetensorsBytes(header: "{}", data: [], declaredLength: 100_000_001), "header-too-large"),
        (safetensorsBytes(header: "{}", data: [], declaredLength: UInt64.max), "header-too-large"),
        (safetensorsBytes(header: "{}", data: [], declaredLength: 50), "header-out-of-bounds"),
        ([2, 0, 0, 0, 0, 0, 0, 0, 0xC3, 0x28], "header-utf8"),
        (safetensorsBytes(header: "{\"a\":", data: []), "header-json"),
        (safetensorsBytes(header: "[]", data: []), "header-json"),
        (safetensorsBytes(header: "{\"t\":{\"dtype\":\"F32\",\"shape\":[2]}}", data: []), "header-structure"),
        (safetensorsBytes(header: "{\"t\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", data: []), "header-structure"),
        (safetensorsBytes(header: "{\"t\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", data: []), "header-structure"),
        (safetensorsBytes(header: "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,9]}}", data: []), "header-structure"),
        (safetensorsBytes(header: "{\"t\":[]}", data: []), "header-structure"),
        (safetensorsBytes(header: "{\"t\":{\"dtype\":\"F128\",\"shape\":[2],\"data_offsets\":[0,8]}}", data: []), "unknown-dtype"),
        (safetensorsBytes(header: "{\"__metadata__\":{\"a\":1}}", data: []), "metadata-not-string-map"),
        (safetensorsBytes(header: "{\"__metadata__\":[]}", data: []), "metadata-not-string-map"),
        (safetensorsBytes(header: "{\(f32x2),\(f32x2)}", data: Array(repeating: 0, count: 8)), "duplicate-tensor"),
        (safetensorsBytes(header: "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", data: Array(repeating: 0, count: 12)), "offsets-contiguous"),
        (safetensorsBytes(header: "{\"t\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", data: Array(repeating: 0, count: 8)), "offsets-contiguous"),
        (safetensorsBytes(header: "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}", data: Array(repeating: 0, count: 8)), "offsets-contiguous"),
        (safetensorsBytes(header: "{\"t\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,16],\"data_offsets\":[0,8]}}", data: Array(repeating: 0, count: 8)), "shape-overflow"),
        (safetensorsBytes(header: "{\"t\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904],\"data_offsets\":[0,8]}}", data: Array(repeating: 0, count: 8)), "shape-overflow"),
        (safetensorsBytes(header: "{\"t\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", data: Array(repeating: 0, count: 8)), "span-mismatch"),
        (safetensorsBytes(header: "{\"t\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", data: Array(repeating: 0, count: 2)), "span-mismatch"),
        (safetensorsBytes(header: "{\(f32x2)}", data: Array(repeating: 0, count: 9)), "data-size"),
        (safetensorsBytes(header: "{\(f32x2)}", data: Array(repeating: 0, count: 7)), "data-size"),
    ])
    func rejectsEachRule(_ bytes: [UInt8], _ expected: String) {
        #expect(rule(of: bytes) == expected)
    }

    @Test func messagesNameTheFileTheTensorAndTheRule() {
        let bytes = safetensorsBytes(header: "{\"w.0\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", data: Array(repeating: 0, count: 8))
        do {
            _ = try parse(bytes)
            Issue.record("accepted a wrong span")
        } catch {
            let message = error.description
            #expect(message.contains("x.safetensors"))
            #expect(message.contains("'w.0'"))
            #expect(message.hasSuffix("[rule: span-mismatch]"))
            #expect(!message.contains("\n"))
        }
    }

    /// Seeded mutation of valid headers: every outcome must be a parse or a typed
    /// rejection, never a crash or a hang, and an accepted file must satisfy the invariants.
    @Test func survivesMutatedHeaders() {
        var rng = SplitMix64(seed: 2026)
        let seeds: [[UInt8]] = [
            safetensorsBytes(header: #"{"__metadata__":{"format":"pt"},"a":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]},"b":{"dtype":"F4","shape":[4],"data_offsets":[12,14]}}"#, data: Array(repeating: 7, count: 14)),
            safetensorsBytes(header: #"{"w":{"dtype":"I64","shape":[1],"data_offsets":[0,8]}}"#, data: Array(repeating: 1, count: 8)),
        ]
        let alphabet = Array(#"{}[]":,0123456789-.eE\u "#.utf8) + [0x00, 0xFF, 0xC3]
        var accepted = 0, rejected = 0
        for iteration in 0..<30_000 {
            var bytes = seeds[iteration % seeds.count]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let position = Int.random(in: 0..<bytes.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: bytes[position] = alphabet.randomElement(using: &rng)!
                case 1: bytes.insert(alphabet.randomElement(using: &rng)!, at: position)
                case 2: if bytes.count > 1 { bytes.remove(at: position) }
                default: bytes[position] = UInt8.random(in: 0...255, using: &rng)
                }
            }
            do {
                let header = try parse(bytes)
                accepted += 1
                var end: UInt64 = 0
                for tensor in header.tensors {
                    #expect(tensor.dataOffsets.lowerBound == end)
                    end = tensor.dataOffsets.upperBound
                }
                #expect(UInt64(header.dataStart) + end == UInt64(bytes.count))
            } catch {
                rejected += 1
                #expect(Self.rules.contains(error.rule), "\(error)")
                #expect(!error.description.contains("\n"))
            }
        }
        #expect(rejected > 0 && accepted > 0)
    }
}
