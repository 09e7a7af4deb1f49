import ArgumentParser
import Emit
import ModelFolder
import ModelGraph
import PareFormat
import Passes
import Tensors

/// Option values parsed into typed values at the parser: a bad value is refused there,
/// named with its rule, whatever other options are given. Each `parse` is an option's
/// `transform:` (ArgumentParser shows the thrown message after the value and option).
/// `--drop-layers`: explicit layers, or how many to choose.
enum LayerDrop {
    case layers([Int])
    case auto(Int)
}

/// `--merge-layers`: explicit runs, or LaCo's search.
enum LayerMerge {
    case runs([[Int]])
    case auto
}

enum Parse {
    static func size(_ text: String) throws -> TrimRequest.Size {
        guard let size = TrimRequest.Size(text) else {
            throw ValidationError("takes a count of at least 1 (6144) or a fraction in (0, 1] (0.75)")
        }
        return size
    }

    static func count(_ text: String) throws -> Int {
        guard let n = Int(text), n >= 1 else { throw ValidationError("takes a whole count of at least 1") }
        return n
    }

    /// `3,20-23`, or `auto:N` for N layers chosen by the `--score` depth criterion.
    static func layerDrop(_ text: String) throws -> LayerDrop {
        if text.hasPrefix("auto:") {
            guard let n = Int(text.dropFirst(5)), n >= 1 else { throw ValidationError("auto:N takes a whole count of at least 1, such as auto:4") }
            return .auto(n)
        }
        guard let layers = LayerList.parse(text) else {
            throw ValidationError("takes layer indices from 0 and rising ranges, such as 3,20-23, or auto:N")
        }
        return .layers(layers)
    }

    static func criteria(_ text: String) throws -> TrimCriteria {
        do { return try TrimCriteria(parsing: text) } catch { throw ValidationError(error.description) }
    }

    /// `20-23` or `3-4,20-23`, or `auto` for LaCo's search.
    static func runs(_ text: String) throws -> LayerMerge {
        if text == "auto" { return .auto }
        guard let runs = LayerList.parseRuns(text) else {
            throw ValidationError("takes rising runs of two or more consecutive layers, such as 20-23 or 3-4,20-23, or auto")
        }
        return .runs(runs)
    }

    static func similarity(_ text: String) throws -> Double {
        guard let t = Double(text), t >= -1, t <= 1 else { throw ValidationError("takes a cosine similarity in [-1, 1], such as 0.45") }
        return t
    }

    static func pattern(_ text: String) throws -> NMPacking.Pattern {
        guard let pattern = NMPacking.Pattern(text) else {
            throw ValidationError("takes N:M with 1 ≤ N < M ≤ 16, such as 2:4 or 4:8")
        }
        return pattern
    }

    static func bytes(_ text: String) throws -> ByteCount {
        guard let count = ByteCount(argument: text) else {
            throw ValidationError("takes a positive size such as 5GB, 500MB, 2GiB or a byte count")
        }
        return count
    }

    static func dtype(_ text: String) throws -> DType {
        guard let dtype = DType(castName: text) else { throw ValidationError("takes f32, f16 or bf16") }
        return dtype
    }

    static func layout(_ text: String) throws -> any SparseLayout {
        guard let layout = LayoutRegistry.layout(named: text) else {
            throw ValidationError("takes one of \(LayoutRegistry.names.joined(separator: ", "))")
        }
        return layout
    }
}

/// A byte size as users write it (`5GB`, `500MB`, `2GiB`, `1000`), shown as written.
struct ByteCount: ExpressibleByArgument, CustomStringConvertible, Sendable {
    let bytes: Int
    let description: String

    init?(argument: String) {
        guard let bytes = ByteSize.parse(argument) else { return nil }
        self.bytes = bytes
        description = argument
    }

    /// transformers' default shard size.
    static let fiveGB = ByteCount(argument: "5GB")!
}

extension WeightFormat: ExpressibleByArgument {}
extension TrimRequest.NormPolicy: ExpressibleByArgument, CaseIterable {
    public static let allCases: [TrimRequest.NormPolicy] = [.first, .merge]
}
extension SparsifyRequest.Score: ExpressibleByArgument {}

/// What every command that writes a checkpoint takes.
struct OutputOptions: ParsableArguments {
    @Option(parsing: .unconditional, help: ArgumentHelp("Largest shard, in tensor bytes: 5GB, 500MB, 2GiB or a byte count.", valueName: "size"), transform: Parse.bytes)
    var maxShardSize = ByteCount.fiveGB

    @Flag(help: "Replace OUT if it exists (it is swapped out only once the new one is complete).")
    var force = false

    @Flag(help: "No progress bar or report.")
    var quiet = false

    @Flag(help: "When another pare run is replacing the same output (or, with --in-place, the same model), fail at once naming its PID instead of waiting for it.")
    var noWait = false
}

/// The weight file format of OUT, for commands that can write either.
struct WeightFormatOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Weight file format of OUT (IN may be either).", valueName: "safetensors|pare"))
    var format: WeightFormat = .safetensors

    @Option(parsing: .unconditional, help: ArgumentHelp("With --format pare: zstd level (1-22) of the exponent byte streams, masks and positions. The default, 0, is entropy coding only, which is smaller than levels 1-18 on float weights and several times faster; mantissa streams are always entropy-coded only.", valueName: "n"))
    var level: Int32?

    func validate() throws {
        if let level {
            guard format == .pare else { throw ValidationError("--level sets the .pare compression: it needs --format pare") }
            guard (0...22).contains(level) else {
                throw ValidationError("--level must be 0 (entropy coding only) or a zstd level from 1 to 22 (got \(level))")
            }
        }
    }

    var pare: PareWriter.Options { PareWriter.Options(level: level ?? 0) }
}

/// Extra architecture descriptors.
struct DescriptorOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Also read architecture descriptors from this folder (they win over built-in ones; the schema is formats/README.md in pare's source).", valueName: "dir"))
    var formats: String?

    func registry() throws(GraphError) -> DescriptorRegistry {
        try formats.map { dir throws(GraphError) in try DescriptorRegistry.loading(directory: dir) } ?? .builtin
    }
}

/// "1 tensor", "2 tensors".
func counted(_ n: Int, _ noun: String) -> String { "\(n) \(noun)\(n == 1 ? "" : "s")" }

extension Provenance {
    /// This run of pare on `input`, with its command line.
    static func thisRun(input: String) -> Provenance {
        Provenance(tool: "pare \(Pare.configuration.version)", input: input, request: CommandLine.arguments.dropFirst().joined(separator: " "))
    }
}

/// How model folders are read: shared by every command that opens one.
struct FolderOptions: ParsableArguments {
    @Flag(help: "Read files that symlinks in the model folder point to outside it (refused by default: a downloaded folder could link to your own files and carry them into outputs).")
    var followSymlinks = false
}
