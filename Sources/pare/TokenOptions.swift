import ArgumentParser
import Runtime

/// The calibration or evaluation text, as token ids: shared by `eval` and `calibrate`.
struct TokenOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Token ids: a safetensors file with 'input_ids' [N, T] (and optionally 'attention_mask'), or JSON lines of id lists.", valueName: "file"))
    var tokens: String

    @Option(name: .customLong("seq-len"), help: ArgumentHelp("Cut each sequence into windows of this many tokens (the last may be shorter).", valueName: "T"),
            transform: Parse.count)
    var seqLen: Int?

    @Option(help: ArgumentHelp("Use only the first N windows.", valueName: "N"), transform: Parse.count)
    var samples: Int?

    /// The windows as one ragged batch, checked against the model's position limit.
    func batch(for plan: ForwardPlan) throws -> TokenBatch {
        try Self.batch(tokens: tokens, seqLen: seqLen, samples: samples, for: plan)
    }

    static func batch(tokens: String, seqLen: Int?, samples: Int?, for plan: ForwardPlan) throws -> TokenBatch {
        let file = try TokenFile(path: tokens)
        let windows = file.windows(length: seqLen, samples: samples)
        guard !windows.isEmpty else { throw RuntimeError.tokensInvalid(path: tokens, problem: "holds no tokens") }
        if let positions = plan.positions, seqLen == nil, let long = windows.firstIndex(where: { $0.count > positions }) {
            throw RuntimeError.sequenceTooLong(path: tokens, sequence: long, length: windows[long].count, positions: positions)
        }
        return TokenBatch(sequences: windows)
    }
}
