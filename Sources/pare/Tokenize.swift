import ArgumentParser
import Calibration
import Foundation
import OrderedJSON
import Runtime
import Tensors
import Tokenizer

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Turn text into the token file pare eval and pare calibrate read (--tokens).",
        discussion: """
            pare encodes the text with the model folder's tokenizer.json, giving the ids the \
            Hugging Face tokenizers library (and transformers' AutoTokenizer) gives: \
            byte-level BPE (GPT-2, Llama 3, Qwen), SentencePiece-style BPE with byte fallback \
            (Llama 2, Mistral, Mixtral) and WordPiece (BERT). A component pare does not \
            implement is an error that names it; pare never substitutes one that could give \
            other ids. Truncation and padding in tokenizer.json are ignored.

            The text is plain UTF-8 (the whole file is one document) or JSON lines whose \
            every line is an object with a string 'text' (one document per line). Bytes that \
            are not UTF-8 become U+FFFD. Each document gets the post-processor's special \
            tokens (BOS, [CLS] … [SEP]).

            The output holds 'input_ids' and 'attention_mask', I64 [rows, longest], padded \
            on the right with id 0 and mask 0. Without --seq-len, one row per document. With \
            --seq-len T, the documents are joined end to end and cut into windows of T \
            tokens (the last may be shorter); --samples N keeps the first N, or, with \
            --seed, draws N windows of exactly T tokens at random offsets (SplitMix64, the \
            same draw on every machine). pare eval and pare calibrate cut --text the same way.

            Examples:
              pare tokenize ./model --text wiki.txt -o wiki.safetensors --seq-len 2048
              pare tokenize ./model --text c4.jsonl -o calib.safetensors --seq-len 2048 --samples 128 --seed 0
              pare eval ./model --tokens wiki.safetensors
            """
    )

    @Argument(help: "Model folder holding tokenizer.json (or the tokenizer.json itself).")
    var model: String

    @OptionGroup(title: "Model folder")
    var folders: FolderOptions

    @Option(help: ArgumentHelp("The text: plain UTF-8, or JSON lines with a 'text' field.", valueName: "file"))
    var text: String

    @Option(name: [.customShort("o"), .long], help: ArgumentHelp("The token file to write (safetensors).", valueName: "file"))
    var output: String

    @OptionGroup(title: "Windows")
    var windows: WindowOptions

    @Flag(help: "Replace an existing output file.")
    var force = false

    @Flag(help: "Print one JSON object (stable field names) instead of text.")
    var json = false

    func validate() throws {
        try TokenSource(text: text, seqLen: windows.seqLen, samples: windows.samples, seed: windows.seed).check()
    }

    func run() throws {
        try reportingFailures {
            if !force, FileSystem.kind(of: output) != nil {
                throw RuntimeError.io(path: output, problem: "already exists (give --force to replace it)")
            }
            let tokenized = try TextTokenization(model: model, text: text, followSymlinks: folders.followSymlinks)
            // Without a length every document keeps its row, an empty one too, so that row k
            // is document k.
            let rows = windows.seqLen == nil
                ? Array(tokenized.sequences.prefix(windows.samples ?? .max))
                : TokenSource.windows(tokenized.sequences, joined: true, seqLen: windows.seqLen, samples: windows.samples, seed: windows.seed)
            guard rows.contains(where: { !$0.isEmpty }) else { throw RuntimeError.tokensInvalid(path: text, problem: "gives no tokens") }
            var metadata: [(key: String, value: String)] = [
                ("tool", "pare tokenize"),
                ("pare_version", StatisticsFile.pareVersion),
                ("text", text),
                ("tokenizer", tokenized.tokenizer.path),
                ("documents", String(tokenized.corpus.documents.count)),
            ]
            if let seqLen = windows.seqLen { metadata.append(("seq_len", String(seqLen))) }
            if let seed = windows.seed { metadata.append(("seed", String(seed))) }
            try TokenFile.write(rows, to: output, metadata: metadata)
            let tokens = tokenized.sequences.reduce(0) { $0 + $1.count }
            let kept = rows.reduce(0) { $0 + $1.count }
            if json {
                let members: [(key: String, value: JSONValue)] = [
                    ("model", .string(model)),
                    ("tokenizer", .string(tokenized.tokenizer.path)),
                    ("components", .object(tokenized.tokenizer.components.map { ($0.stage, .string($0.type)) })),
                    ("text", .string(text)),
                    ("text_bytes", .integer(tokenized.corpus.bytes)),
                    ("json_lines", .bool(tokenized.corpus.isJSONLines)),
                    ("documents", .integer(tokenized.corpus.documents.count)),
                    ("tokens", .integer(tokens)),
                    ("sequences", .integer(rows.count)),
                    ("kept_tokens", .integer(kept)),
                    ("encode_seconds", .double(tokenized.seconds)),
                    ("output", .string(output)),
                ]
                StandardStream.standardOutput.write(JSONValue.object(members).serialized(.pretty) + "\n")
            } else {
                let rate = tokenized.seconds > 0 ? Double(tokenized.corpus.bytes) / tokenized.seconds / 1e6 : 0
                StandardStream.standardError.write(
                    "\(text): \(counted(tokenized.corpus.documents.count, "document")), \(counted(tokens, "token")) in \(String(format: "%.2f", tokenized.seconds)) s (\(String(format: "%.1f", rate)) MB/s)\n"
                        + "wrote \(counted(rows.count, "row")) (\(counted(kept, "token"))) to \(output)\n")
            }
        }
    }
}
