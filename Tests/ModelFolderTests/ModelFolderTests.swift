#if canImport(Glibc)
import Glibc
#endif
import OrderedJSON
import SafeTensors
import Testing
import TestSupport
import Tensors

@testable import ModelFolder

@Suite struct ModelFolderTests {
    /// Copies the sharded fixture's shards and other files (not its index) into `dir` and
    /// returns the index's weight map, for tests that write a changed index.
    func copyShardedFixture(to dir: TemporaryDirectory) throws -> [(key: String, value: JSONValue)] {
        let source = Fixtures.model("llama-sharded")
        for file in try FileSystem.list(source) where file != ShardIndex.fileName {
            try FileSystem.copyFile(source + "/" + file, to: dir.file(file))
        }
        let index = try JSONParser.parse(try readBytes(source + "/" + ShardIndex.fileName))
        return try #require(index["weight_map"]?.objectMembers)
    }

    func writeIndex(weightMap: [(key: String, value: JSONValue)], to dir: TemporaryDirectory) throws {
        try writeBytes(Array(JSONValue.object([("weight_map", .object(weightMap))]).serialized().utf8), to: dir.file(ShardIndex.fileName))
    }

    @Test(arguments: Fixtures.all)
    func opensEveryFixture(_ name: String) throws {
        let model = try ModelFolder(path: Fixtures.model(name))
        #expect(model.layout == .folder)
        #expect(model.config != nil)
        #expect(!model.tensors.isEmpty)
        #expect(!model.otherFiles.contains("config.json"))
        #expect(!model.otherFiles.contains { $0.hasSuffix(".safetensors") })
        let summary = ModelSummary(model)
        #expect(summary.sizes["layers"]! != nil)
        #expect(summary.sizes["hidden_size"]! != nil)
        #expect(summary.parameters == model.tensors.reduce(0) { $0 + $1.info.elementCount })
    }

    @Test func readsShardsThroughTheIndexInOrder() throws {
        let sharded = try ModelFolder(path: Fixtures.model("llama-sharded"))
        let single = try ModelFolder(path: Fixtures.model("llama-gqa-f32"))
        #expect(sharded.shards.count == 3)
        #expect(sharded.index != nil)
        #expect(Set(sharded.tensors.map(\.info.name)) == Set(single.tensors.map(\.info.name)))
        // Same bytes through either path.
        for tensor in sharded.tensors {
            let twin = try #require(single.tensors.first { $0.info.name == tensor.info.name })
            let a = try sharded.shards[tensor.shard].withBytes(of: tensor.info) { Array($0) }
            let b = try single.shards[twin.shard].withBytes(of: twin.info) { Array($0) }
            #expect(a == b, "\(tensor.info.name)")
        }
        // Opening by the index path is the same model.
        let byIndex = try ModelFolder(path: Fixtures.model("llama-sharded") + "/model.safetensors.index.json")
        #expect(byIndex.layout == .index)
        #expect(byIndex.tensors.map(\.info.name) == sharded.tensors.map(\.info.name))
    }

    @Test func summarisesGQAAndMoEConfigs() throws {
        let llama = ModelSummary(try ModelFolder(path: Fixtures.model("llama-gqa-f32")))
        #expect(llama.modelType == "llama")
        #expect(llama.sizes["attention_heads"]! == 4)
        #expect(llama.sizes["kv_heads"]! == 2)
        #expect(llama.sizes["head_dim"]! == 16)
        let mixtral = ModelSummary(try ModelFolder(path: Fixtures.model("mixtral")))
        #expect(mixtral.sizes["experts"]! == 4)
        #expect(mixtral.sizes["experts_per_token"]! == 2)
        let gpt2 = ModelSummary(try ModelFolder(path: Fixtures.model("gpt2")))
        #expect(gpt2.sizes["layers"]! != nil)
        // GPT-2's n_inner = null (4 × hidden) is the gpt2 descriptor's to say: see
        // ModelGraphTests.inspectTakesFamilyDefaultsFromTheDescriptor.
        #expect(gpt2.sizes["intermediate_size"]! == nil)
    }

    @Test func fillsDefaultedSizesFromAxesReadFromTheSameKeys() throws {
        let gpt2 = ModelSummary(try ModelFolder(path: Fixtures.model("gpt2")))
        let filled = gpt2.filling(from: ["ffn": (["n_inner"], 192), "positions": (["n_positions"], 64)])
        #expect(filled.sizes["intermediate_size"]! == 192)
        #expect(filled.sizes["layers"]! == gpt2.sizes["layers"]!)
    }

    @Test func refusesWeightsItCannotRead() throws {
        let dir = TemporaryDirectory()
        try FileSystem.copyFile(Fixtures.model("bert") + "/config.json", to: dir.file("config.json"))
        try FileSystem.copyFile(Fixtures.model("bert") + "/model.safetensors", to: dir.file("model.safetensors"))
        try writeBytes([0x80, 0x02], to: dir.file("pytorch_model.bin"))
        #expect {
            try ModelFolder(path: dir.path)
        } throws: { error in
            "\(error)".contains("pytorch_model.bin") && "\(error)".contains("cannot read")
        }
    }

    @Test func refusesSafetensorsTheIndexDoesNotList() throws {
        let dir = TemporaryDirectory()
        for file in try FileSystem.list(Fixtures.model("llama-sharded")) {
            try FileSystem.copyFile(Fixtures.model("llama-sharded") + "/" + file, to: dir.file(file))
        }
        try FileSystem.copyFile(Fixtures.model("bert") + "/model.safetensors", to: dir.file("consolidated.safetensors"))
        #expect {
            try ModelFolder(path: dir.path)
        } throws: { error in
            "\(error)".contains("consolidated.safetensors") && "\(error)".contains("not listed")
        }
    }

    @Test func refusesAnIndexThatDisagreesWithItsShards() throws {
        let dir = TemporaryDirectory()
        var map = try copyShardedFixture(to: dir)
        let moved = map.removeFirst()
        map.append((moved.key, .string(moved.value.stringValue == "model-00001-of-00003.safetensors" ? "model-00002-of-00003.safetensors" : "model-00001-of-00003.safetensors")))
        try writeIndex(weightMap: map, to: dir)
        #expect {
            try ModelFolder(path: dir.path)
        } throws: { error in
            (error as? ModelFolderError)?.rule == "index-missing-tensor" && "\(error)".contains(moved.key)
        }
    }

    @Test func namesTheMissingPath() {
        #expect {
            try ModelFolder(path: "/nonexistent/model")
        } throws: { error in
            "\(error)" == "/nonexistent/model: no such file or folder [rule: not-found]"
        }
    }

    @Test func refusesATensorStoredInTwoShards() throws {
        let dir = TemporaryDirectory()
        var map = try copyShardedFixture(to: dir)
        // A fourth shard repeating a tensor of the first, listed in the index under it.
        let first = try SafeTensorsFile(path: dir.file("model-00001-of-00003.safetensors"))
        let tensor = first.tensors[0]
        let bytes = first.withBytes(of: tensor) { Array($0) }
        let writer = try SafeTensorsWriter(path: dir.file("extra.safetensors"), entries: [.init(name: tensor.name, dtype: tensor.dtype, shape: tensor.shape)], metadata: [])
        try bytes.withUnsafeBytes { try writer.write($0) }
        try writer.finish()
        map.append(("extra.tensor", .string("extra.safetensors")))
        try writeIndex(weightMap: map, to: dir)
        #expect {
            try ModelFolder(path: dir.path)
        } throws: { error in
            (error as? ModelFolderError)?.rule == "duplicate-tensor" && "\(error)".contains(tensor.name)
        }
    }

    @Test func refusesAShardTensorTheIndexDoesNotList() throws {
        let dir = TemporaryDirectory()
        var map = try copyShardedFixture(to: dir)
        let dropped = map.removeLast()
        try writeIndex(weightMap: map, to: dir)
        #expect {
            try ModelFolder(path: dir.path)
        } throws: { error in
            (error as? ModelFolderError)?.rule == "index-unlisted-tensor" && "\(error)".contains(dropped.key)
        }
    }

    @Test func skipsToolStateAndRefusesDanglingLinks() throws {
        let dir = TemporaryDirectory()
        for file in try FileSystem.list(Fixtures.model("bert")) {
            try FileSystem.copyFile(Fixtures.model("bert") + "/" + file, to: dir.file(file))
        }
        for folder in [".git", ".git/lfs", ".cache", ".cache/huggingface"] { try FileSystem.makeDirectory(dir.file(folder)) }
        try writeBytes([1], to: dir.file(".git/lfs/blob"))
        try writeBytes([1], to: dir.file(".cache/huggingface/x.lock"))
        #expect(try ModelFolder(path: dir.path).otherFiles == [])
        #expect(symlink(dir.file("missing.json"), dir.file("tokenizer.json")) == 0)
        #expect {
            try ModelFolder(path: dir.path)
        } throws: { error in
            (error as? ModelFolderError)?.rule == "uncopyable-file" && "\(error)".contains("tokenizer.json")
        }
    }
}
