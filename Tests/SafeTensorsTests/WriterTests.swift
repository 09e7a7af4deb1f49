#if canImport(Glibc)
import Glibc
#endif
import Testing
import TestSupport

@testable import SafeTensors
import Tensors

@Suite struct WriterTests {
    let entries = [
        SafeTensorsWriter.Entry(name: "layer.weight", dtype: .f32, shape: [2, 3]),
        SafeTensorsWriter.Entry(name: "empty", dtype: .i64, shape: [0]),
        SafeTensorsWriter.Entry(name: "layer.bias", dtype: .bf16, shape: [3]),
    ]

    func write(to path: String) throws {
        let writer = try SafeTensorsWriter(path: path, entries: entries, metadata: [("format", "pt")])
        let weights: [Float] = [1, 2, 3, 4, 5, 6]
        // In two pieces, to exercise streaming.
        try weights.withUnsafeBytes { bytes in
            try writer.write(UnsafeRawBufferPointer(rebasing: bytes[0..<8]))
            try writer.write(UnsafeRawBufferPointer(rebasing: bytes[8...]))
        }
        let bias: [UInt16] = [0x3F80, 0x4000, 0x4040]
        try bias.withUnsafeBytes { try writer.write($0) }
        try writer.finish()
    }

    @Test func writesWhatTheReaderReadsBack() throws {
        let dir = TemporaryDirectory()
        let path = dir.file("out.safetensors")
        try write(to: path)
        let file = try SafeTensorsFile(path: path)
        #expect(file.tensors.map(\.name) == ["layer.weight", "empty", "layer.bias"])
        #expect(file.header.metadata?.map(\.key) == ["format"])
        let weight = try #require(file.info("layer.weight"))
        let floats = file.withBytes(of: weight) { Array($0.bindMemory(to: Float.self)) }
        #expect(floats == [1, 2, 3, 4, 5, 6])
        // Header padded with spaces to a multiple of 8, so data starts 8-byte aligned.
        #expect(file.header.dataStart % 8 == 0)
        let bytes = try readBytes(path)
        let json = bytes[8..<file.header.dataStart]
        #expect(json.first == UInt8(ascii: "{"))
        #expect(String(decoding: json, as: UTF8.self).hasPrefix(#"{"__metadata__":{"format":"pt"},"layer.weight":{"dtype":"F32","shape":[2,3],"data_offsets":[0,24]}"#))
    }

    @Test func isDeterministic() throws {
        let dir = TemporaryDirectory()
        try write(to: dir.file("a.safetensors"))
        try write(to: dir.file("b.safetensors"))
        #expect(try readBytes(dir.file("a.safetensors")) == readBytes(dir.file("b.safetensors")))
    }

    @Test func refusesToOverwrite() throws {
        let dir = TemporaryDirectory()
        try write(to: dir.file("a.safetensors"))
        #expect(throws: FileError(.open, path: dir.file("a.safetensors"), code: EEXIST)) { try write(to: dir.file("a.safetensors")) }
    }

    @Test func shardNamesFollowTransformers() {
        #expect(ShardIndex.shardName(1, of: 3) == "model-00001-of-00003.safetensors")
        #expect(ShardIndex.shardName(12, of: 123) == "model-00012-of-00123.safetensors")
    }

    @Test func indexRendersAndReadsBack() throws {
        let dir = TemporaryDirectory()
        let text = ShardIndex.render(
            weightMap: [("b", "model-00002-of-00002.safetensors"), ("a", "model-00001-of-00002.safetensors")],
            totalSize: 1234, totalParameters: 99)
        try writeBytes(Array(text.utf8), to: dir.file(ShardIndex.fileName))
        let index = try ShardIndex.read(path: dir.file(ShardIndex.fileName))
        #expect(index.weightMap.map(\.tensor) == ["a", "b"])
        #expect(index.metadata?["total_size"]?.intValue == 1234)
        #expect(index.shardNames == ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"])
    }

    @Test func indexRefusesPathsOutsideTheFolder() throws {
        let dir = TemporaryDirectory()
        try writeBytes(Array(#"{"weight_map":{"a":"../evil.safetensors"}}"#.utf8), to: dir.file("i.json"))
        #expect {
            try ShardIndex.read(path: dir.file("i.json"))
        } throws: { error in
            (error as? SafeTensorsError)?.rule == "index-structure" && "\(error)".contains("../evil.safetensors")
        }
    }
}
