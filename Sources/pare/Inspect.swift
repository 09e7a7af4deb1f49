import ArgumentParser
import ModelFolder
import OrderedJSON

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a checkpoint's architecture, size and tensors without loading it.",
        discussion: """
            PATH is a model folder, a single .safetensors file, or a \
            model.safetensors.index.json. Only headers and config.json are read, so this \
            is instant on any model size. Every header is validated as the safetensors \
            reference does, so inspect also tells whether a checkpoint is well formed.

            Examples:
              pare inspect ./Llama-3.2-1B
              pare inspect ./model.safetensors --tensors
              pare inspect ./model --json | jq .parameters
            """
    )

    @Argument(help: "Model folder, .safetensors file, or model.safetensors.index.json.")
    var path: String

    @Flag(help: "Print one JSON object (stable field names) instead of text.")
    var json = false

    @Flag(help: "Also list every tensor: name, dtype, shape and file.")
    var tensors = false

    func run() throws {
        try reportingFailures {
            let model = try ModelFolder(path: path)
            let summary = ModelSummary(model)
            if json {
                FileHandleOutput.standardOutput.write(summary.json(includeTensors: tensors).serialized(.pretty) + "\n")
            } else {
                FileHandleOutput.standardOutput.write(Self.text(summary, includeTensors: tensors))
            }
        }
    }

    static func text(_ s: ModelSummary, includeTensors: Bool) -> String {
        var lines: [String] = []
        let kind = [s.modelType, s.architectures?.joined(separator: ", ")].compactMap { $0 }.joined(separator: ", ")
        lines.append(kind.isEmpty ? s.path : "\(s.path) (\(kind))")
        func row(_ label: String, _ value: String) {
            lines.append("  " + label.padding(20) + value)
        }
        func size(_ field: String) -> String { (s.sizes[field] ?? nil).map(String.init) ?? "—" }
        if s.modelType != nil || s.sizes.values.contains(where: { $0 != nil }) {
            row("layers", size("layers"))
            row("hidden size", size("hidden_size"))
            row("attention heads", "\(size("attention_heads")) (kv heads \(size("kv_heads")), head_dim \(size("head_dim")))")
            var ffn = size("intermediate_size")
            if let moe = s.sizes["moe_intermediate_size"] ?? nil { ffn += ", per expert \(moe)" }
            if let shared = s.sizes["shared_expert_intermediate_size"] ?? nil { ffn += ", shared expert \(shared)" }
            row("intermediate size", ffn)
            if let experts = s.sizes["experts"] ?? nil {
                row("experts", "\(experts) (top \(size("experts_per_token")) per token)")
            }
            row("vocab size", size("vocab_size"))
            if let tied = s.tieWordEmbeddings { row("tied embeddings", tied ? "yes" : "no") }
        } else {
            lines.append("  (no config.json: sizes unknown)")
        }
        row("parameters", "\(Count.short(s.parameters)) (\(Count.grouped(s.parameters)))")
        row("tensor bytes", ByteSize.describe(s.bytes))
        for (dtype, totals) in s.dtypes {
            row("  " + dtype.name, "\(totals.tensors) tensors, \(Count.short(totals.parameters)) params, \(ByteSize.describe(totals.bytes))")
        }
        row("files", "\(s.shards.count)")
        if s.shards.count > 1 {
            for shard in s.shards {
                row("  " + shard.file, "\(shard.tensors) tensors, \(ByteSize.describe(shard.bytes))")
            }
        }
        if includeTensors {
            lines.append("")
            let nameWidth = min(80, s.tensors.map(\.info.name.count).max() ?? 0)
            for tensor in s.tensors {
                let shape = "[" + tensor.info.shape.map(String.init).joined(separator: ", ") + "]"
                var line = tensor.info.name.padding(nameWidth + 2) + tensor.info.dtype.name.padding(12) + shape.padding(20)
                if s.shards.count > 1 { line += s.shardNames[tensor.shard] }
                lines.append(line)
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// Counts for people: `1.24B`, `356M`, `12.3K`, and `1,234,567`.
enum Count {
    static func short(_ n: UInt64) -> String {
        let value = Double(n)
        for (unit, factor) in [("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)] where value >= factor {
            let scaled = value / factor
            return ByteSize.describe(UInt64(scaled * 1000)).split(separator: " ").first.map { _ in
                trimmed(scaled) + unit
            } ?? "\(n)"
        }
        return "\(n)"
    }

    private static func trimmed(_ value: Double) -> String {
        let digits = value >= 100 ? 0 : value >= 10 ? 1 : 2
        var factor = 1.0
        for _ in 0..<digits { factor *= 10 }
        let rounded = (value * factor).rounded() / factor
        var text = String(rounded)
        if text.hasSuffix(".0") { text.removeLast(2) }
        return text
    }

    static func grouped(_ n: UInt64) -> String {
        let digits = Array(String(n))
        var out = ""
        for (i, d) in digits.enumerated() {
            if i > 0 && (digits.count - i) % 3 == 0 { out.append(",") }
            out.append(d)
        }
        return out
    }
}

extension String {
    func padding(_ width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
