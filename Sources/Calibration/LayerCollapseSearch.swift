import Runtime

/// LaCo's greedy layer collapse ("LaCo: Large Language Model Pruning via Layer Collapse"):
/// walking down from the top of the model, merge `span` consecutive layers into their
/// first, θ + Σ(θ_k − θ), and keep the merge when the final hidden states still match the
/// original's on the calibration tokens (mean over sequences of the cosine of the whole
/// sequence's states, as the authors' code measures it, at least `threshold`).
///
/// Every trial runs on the executor with the merged weights computed as a trim writes
/// them (rounded to the checkpoint's dtype), from the original's hidden states at the
/// merge's first layer: the layers below it are never re-run. A merge that takes in an
/// already merged layer becomes one run of the checkpoint's layers (pare writes flat runs),
/// and that is what is measured.
public final class LayerCollapseSearch {
    public struct Options: Sendable {
        /// Layers merged at a time (the base and span − 1 above it).
        public var span: Int
        /// Layers to step down after an accepted merge (1 after a rejected one).
        public var interval: Int
        /// The least mean cosine of the final hidden states that keeps a merge.
        public var threshold: Double
        /// Stop once the model has this many layers.
        public var targetLayers: Int
        public var mergeNorms: Bool

        /// The LaCo authors' published Llama2-13B settings: 7 layers at a time (the base
        /// and 6 above), a step of 1, a threshold of 0.45, from the top layer down.
        public init(targetLayers: Int, span: Int = 7, interval: Int = 1, threshold: Double = 0.45, mergeNorms: Bool = false) {
            self.targetLayers = targetLayers
            self.span = span
            self.interval = interval
            self.threshold = threshold
            self.mergeNorms = mergeNorms
        }
    }

    public struct Trial: Sendable, Equatable {
        /// The checkpoint layers the trial merged into the first.
        public var run: [Int]
        public var similarity: Double
        public var accepted: Bool
    }

    public struct Result: Sendable {
        /// Accepted runs of checkpoint layers, ascending.
        public var merges: [[Int]]
        public var trials: [Trial]
        public var layers: Int
    }

    public let plan: ForwardPlan
    public let batch: TokenBatch
    public let threads: Int
    public let options: Options
    public let source: String

    public init(plan: ForwardPlan, batch: TokenBatch, threads: Int, options: Options, source: String) throws(RuntimeError) {
        guard options.span >= 2 else { throw .unsupported(what: "a merge span of \(options.span): LaCo merges two or more layers") }
        guard options.interval >= 1 else { throw .unsupported(what: "a merge interval of \(options.interval); it steps down at least one layer") }
        guard (1..<plan.layers).contains(options.targetLayers) else {
            throw .unsupported(what: "a target of \(options.targetLayers) layers for a model of \(plan.layers); ask for 1 to \(plan.layers - 1)")
        }
        self.plan = plan
        self.batch = batch
        self.threads = threads
        self.options = options
        self.source = source
    }

    /// Runs the search; `progress` gets (trials so far, current layer) and returns false to stop.
    public func run(progress: (Int, Int) -> Bool = { _, _ in true }) throws(RuntimeError) -> Result {
        let n = batch.tokenCount, h = plan.hidden
        // The original's input to every layer, and its final hidden states.
        let original = try Executor(plan: plan, batch: batch, threads: threads, source: source)
        try original.embed()
        var inputs: [[Float]] = []
        while !original.isFinished {
            inputs.append(Array(UnsafeBufferPointer(start: original.hidden.base, count: n * h)))
            try original.runLayer()
        }
        try original.finish()
        let reference = Array(UnsafeBufferPointer(start: original.final.base, count: n * h))

        var merges: [[Int]] = []
        var current = plan
        var trials: [Trial] = []
        // The first window ends just below the final layer (as the authors' code starts at
        // the top layer minus the span), also on models shallower than the span.
        var lay = max(0, current.layers - 2 - min(options.span - 1, current.layers - options.targetLayers))
        while lay >= 0, current.layers > options.targetLayers {
            let count = min(options.span - 1, current.layers - lay - 1, current.layers - options.targetLayers)
            guard count > 0 else { lay -= 1; continue }
            // Layers at and below `lay` are the checkpoint's own (every merge so far is above).
            let run = Array(current.layerRuns[lay...(lay + count)].joined())
            let candidate = merges.filter { !Set($0).isSubset(of: Set(run)) } + [run]
            let trialPlan = plan.collapsing(candidate.sorted { $0[0] < $1[0] }, mergeNorms: options.mergeNorms)
            let similarity = try finalSimilarity(trialPlan, from: lay, input: inputs[run[0]], reference: reference)
            let accepted = similarity >= options.threshold
            trials.append(Trial(run: run, similarity: similarity, accepted: accepted))
            if accepted {
                merges = candidate.sorted { $0[0] < $1[0] }
                current = trialPlan
                lay -= options.interval
            } else {
                lay -= 1
            }
            if !progress(trials.count, max(lay, 0)) { throw .interrupted }
        }
        return Result(merges: merges, trials: trials, layers: current.layers)
    }

    /// Mean over sequences of the cosine between the trial's and the original's final
    /// hidden states, each sequence's states taken as one vector.
    private func finalSimilarity(_ trial: ForwardPlan, from layer: Int, input: [Float], reference: [Float]) throws(RuntimeError) -> Double {
        let executor = try Executor(plan: trial, batch: batch, threads: threads, source: source)
        input.withUnsafeBufferPointer { executor.start(at: layer, hidden: $0.baseAddress!) }
        while !executor.isFinished { try executor.runLayer() }
        try executor.finish()
        let h = plan.hidden
        let y = executor.final.base
        var total = 0.0
        for s in 0..<batch.sequenceCount {
            var dot = 0.0, aa = 0.0, bb = 0.0
            for i in batch.range(of: s).lowerBound * h..<batch.range(of: s).upperBound * h {
                let a = Double(y[i]), b = Double(reference[i])
                dot += a * b
                aa += a * a
                bb += b * b
            }
            total += aa > 0 && bb > 0 ? dot / (aa * bb).squareRoot() : 0
        }
        return total / Double(batch.sequenceCount)
    }
}
