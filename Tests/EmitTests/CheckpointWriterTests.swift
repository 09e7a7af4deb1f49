#if canImport(Glibc)
import Glibc
#endif
import ModelFolder
import OrderedJSON
import SafeTensors
import Testing
import TestSupport
import Tensors

@testable import Emit

@Suite struct CheckpointWriterTests {
    func convert(_ name: String, to output: String, _ options: CheckpointWriter.Options = .init()) throws {
        let model = try ModelFolder(path: Fixtures.model(name))
        try CheckpointWriter(input: model, output: output, options: options).run()
    }

    @Test(arguments: Fixtures.all)
    func sameDTypeConversionKeepsEveryByte(_ name: String) throws {
        let dir = TemporaryDirectory()
        let before = try snapshot(Fixtures.model(name))
        try convert(name, to: dir.file("out"))
        #expect(try snapshot(Fixtures.model(name)) == before, "the input changed")

        let input = try ModelFolder(path: Fixtures.model(name))
        let output = try ModelFolder(path: dir.file("out"))
        #expect(output.shards.count == 1)
        #expect(output.tensors.count == input.tensors.count)
        #expect(output.tensors.map(\.info.name) == input.tensors.map(\.info.name))
        for (a, b) in zip(input.tensors, output.tensors) {
            #expect(a.info.dtype == b.info.dtype && a.info.shape == b.info.shape)
            let x = try input.shards[a.shard].withBytes(of: a.info) { Array($0) }
            let y = try output.shards[b.shard].withBytes(of: b.info) { Array($0) }
            #expect(x == y, "\(a.info.name)")
        }
        #expect(output.shards[0].metadata?.contains { $0.key == "format" && $0.value == "pt" } == true)
        // Every other file, config.json included, comes through byte for byte.
        let copied = try snapshot(dir.file("out")).filter { !$0.key.hasSuffix(".safetensors") && !$0.key.hasSuffix(".index.json") }
        let original = before.filter { !$0.key.hasSuffix(".safetensors") && !$0.key.hasSuffix(".index.json") }
        #expect(copied == original)
        // Nothing left beside the output.
        #expect(try FileSystem.list(dir.path) == ["out"])
    }

    @Test func castsAndUpdatesTheConfigDType() throws {
        let dir = TemporaryDirectory()
        try convert("llama-gqa-f32", to: dir.file("out"), .init(dtype: .bf16))
        let input = try ModelFolder(path: Fixtures.model("llama-gqa-f32"))
        let output = try ModelFolder(path: dir.file("out"))
        #expect(output.tensors.count == input.tensors.count)
        for (a, b) in zip(input.tensors, output.tensors) {
            #expect(b.info.dtype == .bf16)
            let source = try input.shards[a.shard].withBytes(of: a.info) { Array($0.bindMemory(to: UInt32.self)) }
            let cast = try output.shards[b.shard].withBytes(of: b.info) { Array($0.bindMemory(to: UInt16.self)) }
            #expect(cast == source.map(FloatConversion.f32ToBF16))
        }
        let config = try #require(output.config)
        let dtypeKeys = ["torch_dtype", "dtype"].compactMap { config.json[$0]?.stringValue }
        #expect(!dtypeKeys.isEmpty && dtypeKeys.allSatisfy { $0 == "bfloat16" })
        // Key order is the input's.
        #expect(config.json.objectMembers?.map(\.key) == input.config?.json.objectMembers?.map(\.key))
    }

    @Test func reshardsLikeTransformersAndMergesBack() throws {
        let dir = TemporaryDirectory()
        try convert("llama-gqa-f32", to: dir.file("sharded"), .init(maxShardSize: 150_000))
        let files = try FileSystem.list(dir.file("sharded"))
        let shards = files.filter { $0.hasSuffix(".safetensors") }
        #expect(shards.count >= 3)
        #expect(shards.first == ShardIndex.shardName(1, of: shards.count))
        #expect(files.contains(ShardIndex.fileName))
        let index = try ShardIndex.read(path: dir.file("sharded/" + ShardIndex.fileName))
        let model = try ModelFolder(path: dir.file("sharded"))
        #expect(index.metadata?["total_size"]?.intValue == Int(model.tensorBytes))
        #expect(index.weightMap.count == model.tensors.count)
        for shard in model.shards {
            let data = shard.tensors.reduce(0) { $0 + Int($1.byteCount) }
            // A shard only exceeds the limit when one tensor alone does.
            #expect(data <= 150_000 || shard.tensors.count == 1)
        }
        // And back to one file, with no index.
        let merged = dir.file("merged")
        try CheckpointWriter(input: model, output: merged, options: .init()).run()
        #expect(try FileSystem.list(merged).filter { $0.hasSuffix(".json") && $0.contains("index") }.isEmpty)
        let original = try ModelFolder(path: Fixtures.model("llama-gqa-f32"))
        let roundTrip = try ModelFolder(path: merged)
        #expect(Set(roundTrip.tensors.map(\.info.name)) == Set(original.tensors.map(\.info.name)))
        #expect(roundTrip.tensors.count == original.tensors.count)
        for tensor in roundTrip.tensors {
            let twin = try #require(original.tensors.first { $0.info.name == tensor.info.name })
            let a = try roundTrip.shards[tensor.shard].withBytes(of: tensor.info) { Array($0) }
            let b = try original.shards[twin.shard].withBytes(of: twin.info) { Array($0) }
            #expect(a == b, "\(tensor.info.name)")
        }
    }

    @Test func isDeterministic() throws {
        let dir = TemporaryDirectory()
        try convert("qwen2-moe", to: dir.file("a"), .init(dtype: .f16, maxShardSize: 100_000))
        try convert("qwen2-moe", to: dir.file("b"), .init(dtype: .f16, maxShardSize: 100_000))
        #expect(try snapshot(dir.file("a")) == snapshot(dir.file("b")))
    }

    @Test func refusesAnExistingOutputUnlessForced() throws {
        let dir = TemporaryDirectory()
        try FileSystem.makeDirectory(dir.file("out"))
        try writeBytes([1, 2, 3], to: dir.file("out/keep.txt"))
        #expect(throws: EmitError.outputExists(path: dir.file("out"))) {
            try convert("bert", to: dir.file("out"))
        }
        #expect(try readBytes(dir.file("out/keep.txt")) == [1, 2, 3])
        try convert("bert", to: dir.file("out"), .init(force: true))
        #expect(try !FileSystem.list(dir.file("out")).contains("keep.txt"))
        #expect(try FileSystem.list(dir.path) == ["out"])
    }

    @Test func refusesOutputsThatOverlapTheInput() throws {
        let dir = TemporaryDirectory()
        for file in try FileSystem.list(Fixtures.model("bert")) {
            try FileSystem.copyFile(Fixtures.model("bert") + "/" + file, to: dir.file(file))
        }
        let model = try ModelFolder(path: dir.path)
        for output in [dir.path, dir.path + "/", dir.file("inner"), dir.file("sub/../inner"), PathName.parent(dir.path), "/"] {
            #expect {
                try CheckpointWriter(input: model, output: output, options: .init(force: true))
            } throws: { error in
                (error as? EmitError)?.rule == "output-overlaps-input"
                    || (error as? EmitError)?.rule == "not-found"
            }
        }
        // The real location counts, not the spelling: a symlink to the input folder.
        let links = TemporaryDirectory()
        #expect(symlink(dir.path, links.file("alias")) == 0)
        #expect {
            try CheckpointWriter(input: model, output: links.file("alias"), options: .init(force: true))
        } throws: { error in
            (error as? EmitError)?.rule == "output-overlaps-input"
        }
    }

    @Test func convertsABareFileToABareFile() throws {
        let dir = TemporaryDirectory()
        let model = try ModelFolder(path: Fixtures.model("gpt2") + "/model.safetensors")
        #expect(model.layout == .singleFile && model.config == nil)
        try CheckpointWriter(input: model, output: dir.file("gpt2-f16.safetensors"), options: .init(dtype: .f16)).run()
        let file = try SafeTensorsFile(path: dir.file("gpt2-f16.safetensors"))
        #expect(file.tensors.allSatisfy { $0.dtype == .f16 })
        #expect(file.tensors.count == model.tensors.count)
    }

    @Test func refusesToCastAQuantizedCheckpoint() throws {
        let dir = TemporaryDirectory()
        try FileSystem.makeDirectory(dir.file("in"))
        try FileSystem.copyFile(Fixtures.model("bert") + "/model.safetensors", to: dir.file("in/model.safetensors"))
        var config = try JSONParser.parse(try readBytes(Fixtures.model("bert") + "/config.json"))
        config.set("quantization_config", to: .object([("quant_method", .string("fp8"))]), appendIfMissing: true)
        try writeBytes(Array(config.serialized(.pretty).utf8), to: dir.file("in/config.json"))
        let model = try ModelFolder(path: dir.file("in"))
        #expect(throws: EmitError.quantizedCast(path: dir.file("in"))) {
            try CheckpointWriter(input: model, output: dir.file("out"), options: .init(dtype: .bf16))
        }
        // Re-sharding without a cast is fine.
        try CheckpointWriter(input: model, output: dir.file("out"), options: .init()).run()
    }

    @Test func stopsWhenAskedAndLeavesNothing() throws {
        let dir = TemporaryDirectory()
        let model = try ModelFolder(path: Fixtures.model("mixtral"))
        var calls = 0
        #expect(throws: EmitError.interrupted) {
            try CheckpointWriter(input: model, output: dir.file("out"), options: .init(dtype: .f16)).run { _, _ in
                calls += 1
                return calls < 5
            }
        }
        #expect(try FileSystem.list(dir.path).isEmpty)
    }

    @Test func packsShardsLikeHuggingFaceHub() throws {
        // Sizes in bytes (F32 elements × 4): a tensor over the limit gets a shard of its own,
        // placed where it was met, while the open shard stays open.
        let model = try ModelFolder(path: Fixtures.model("llama-gqa-f32"))
        let items = model.tensors.map { OutputItem(source: $0, entry: .init(name: $0.info.name, dtype: $0.info.dtype, shape: $0.info.shape)) }
        let limit = 60_000
        let positions = OutputPlan.packShards(items, limit: limit)
        #expect(positions.flatMap { $0 }.sorted() == Array(items.indices))
        let groups = positions.map { $0.map { items[$0] } }
        for group in groups where group.count > 1 {
            #expect(group.reduce(0) { $0 + $1.entry.byteCount } <= limit)
        }
        let oversized = items.filter { $0.entry.byteCount > limit }.map(\.entry.name)
        #expect(!oversized.isEmpty)
        for name in oversized {
            #expect(groups.contains { $0.count == 1 && $0[0].entry.name == name })
        }
    }
}
