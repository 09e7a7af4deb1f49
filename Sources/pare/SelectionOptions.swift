import ArgumentParser
import Calibration
import ModelFolder
import ModelGraph
import OrderedJSON
import Passes
import Runtime
import Tensors

/// How `pare trim` chooses from data: a statistics file, or a calibration run now, and the
/// criteria.
struct SelectionOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Calibration statistics of this model (pare calibrate, or tools/collect_stats.py): select by activation importance and block influence.", valueName: "file"))
    var stats: String?

    @Flag(help: "Collect the statistics now, on --tokens or --text, before trimming (pare calibrate without the file).")
    var calibrate = false

    @Option(help: ArgumentHelp("Calibration token ids for --calibrate (as pare calibrate --tokens).", valueName: "file"))
    var tokens: String?

    @Option(help: ArgumentHelp("Calibration text for --calibrate, tokenized with the model's tokenizer.json (as pare calibrate --text).", valueName: "file"))
    var text: String?

    @Option(name: .customLong("seq-len"), help: ArgumentHelp("With --calibrate: cut sequences into windows of T tokens.", valueName: "T"), transform: Parse.count)
    var seqLen: Int?

    @Option(help: ArgumentHelp("With --calibrate: use the first N windows (with --seed: N windows at random offsets).", valueName: "N"), transform: Parse.count)
    var samples: Int?

    @Option(help: ArgumentHelp("With --calibrate: draw the --samples windows at random offsets from this seed.", valueName: "S"))
    var seed: UInt64?

    @Option(help: ArgumentHelp("With --calibrate: threads for the forward pass (default: every core).", valueName: "N"), transform: Parse.count)
    var threads: Int?

    @Option(help: ArgumentHelp("Selection criteria, comma-separated: magnitude|activation (widths and experts), frequency|reconstruction (experts; reconstruction is NAEE's subset search and needs --calibrate), bi|last (--drop-layers auto:N). Default: activation and bi with statistics, magnitude without.", valueName: "list"),
            transform: Parse.criteria)
    var score: TrimCriteria?

    func validate() throws {
        if stats != nil && calibrate { throw ValidationError("give either --stats or --calibrate, not both") }
        if calibrate && !source.isGiven { throw ValidationError("--calibrate needs --tokens FILE (token ids) or --text FILE (text)") }
        if !calibrate && (source.isGiven || seqLen != nil || samples != nil || seed != nil || threads != nil) {
            throw ValidationError("--tokens, --text, --seq-len, --samples, --seed and --threads are read by --calibrate; add --calibrate")
        }
        try source.check(required: calibrate)
    }

    var source: TokenSource { TokenSource(tokens: tokens, text: text, seqLen: seqLen, samples: samples, seed: seed) }

    /// LaCo's search on the calibration tokens: the runs to merge, and the record of every
    /// trial.
    func collapse(
        graph: ModelGraph, targetLayers: Int, span: Int?, interval: Int?, threshold: Double?, mergeNorms: Bool, quiet: Bool
    ) throws -> (runs: [[Int]], record: JSONValue) {
        guard source.isGiven else { throw ValidationError("--merge-layers auto needs --calibrate --tokens FILE (or --text FILE)") }
        let tokens = source.path
        let plan = try ForwardPlan(graph: graph)
        let batch = try source.batch(model: graph.model.path, for: plan, followSymlinks: graph.model.followsSymlinks)
        let cores = threads ?? FloatConversion.activeCores
        BLAS.threads = cores
        var options = LayerCollapseSearch.Options(targetLayers: targetLayers, mergeNorms: mergeNorms)
        if let span { options.span = span }
        if let interval { options.interval = interval }
        if let threshold { options.threshold = threshold }
        let search = try LayerCollapseSearch(plan: plan, batch: batch, threads: cores, options: options, source: tokens)
        let result = try ProgressBar.running("LaCo search", quiet: quiet, tokens: batch.tokenCount) { progress in
            try search.run { _, layer in progress(1 - Double(layer) / Double(max(1, plan.layers))) }
        }
        if result.merges.isEmpty {
            let best = result.trials.map(\.similarity).max()
            throw TrimError.criterion(name: "--merge-layers auto", problem: "kept no merge: \(result.trials.count) trial\(result.trials.count == 1 ? "" : "s"), the best with a final-state cosine of \(best.map { String(format: "%.4f", $0) } ?? "none") against --threshold \(options.threshold); lower the threshold or the span")
        }
        if result.layers > targetLayers {
            warn(["LaCo's search stopped at \(result.layers) layers, above --target-layers \(targetLayers): no further merge kept the final-state cosine at --threshold \(options.threshold)"])
        }
        let record: JSONValue = .object([
            ("criterion", .string("laco")),
            ("span", .integer(options.span)), ("interval", .integer(options.interval)), ("threshold", .double(options.threshold)),
            ("target_layers", .integer(targetLayers)), ("layers", .integer(result.layers)),
            ("tokens", .string(tokens)),
            ("merges", .array(result.merges.map { .array($0.map { .integer($0) }) })),
            ("trials", .array(result.trials.map {
                .object([("run", .array($0.run.map { .integer($0) })), ("similarity", .double($0.similarity)), ("accepted", .bool($0.accepted))])
            })),
        ])
        return (result.merges, record)
    }

    /// What the data says: statistics, and NAEE's expert subsets when searched.
    struct Evidence {
        var statistics: CalibrationStatistics
        var expertSubsets: [Int: (kept: [Int], record: JSONValue)] = [:]
    }

    /// The statistics, read and matched to the model or collected now (nil for neither);
    /// with `searchExperts`, also NAEE's search for that many experts per MoE layer, which
    /// needs the calibration tokens themselves.
    /// `needed` false skips the calibration pass of `--calibrate` when nothing but LaCo's
    /// search (which runs its own) reads the data.
    func evidence(for model: ModelFolder, graph: ModelGraph, searchExperts: Int?, needed: Bool = true, quiet: Bool) throws -> Evidence? {
        if let stats {
            if searchExperts != nil {
                throw TrimError.criterion(name: "reconstruction", problem: "re-runs each MoE layer on the calibration tokens, which a statistics file does not hold: give --calibrate --tokens FILE instead of --stats")
            }
            let statistics = try CalibrationStatistics.load(path: stats)
            try statistics.check(model: model)
            return Evidence(statistics: statistics)
        }
        guard calibrate, source.isGiven, needed || searchExperts != nil else {
            if searchExperts != nil {
                throw TrimError.criterion(name: "reconstruction", problem: "searches expert subsets on calibration tokens: give --calibrate --tokens FILE")
            }
            return nil
        }
        return try collect(on: source.path, model: model, graph: graph, searchExperts: searchExperts, quiet: quiet)
    }

    private func collect(on tokens: String, model: ModelFolder, graph: ModelGraph, searchExperts: Int?, quiet: Bool) throws -> Evidence {
        let plan = try ForwardPlan(graph: graph)
        let batch = try source.batch(model: model.path, for: plan, followSymlinks: model.followsSymlinks)
        let cores = threads ?? FloatConversion.activeCores
        BLAS.threads = cores
        let metadata = try StatisticsFile.metadata(model: model, batch: batch, source: tokens)
        var search: ExpertSubsetSearch?
        if let keep = searchExperts {
            guard plan.experts > 0 else { throw TrimError.notSupported(family: plan.family, request: "--score reconstruction", reason: "it has no routed experts") }
            guard keep >= plan.expertsPerToken, keep <= plan.experts else {
                throw TrimError.countOutOfRange(what: "experts", requested: keep, available: plan.experts)
            }
            search = ExpertSubsetSearch(plan: plan, keep: keep)
        }
        let pass = try CalibrationPass(plan: plan, batch: batch, threads: cores, source: tokens, observers: search.map { [$0] } ?? [])
        let result = try ProgressBar.running("calibrating", quiet: quiet, tokens: batch.tokenCount) { progress in
            try pass.run(progress: progress)
        }
        let statistics = CalibrationStatistics(
            source: tokens, fileSHA256: nil, metadata: metadata,
            values: Dictionary(uniqueKeysWithValues: result.statistics.map { ($0.name, $0.values) }))
        var evidence = Evidence(statistics: statistics)
        for r in search?.results ?? [] {
            let record: JSONValue = .object([
                ("layer", .integer(r.layer)),
                ("kept", .array(r.kept.map { .integer($0) })),
                ("loss", .double(r.loss)),
                ("relative_loss", .double(r.outputSquares > 0 ? r.loss / r.outputSquares : 0)),
                ("search", .string(r.exhaustive ? "exhaustive" : "greedy")),
                ("evaluated", .integer(r.evaluated)),
                ("ranking", .array(r.ranking.map { .object([("kept", .array($0.kept.map { .integer($0) })), ("loss", .double($0.loss))]) })),
            ])
            evidence.expertSubsets[r.layer] = (r.kept, record)
        }
        return evidence
    }
}
