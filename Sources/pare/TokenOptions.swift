import ArgumentParser
import Foundation
import ModelFolder
import Runtime
import Tensors
import Tokenizer

/// The calibration or evaluation input, as token ids or as text: shared by `eval` and
/// `calibrate` (and, through `SelectionOptions`, `trim --calibrate`).
struct TokenOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Token ids: a safetensors file with 'input_ids' [N, T] (and optionally 'attention_mask'), or JSON lines of id lists.", valueName: "file"))
    var tokens: String?

    @Option(help: ArgumentHelp("Text, tokenized with the model's tokenizer.json: plain UTF-8 (one document) or JSON lines with a 'text' field (one document per line).", valueName: "file"))
    var text: String?

    @OptionGroup var windows: WindowOptions

    func validate() throws {
        try source.check()
    }

    var source: TokenSource {
        TokenSource(tokens: tokens, text: text, seqLen: windows.seqLen, samples: windows.samples, seed: windows.seed)
    }
}

/// How token ids are cut into windows: shared by `eval`, `calibrate` and `tokenize`.
struct WindowOptions: ParsableArguments {
    @Option(name: .customLong("seq-len"), help: ArgumentHelp("Cut into windows of this many tokens (the last may be shorter). Text documents are joined end to end first.", valueName: "T"),
            transform: Parse.count)
    var seqLen: Int?

    @Option(help: ArgumentHelp("Use only the first N windows (with --seed: N windows at random offsets).", valueName: "N"), transform: Parse.count)
    var samples: Int?

    @Option(help: ArgumentHelp("With --samples and --seq-len: draw the N windows of exactly T tokens at random offsets from this seed, as calibration scripts do (SplitMix64: the same draw on every machine).", valueName: "S"))
    var seed: UInt64?
}

/// Where a run's token windows come from, and how they are cut.
struct TokenSource {
    var tokens: String?
    var text: String?
    var seqLen: Int?
    var samples: Int?
    var seed: UInt64?

    /// The file named, for messages and metadata.
    var path: String { tokens ?? text ?? "" }

    var isGiven: Bool { tokens != nil || text != nil }

    func check(required: Bool = true) throws {
        if tokens != nil && text != nil { throw ValidationError("give either --tokens or --text, not both") }
        if required && !isGiven { throw ValidationError("give --tokens FILE (token ids) or --text FILE (text to tokenize)") }
        if seed != nil && (samples == nil || seqLen == nil) {
            throw ValidationError("--seed draws --samples N windows of --seq-len T tokens at random offsets; give both")
        }
    }

    /// The windows as one ragged batch, checked against the model's position limit.
    func batch(model: String, for plan: ForwardPlan, followSymlinks: Bool) throws -> TokenBatch {
        let sequences: [[Int32]]
        var joined = false
        if let text {
            sequences = try TextTokenization(model: model, text: text, followSymlinks: followSymlinks).sequences
            joined = true
        } else {
            sequences = try TokenFile(path: path).sequences
        }
        let windows = Self.windows(sequences, joined: joined, seqLen: seqLen, samples: samples, seed: seed)
        guard !windows.isEmpty else { throw RuntimeError.tokensInvalid(path: path, problem: "holds no tokens") }
        if let positions = plan.positions, seqLen == nil, let long = windows.firstIndex(where: { $0.count > positions }) {
            throw RuntimeError.sequenceTooLong(path: path, sequence: long, length: windows[long].count, positions: positions)
        }
        return TokenBatch(sequences: windows)
    }

    /// Token-file rows are cut one by one; text documents are joined first (as the
    /// perplexity and calibration recipes join their texts), unless no length is given.
    static func windows(_ sequences: [[Int32]], joined: Bool, seqLen: Int?, samples: Int?, seed: UInt64?) -> [[Int32]] {
        if let seed, let seqLen, let samples {
            return TokenWindows.sample(sequences, length: seqLen, samples: samples, seed: seed)
        }
        if joined, seqLen != nil {
            return TokenWindows.cut([sequences.flatMap { $0 }], length: seqLen, samples: samples)
        }
        return TokenWindows.cut(sequences, length: seqLen, samples: samples)
    }
}

/// A text file tokenized with a model folder's tokenizer.json.
struct TextTokenization {
    let tokenizer: Tokenizer
    let corpus: TextCorpus
    let sequences: [[Int32]]
    let seconds: Double

    init(model: String, text: String, followSymlinks: Bool) throws {
        // tokenizer.json is a file of the model folder: confined like the others.
        let file = FileSystem.kind(of: model) == .directory ? PathName.join(model, "tokenizer.json") : model
        if !followSymlinks { try ModelFolder.checkConfined(file, in: ModelFolder.confinement(of: PathName.parent(file))) }
        tokenizer = try Tokenizer(folder: model)
        corpus = try TextCorpus(path: text)
        let start = DispatchTime.now().uptimeNanoseconds
        sequences = try tokenizer.encode(corpus)
        seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }
}
