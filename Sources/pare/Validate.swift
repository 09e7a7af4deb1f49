import ArgumentParser
import ModelFolder
import ModelGraph
import OrderedJSON
import PareFormat
import Tensors

struct Validate: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check that a checkpoint's tensors are exactly what its config implies.",
        discussion: """
            Reads config.json and the tensor headers (no weights) and checks them against the \
            architecture descriptor for the config's model_type (formats/*.json): every \
            tensor the config implies is present with the implied shape, and nothing else \
            is there. All problems are listed, each naming the tensor and the rule; the exit \
            status is 1 when there is any.

            Built-in families: \(DescriptorRegistry.builtin.descriptors.map(\.family).joined(separator: ", ")).

            Examples:
              pare validate ./trimmed-model
              pare validate ./model --json
              pare validate ./model --formats ./my-formats   # extra descriptors
              pare validate ./model-packed --verify          # also decode every .pare chunk
            """
    )

    @Argument(help: "Model folder, or its model.safetensors.index.json or model.pare.index.json.")
    var path: String

    @OptionGroup(title: "Model folder")
    var folders: FolderOptions

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    @Flag(help: "Also read every weight: decode each .pare tensor and check every chunk, tensor and padding checksum (safetensors files have no checksums; use --golden for their hashes).")
    var verify = false

    @OptionGroup(title: "Architecture")
    var descriptors: DescriptorOptions

    @Option(help: ArgumentHelp("Also compare with an expected config and tensor manifest (name, dtype, shape, sha256); config keys such as transformers_version are ignored.", valueName: "file"))
    var golden: String?

    @Option(help: ArgumentHelp("Write the model's golden (config + manifest) to this file: the deliberate way to (re)generate one.", valueName: "file"))
    var writeGolden: String?

    func run() throws {
        try reportingFailures {
            let model = try ModelFolder(path: path, followSymlinks: folders.followSymlinks)
            if verify {
                for shard in model.shards {
                    if case .pare(let file, _) = shard {
                        do throws(PareError) { try file.verify() } catch { throw ModelFolderError.pare(error) }
                    }
                }
            }
            let registry = try descriptors.registry()
            let graph = try ModelGraph(model: model, registry: registry)
            var goldenDifferences: [String] = []
            if golden != nil || writeGolden != nil {
                let actual = try Golden(of: model)
                if let golden {
                    let bytes = try MappedFile(path: golden).withBytes { Array($0) }
                    let expected = try Golden(json: try JSONParser.parse(bytes), source: golden)
                    goldenDifferences = expected.differences(from: actual)
                }
                if let writeGolden {
                    if FileSystem.kind(of: writeGolden) == .directory {
                        throw ValidationError("--write-golden names a folder (\(writeGolden)); give a file path")
                    }
                    try FileSystem.replaceFile(writeGolden, with: Array((actual.json.serialized(.pretty) + "\n").utf8))
                }
            }
            for difference in goldenDifferences {
                StandardStream.standardError.write("pare: error: \(path): \(difference) [rule: golden]\n")
            }
            if !goldenDifferences.isEmpty && graph.problems.isEmpty && !json {
                StandardStream.standardError.write("pare: error: \(path): \(goldenDifferences.count) difference\(goldenDifferences.count == 1 ? "" : "s") from \(golden ?? "the golden")\n")
                throw ExitCode(1)
            }
            if json {
                StandardStream.standardOutput.write(Self.report(graph, golden: goldenDifferences).serialized(.pretty) + "\n")
            } else if graph.problems.isEmpty {
                warn(model.warnings)
                StandardStream.standardOutput.write(
                    "ok: \(path) is a consistent \(graph.descriptor.family) checkpoint: \(counted(graph.nodes.count, "tensor")), \(counted(graph.binding.layerCount, "layer"))\n")
            } else {
                warn(model.warnings)
                // A header of a million stray tensors must not print a million lines: the
                // first ones show the pattern, --json lists them all.
                for problem in graph.problems.prefix(Self.shownProblems) { StandardStream.standardError.write("pare: error: \(problem)\n") }
                if graph.problems.count > Self.shownProblems {
                    StandardStream.standardError.write("pare: error: … and \(graph.problems.count - Self.shownProblems) more (--json lists every one)\n")
                }
                StandardStream.standardError.write("pare: error: \(path): \(graph.problems.count) problem\(graph.problems.count == 1 ? "" : "s") against the \(graph.descriptor.family) descriptor\n")
            }
            if !graph.problems.isEmpty || !goldenDifferences.isEmpty { throw ExitCode(1) }
        }
    }

    /// Problems printed one per line before the rest are counted.
    static let shownProblems = 20

    static func report(_ graph: ModelGraph, golden: [String]) -> JSONValue {
        .object([
            ("path", .string(graph.model.path)),
            ("family", .string(graph.descriptor.family)),
            ("model_type", graph.model.config?.json["model_type"] ?? .null),
            ("valid", .bool(graph.problems.isEmpty && golden.isEmpty)),
            ("axes", .object(graph.binding.sizes.sorted { $0.key < $1.key }.map { ($0.key.rawValue, .integer($0.value)) })),
            ("tensors", .integer(graph.nodes.count)),
            ("problems", .array(graph.problems.map { problem in
                .object([("rule", .string(problem.rule)), ("message", .string(problem.description))])
            })),
            ("golden_differences", .array(golden.map { .string($0) })),
            ("warnings", .array(graph.model.warnings.map { .string($0) })),
        ])
    }
}
