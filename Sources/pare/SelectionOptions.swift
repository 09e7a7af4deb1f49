import ArgumentParser
import Calibration
import ModelFolder
import ModelGraph
import Passes
import Runtime
import Tensors

/// How `pare trim` chooses from data: a statistics file, or a calibration run now, and the
/// criteria.
struct SelectionOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Calibration statistics of this model (pare calibrate, or tools/collect_stats.py): select by activation importance and block influence.", valueName: "file"))
    var stats: String?

    @Flag(help: "Collect the statistics now, on --tokens, before trimming (pare calibrate without the file).")
    var calibrate = false

    @Option(help: ArgumentHelp("Calibration token ids for --calibrate (as pare calibrate --tokens).", valueName: "file"))
    var tokens: String?

    @Option(name: .customLong("seq-len"), help: ArgumentHelp("With --calibrate: cut sequences into windows of T tokens.", valueName: "T"), transform: Parse.count)
    var seqLen: Int?

    @Option(help: ArgumentHelp("With --calibrate: use the first N windows.", valueName: "N"), transform: Parse.count)
    var samples: Int?

    @Option(help: ArgumentHelp("With --calibrate: threads for the forward pass (default: every core).", valueName: "N"), transform: Parse.count)
    var threads: Int?

    @Option(help: ArgumentHelp("Selection criteria, comma-separated: magnitude|activation (widths and experts), frequency (experts), bi|last (--drop-layers auto:N). Default: activation and bi with statistics, magnitude without.", valueName: "list"),
            transform: Parse.criteria)
    var score: TrimCriteria?

    func validate() throws {
        if stats != nil && calibrate { throw ValidationError("give either --stats or --calibrate, not both") }
        if calibrate && tokens == nil { throw ValidationError("--calibrate needs --tokens FILE: the calibration token ids") }
        if !calibrate && (tokens != nil || seqLen != nil || samples != nil || threads != nil) {
            throw ValidationError("--tokens, --seq-len, --samples and --threads are read by --calibrate; add --calibrate")
        }
    }

    /// The statistics: read and matched to the model, or collected now; nil for neither.
    func statistics(for model: ModelFolder, graph: ModelGraph, quiet: Bool) throws -> CalibrationStatistics? {
        if let stats {
            let statistics = try CalibrationStatistics.load(path: stats)
            try statistics.check(model: model)
            return statistics
        }
        guard calibrate, let tokens else { return nil }
        return try collect(on: tokens, model: model, graph: graph, quiet: quiet)
    }

    private func collect(on tokens: String, model: ModelFolder, graph: ModelGraph, quiet: Bool) throws -> CalibrationStatistics {
        let plan = try ForwardPlan(graph: graph)
        let batch = try TokenOptions.batch(tokens: tokens, seqLen: seqLen, samples: samples, for: plan)
        let cores = threads ?? FloatConversion.activeCores
        BLAS.threads = cores
        let metadata = try StatisticsFile.metadata(model: model, batch: batch, source: tokens)
        let bar = ProgressBar(label: "calibrating", quiet: quiet)
        Interruption.install()
        let pass = try CalibrationPass(plan: plan, batch: batch, threads: cores, source: tokens)
        let result: CalibrationPass.Result
        do {
            result = try pass.run { fraction in
                bar.update(fraction: fraction, units: batch.tokenCount, unit: "tokens")
                return !Interruption.isRequested
            }
        } catch {
            bar.finish()
            guard case .interrupted = error else { throw error }
            StandardStream.standardError.write("pare: interrupted; nothing was written\n")
            throw ExitCode(Interruption.exitStatus)
        }
        bar.finish()
        return CalibrationStatistics(
            source: tokens, fileSHA256: nil, metadata: metadata,
            values: Dictionary(uniqueKeysWithValues: result.statistics.map { ($0.name, $0.values) }))
    }
}
