import Foundation
import Runtime

/// One calibration pass: the model runs layer-major over a batch of calibration windows
/// while a `StatisticsCollector` watches, so memory is one layer's weights plus the
/// batch's activations, as for `pare eval`.
public final class CalibrationPass {
    public struct Result: Sendable {
        /// The statistics, sorted by name.
        public var statistics: [(name: String, values: [Float])] = []
        public var sequences = 0
        public var tokens = 0
        public var seconds = 0.0
        /// Bytes the executor held at the end (weights, activations, workspace).
        public var residentBytes = 0
        public var tokensPerSecond: Double { seconds > 0 ? Double(tokens) / seconds : 0 }
    }

    public let plan: ForwardPlan
    public let batch: TokenBatch
    public let threads: Int
    /// The token file, for messages.
    public let source: String
    /// Observers that run alongside the statistics (an expert-subset search).
    public let observers: [ExecutionObserver]

    public init(plan: ForwardPlan, batch: TokenBatch, threads: Int, source: String, observers: [ExecutionObserver] = []) throws(RuntimeError) {
        guard batch.tokenCount > 0 else { throw .tokensInvalid(path: source, problem: "holds no tokens") }
        self.plan = plan
        self.batch = batch
        self.threads = threads
        self.source = source
        self.observers = observers
    }

    /// Runs every layer; `progress` gets the fraction done and returns false to stop (between
    /// layers) with `.interrupted`.
    public func run(progress: (Double) -> Bool = { _ in true }) throws(RuntimeError) -> Result {
        let start = Date()
        let collector = StatisticsCollector(plan: plan, batch: batch)
        let executor = try Executor(plan: plan, batch: batch, threads: threads, source: source)
        // The executor holds its observer weakly: the group lives until the pass ends.
        let group = ObserverGroup([collector] + observers)
        executor.observer = group
        defer { withExtendedLifetime(group) {} }
        try executor.embed()
        while !executor.isFinished {
            try executor.runLayer()
            if !progress(Double(executor.nextLayer) / Double(plan.layers + 1)) { throw .interrupted }
        }
        try executor.finish()
        var result = Result()
        result.statistics = collector.results()
        result.sequences = batch.sequenceCount
        result.tokens = batch.tokenCount
        result.residentBytes = executor.residentBytes
        result.seconds = Date().timeIntervalSince(start)
        _ = progress(1)
        return result
    }
}
