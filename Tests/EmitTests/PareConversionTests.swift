import ModelFolder
import PareFormat
import Testing
import TestSupport
import Tensors

import Emit

/// safetensors → .pare → safetensors through `CheckpointWriter`, as `pare convert --format` does.
@Suite struct PareConversionTests {
    @Test(arguments: Fixtures.all)
    func roundTripsEveryFixtureBitExactly(_ name: String) throws {
        let dir = TemporaryDirectory()
        let input = try ModelFolder(path: Fixtures.model(name))
        try CheckpointWriter(input: input, output: dir.file("packed"), options: .init(format: .pare)).run()
        let packed = try ModelFolder(path: dir.file("packed"))
        #expect(packed.format == .pare)
        #expect(packed.shards.count == input.shards.count || input.shards.count > 1)
        #expect(packed.tensors.map(\.info.name) == input.tensors.map(\.info.name))
        for case .pare(let file, _) in packed.shards { try file.verify() }

        try CheckpointWriter(input: packed, output: dir.file("back"), options: .init(maxShardSize: input.index == nil ? 5_000_000_000 : 100_000)).run()
        let back = try ModelFolder(path: dir.file("back"))
        #expect(back.format == .safetensors)
        for (a, b) in zip(input.tensors, back.tensors) {
            #expect(a.info.name == b.info.name && a.info.dtype == b.info.dtype && a.info.shape == b.info.shape)
            let x = try input.shards[a.shard].withBytes(of: a.info) { Array($0) }
            let y = try back.shards[b.shard].withBytes(of: b.info) { Array($0) }
            #expect(x == y, "\(a.info.name)")
        }
        // The other files come through as they were.
        let original = try snapshot(Fixtures.model(name)).filter { !$0.key.hasSuffix(".safetensors") && !$0.key.hasSuffix(".index.json") }
        let packedFiles = try snapshot(dir.file("packed")).filter { !$0.key.hasSuffix(".pare") && !$0.key.hasSuffix(".index.json") }
        #expect(packedFiles == original)
    }

    @Test func shardsAndCastsIntoPare() throws {
        let dir = TemporaryDirectory()
        let input = try ModelFolder(path: Fixtures.model("llama-gqa-f32"))
        try CheckpointWriter(input: input, output: dir.file("packed"), options: .init(dtype: .bf16, maxShardSize: 100_000, format: .pare)).run()
        let packed = try ModelFolder(path: dir.file("packed"))
        #expect(packed.shards.count > 1)
        #expect(packed.shardNames.allSatisfy { $0.hasSuffix(".pare") && $0.hasPrefix("model-") })
        #expect(FileSystem.exists(dir.file("packed/model.pare.index.json")))
        for (a, b) in zip(input.tensors, packed.tensors) {
            let source = try input.shards[a.shard].withBytes(of: a.info) { Array($0.bindMemory(to: UInt32.self)) }
            let cast = try packed.shards[b.shard].withBytes(of: b.info) { Array($0.bindMemory(to: UInt16.self)) }
            #expect(cast == source.map(FloatConversion.f32ToBF16), "\(a.info.name)")
        }
    }

    @Test func namesTheTensorOfADamagedChunk() throws {
        let dir = TemporaryDirectory()
        let input = try ModelFolder(path: Fixtures.model("llama-gqa-bf16"))
        try CheckpointWriter(input: input, output: dir.file("packed"), options: .init(format: .pare)).run()
        let path = dir.file("packed/model.pare")
        let file = try PareFile.open(path: path)
        let victim = try #require(file.tensors.first { $0.encoding == .byteGroup })
        var bytes = try readBytes(path)
        bytes[Int(victim.chunks[0].offset) + 5] ^= 0x10
        try FileSystem.removeTree(path)
        try writeBytes(bytes, to: path)
        let damaged = try ModelFolder(path: dir.file("packed"))
        #expect {
            try CheckpointWriter(input: damaged, output: dir.file("back"), options: .init()).run()
        } throws: { error in
            "\(error)".contains(victim.name) && "\(error)".contains("[rule: chunk-crc]")
        }
        #expect(!FileSystem.exists(dir.file("back")))
    }
}
