extension ModelSummary {
    /// The human-readable report of `pare inspect`.
    public func text(includeTensors: Bool) -> String {
        let s = self
        var lines: [String] = []
        let kind = [s.modelType, s.architectures?.joined(separator: ", ")].compactMap { $0 }.joined(separator: ", ")
        lines.append(kind.isEmpty ? s.path : "\(s.path) (\(kind))")
        func row(_ label: String, _ value: String) {
            lines.append("  " + label.padded(to: 20) + value)
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
        if s.format == .pare {
            let ratio = s.bytes > 0 ? ByteSize.format(Double(s.fileBytes) / Double(s.bytes), 3) : "1"
            row("files", "\(s.shards.count) .pare, \(ByteSize.describe(s.fileBytes)) on disk (\(ratio)× the tensor bytes)")
        } else {
            row("files", "\(s.shards.count)")
        }
        if s.shards.count > 1 {
            for shard in s.shards {
                row("  " + shard.file, "\(shard.tensors) tensors, \(ByteSize.describe(shard.bytes))")
            }
        }
        if !s.extraModules.isEmpty {
            row("extra modules", s.extraModules.joined(separator: ", ") + " (their weights are not read; copied unchanged)")
        }
        if includeTensors {
            lines.append("")
            let nameWidth = min(80, s.tensors.map(\.info.name.count).max() ?? 0)
            for tensor in s.tensors {
                let shape = "[" + tensor.info.shape.map(String.init).joined(separator: ", ") + "]"
                var line = tensor.info.name.padded(to: nameWidth + 2) + tensor.info.dtype.name.padded(to: 12) + shape.padded(to: 20)
                if let stored = s.storage[tensor.info.name] {
                    line += stored.encoding.padded(to: 16) + ByteSize.describe(stored.storedBytes).padded(to: 12)
                }
                if s.shards.count > 1 { line += s.shardNames[tensor.shard] }
                while line.last == " " { line.removeLast() }
                lines.append(line)
            }
        }
        return lines.joined(separator: "\n") + "\n"
    }
}

extension String {
    /// The string followed by spaces up to `width` columns, and at least one: the column
    /// layout of pare's text reports.
    public func padded(to width: Int) -> String {
        count >= width ? self + " " : self + String(repeating: " ", count: width - count)
    }
}
