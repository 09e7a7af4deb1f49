import ArgumentParser
import Foundation
import ModelFolder
import ModelGraph
import OrderedJSON
import Passes
import Runtime
import Tensors

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run a model on token ids: perplexity, or how far it moved from a reference.",
        discussion: """
            pare runs the model itself, on the CPU, in f32, one layer at a time: every \
            sequence passes through layer l before layer l+1 is read, so memory is one \
            layer's weights in f32 plus the batch's activations, whatever the model's size. \
            It reads safetensors and .pare checkpoints, trimmed ones included.

            A causal LM reports perplexity: exp of the mean next-token negative \
            log-likelihood over every window (what transformers' loss with labels=input_ids \
            gives). An encoder (BERT) reports nothing to minimise; --save writes its \
            mean-pooled embeddings, and --reference compares them.

            With --reference (usually the model before a trim), both run side by side and \
            pare reports KL(reference ‖ model) of the next-token distributions (mean and \
            95th percentile over positions), top-1 agreement, the cosine of the final hidden \
            states, and a cosine per layer, matching each layer of the model to the layer of \
            the reference it came from (read from the model's pare-trim.json).

            --tokens is a safetensors file with an integer 'input_ids' [N, T] (and \
            optionally 'attention_mask': tokens whose mask is 0 are left out), or JSON \
            lines, one list of ids per line.

            Examples:
              pare eval ./model --tokens heldout.safetensors
              pare eval ./trimmed --tokens ids.jsonl --seq-len 512 --samples 8 --reference ./model
              pare eval ./model --tokens ids.safetensors --save logits.safetensors --json
            """
    )

    @Argument(help: "Model folder to run (safetensors or .pare).")
    var model: String

    @OptionGroup(title: "Model folder")
    var folders: FolderOptions

    @OptionGroup(title: "Tokens")
    var text: TokenOptions

    @Option(help: ArgumentHelp("Compare with this model (usually the untrimmed original): KL, top-1 agreement, cosines.", valueName: "folder"))
    var reference: String?

    @Option(help: ArgumentHelp("Threads for OpenBLAS and pare's own loops (default: every core).", valueName: "N"),
            transform: Parse.count)
    var threads: Int?

    @Option(help: ArgumentHelp("Write F32 logits [N, T, V] and final hidden states [N, T, H] (encoders: hidden states and pooled [N, H]) to this safetensors file.", valueName: "file"))
    var save: String?

    @Option(name: .customLong("expert-skip"), help: ArgumentHelp("MoE: NAEE's dynamic skipping. A token's second (and later) expert is skipped when its routing weight is below β times the first's; 'auto' reads each layer's β (the median w₂/w₁) from --stats. Reports the fraction of expert evaluations saved.", valueName: "β|auto"))
    var expertSkip: String?

    @Option(help: ArgumentHelp("Calibration statistics of this model (pare calibrate), for --expert-skip auto.", valueName: "file"))
    var stats: String?

    @Flag(help: "Print one JSON object (stable field names) instead of text.")
    var json = false

    @Flag(help: "No progress bar.")
    var quiet = false

    @OptionGroup var descriptors: DescriptorOptions

    func run() throws {
        try reportingFailures {
            let registry = try descriptors.registry()
            let plan = try Self.plan(model, registry: registry, followSymlinks: folders.followSymlinks)
            let batch = try text.source.batch(model: model, for: plan, followSymlinks: folders.followSymlinks)
            let cores = threads ?? FloatConversion.activeCores
            BLAS.threads = cores

            var options = Evaluation.Options(threads: cores, savePath: save, source: text.source.path)
            options.expertSkip = try skipThresholds(plan)
            var referencePlan: ForwardPlan?
            if let reference {
                referencePlan = try Self.plan(reference, registry: registry, followSymlinks: folders.followSymlinks)
                if let trim = try Self.trimPlan(model) {
                    let original = referencePlan!.layers
                    // A merged layer stands for its whole run: it is compared with the output
                    // of the run's last layer, the point the rest of the network reads from.
                    let removed = trim.removedLayers
                    let mergedInto = Dictionary(trim.merges.map { ($0.layers[0], $0.layers.max() ?? $0.layers[0]) }, uniquingKeysWith: { a, _ in a })
                    options.layerMap = (0..<original).filter { !removed.contains($0) }.map { mergedInto[$0] ?? $0 }
                    options.hiddenKeep = trim.kept(.hidden, layer: nil)
                }
            }
            let evaluation = try Evaluation(model: plan, reference: referencePlan, batch: batch, options: options)
            let result = try ProgressBar.running("eval", quiet: quiet || json, tokens: batch.tokenCount) { progress in
                try evaluation.run(progress: progress)
            }
            if json {
                StandardStream.standardOutput.write(report(result, plan: plan).serialized(.pretty) + "\n")
            } else {
                StandardStream.standardOutput.write(text(result, plan: plan))
            }
        }
    }

    /// β per layer for `--expert-skip`: one value for all, or each MoE layer's from --stats.
    private func skipThresholds(_ plan: ForwardPlan) throws -> [Float?]? {
        guard let expertSkip else {
            if stats != nil { throw ValidationError("--stats is read by --expert-skip auto; add it or drop --stats") }
            return nil
        }
        guard plan.experts > 0 else {
            throw RuntimeError.unsupported(what: "--expert-skip on \(plan.family), which has no routed experts")
        }
        guard plan.expertsPerToken >= 2 else {
            throw RuntimeError.unsupported(what: "--expert-skip with one expert per token (num_experts_per_tok = 1): there is no second expert to skip")
        }
        if expertSkip == "auto" {
            guard let stats else { throw ValidationError("--expert-skip auto reads each layer's β from --stats FILE (pare calibrate)") }
            let statistics = try CalibrationStatistics.load(path: stats)
            try statistics.check(model: try ModelFolder(path: model, followSymlinks: folders.followSymlinks))
            return try (0..<plan.layers).map { l in
                plan.isMoE(layer: l) ? Float(try statistics.vector(StatisticName.routerBeta(layer: l), count: 1)[0]) : nil
            }
        }
        guard let beta = Float(expertSkip), beta >= 0, beta <= 1 else {
            throw ValidationError("--expert-skip takes a threshold β in [0, 1] (such as 0.5) or auto")
        }
        if stats != nil { throw ValidationError("--stats is read by --expert-skip auto; a fixed β needs none") }
        return (0..<plan.layers).map { plan.isMoE(layer: $0) ? beta : nil }
    }

    static func plan(_ path: String, registry: DescriptorRegistry, followSymlinks: Bool) throws -> ForwardPlan {
        let folder = try ModelFolder(path: path, followSymlinks: followSymlinks)
        return try ForwardPlan(graph: try ModelGraph(model: folder, registry: registry))
    }

    /// The trim a model folder records, if it has a pare-trim.json.
    static func trimPlan(_ path: String) throws -> TrimPlan? {
        let file = (path as NSString).appendingPathComponent("pare-trim.json")
        guard let data = FileManager.default.contents(atPath: file) else { return nil }
        let json: JSONValue
        do { json = try JSONParser.parse(Array(data)) } catch {
            throw RuntimeError.referenceMismatch(problem: "\(file) is not JSON (\(error))")
        }
        guard let plan = json["plan"] else { return nil }
        return try TrimPlan(json: plan, source: file)
    }

    private func report(_ r: Evaluation.Result, plan: ForwardPlan) -> JSONValue {
        func number(_ v: Double?) -> JSONValue { v.map(JSONValue.double) ?? .null }
        var members: [(key: String, value: JSONValue)] = [
            ("model", .string(model)),
            ("family", .string(plan.family)),
            ("sequences", .integer(r.sequences)),
            ("tokens", .integer(r.tokens)),
            ("predicted_tokens", .integer(r.predictedTokens)),
            ("seconds", .double(r.seconds)),
            ("tokens_per_second", .double(r.tokensPerSecond)),
            ("threads", .integer(threads ?? FloatConversion.activeCores)),
            ("blas_core", .string(BLAS.coreName)),
            ("nll_mean", number(r.nllMean)),
            ("perplexity", number(r.perplexity)),
            ("resident_bytes", .integer(r.residentBytes)),
            ("peak_rss_bytes", .integer(ProcessMemory.peakResidentBytes)),
        ]
        if let reference {
            members += [
                ("reference", .string(reference)),
                ("kl_mean", number(r.klMean)),
                ("kl_p95", number(r.klP95)),
                ("top1_agreement", number(r.top1Agreement)),
                ("cosine_mean", number(r.cosineMean)),
                ("layers", .array(r.layers.map {
                    .object([("layer", .integer($0.layer)), ("reference_layer", .integer($0.referenceLayer)), ("cosine", .double($0.cosine))])
                })),
            ]
        }
        if expertSkip != nil {
            members += [
                ("expert_evaluations", .integer(r.expertEvaluations)),
                ("expert_evaluations_skipped", .integer(r.expertEvaluationsSkipped)),
                ("expert_skip_fraction", .double(r.expertEvaluations > 0 ? Double(r.expertEvaluationsSkipped) / Double(r.expertEvaluations) : 0)),
            ]
        }
        if let save { members.append(("saved", .string(save))) }
        return .object(members)
    }

    private func text(_ r: Evaluation.Result, plan: ForwardPlan) -> String {
        var lines = ["\(model) (\(plan.family)): \(counted(r.sequences, "sequence")), \(counted(r.tokens, "token")) in \(String(format: "%.2f", r.seconds)) s (\(String(format: "%.0f", r.tokensPerSecond)) tokens/s)"]
        if let p = r.perplexity, let nll = r.nllMean {
            lines.append("perplexity \(String(format: "%.4f", p)) (mean NLL \(String(format: "%.6f", nll)) over \(counted(r.predictedTokens, "predicted token")))")
        } else if !plan.causal {
            lines.append("encoder: mean-pooled embeddings\(save == nil ? " (--save writes them)" : "")")
        }
        if let reference {
            lines.append("against \(reference):")
            if let kl = r.klMean, let p95 = r.klP95, let top1 = r.top1Agreement {
                lines.append("  KL(reference ‖ model) mean \(String(format: "%.6f", kl)), p95 \(String(format: "%.6f", p95)); top-1 agreement \(String(format: "%.2f", top1 * 100)) %")
            }
            if let c = r.cosineMean { lines.append("  cosine of \(plan.causal ? "final hidden states" : "pooled embeddings") \(String(format: "%.6f", c))") }
            for l in r.layers {
                lines.append("  layer \(l.layer) (reference layer \(l.referenceLayer)): cosine \(String(format: "%.6f", l.cosine))")
            }
        }
        if expertSkip != nil, r.expertEvaluations > 0 {
            let fraction = Double(r.expertEvaluationsSkipped) / Double(r.expertEvaluations)
            lines.append("expert skipping (β \(expertSkip!)): \(r.expertEvaluationsSkipped) of \(r.expertEvaluations) expert evaluations skipped (\(String(format: "%.1f", fraction * 100)) %)")
        }
        if let save { lines.append("saved \(save)") }
        return lines.joined(separator: "\n") + "\n"
    }
}

/// The process's peak resident memory, as the kernel counts it.
enum ProcessMemory {
    static var peakResidentBytes: Int {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return usage.ru_maxrss * 1024
    }
}
