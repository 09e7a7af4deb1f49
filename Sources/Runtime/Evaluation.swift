import Dispatch
import Foundation
import SafeTensors
import Tensors

/// What `pare eval` measures: perplexity of a causal LM (or the pooled embeddings of an
/// encoder), and with a reference model, how far the model's outputs moved from it.
///
/// The model and the reference run side by side, layer-major: the reference is advanced
/// to the layer the model's layer came from, so per-layer hidden states are compared with
/// two layers' weights and two sets of hidden states in memory, never a model's worth.
public final class Evaluation {
    public struct Options: Sendable {
        public var threads: Int
        /// Reference layer of each model layer (from pare-trim.json); nil compares none, or
        /// layer by layer when the depths are equal.
        public var layerMap: [Int]?
        /// The reference's hidden channels the model kept (`--hidden` trims), in order.
        public var hiddenKeep: [Int]?
        /// Write logits and hidden states here (aside, then renamed).
        public var savePath: String?
        /// NAEE's dynamic skipping thresholds β per layer (see `Executor.expertSkip`).
        public var expertSkip: [Float?]?
        public var source: String

        public init(threads: Int, layerMap: [Int]? = nil, hiddenKeep: [Int]? = nil, savePath: String? = nil, source: String) {
            self.threads = threads
            self.layerMap = layerMap
            self.hiddenKeep = hiddenKeep
            self.savePath = savePath
            self.source = source
        }
    }

    public struct LayerCosine: Sendable, Equatable {
        public var layer: Int
        public var referenceLayer: Int
        public var cosine: Double
    }

    public struct Result: Sendable {
        public var sequences = 0
        public var tokens = 0
        public var predictedTokens = 0
        public var seconds = 0.0
        public var nllMean: Double?
        public var perplexity: Double?
        public var klMean: Double?
        public var klP95: Double?
        public var top1Agreement: Double?
        public var cosineMean: Double?
        public var layers: [LayerCosine] = []
        /// Expert evaluations the model's routing asked for, and how many were skipped.
        public var expertEvaluations = 0
        public var expertEvaluationsSkipped = 0
        /// Bytes the executors held at the end (weights, activations, workspace).
        public var residentBytes = 0
        public var tokensPerSecond: Double { seconds > 0 ? Double(tokens) / seconds : 0 }
    }

    public let model: ForwardPlan
    public let reference: ForwardPlan?
    public let batch: TokenBatch
    public let options: Options

    public init(model: ForwardPlan, reference: ForwardPlan?, batch: TokenBatch, options: Options) throws(RuntimeError) {
        self.model = model
        self.reference = reference
        self.batch = batch
        self.options = options
        guard batch.tokenCount > 0 else { throw .tokensInvalid(path: options.source, problem: "holds no tokens") }
        if let reference {
            guard reference.family == model.family else {
                throw .referenceMismatch(problem: "it is a \(reference.family) model and the model is \(model.family)")
            }
            guard reference.vocab == model.vocab else {
                throw .referenceMismatch(problem: "its vocabulary has \(reference.vocab) tokens and the model's \(model.vocab)")
            }
            if let keep = options.hiddenKeep {
                guard keep.count == model.hidden, keep.allSatisfy({ (0..<reference.hidden).contains($0) }) else {
                    throw .referenceMismatch(problem: "pare-trim.json keeps \(keep.count) hidden channels of the reference's \(reference.hidden), and the model has \(model.hidden)")
                }
            } else if reference.hidden != model.hidden {
                throw .referenceMismatch(problem: "its hidden size is \(reference.hidden) and the model's \(model.hidden), and no pare-trim.json says which channels were kept")
            }
            if let map = options.layerMap {
                guard map.count == model.layers, map.allSatisfy({ (0..<reference.layers).contains($0) }), map == map.sorted() else {
                    throw .referenceMismatch(problem: "pare-trim.json maps \(map.count) layers into the reference's \(reference.layers), and the model has \(model.layers)")
                }
            }
        }
    }

    /// Runs everything; `progress` gets the fraction done, and returns false to stop the
    /// run (between layers, or between slices of logits) with `.interrupted`.
    public func run(progress: (Double) -> Bool = { _ in true }) throws(RuntimeError) -> Result {
        let start = Date()
        var result = Result()
        result.sequences = batch.sequenceCount
        result.tokens = batch.tokenCount
        let a = try Executor(plan: model, batch: batch, threads: options.threads, source: options.source)
        a.expertSkip = options.expertSkip
        var b: Executor?
        if let reference { b = try Executor(plan: reference, batch: batch, threads: options.threads, source: options.source) }
        let totalLayers = Double(model.layers + (reference?.layers ?? 0) + 1)
        var done = 0.0
        try a.embed()
        try b?.embed()
        let map = options.layerMap ?? ((reference?.layers == model.layers) ? Array(0..<model.layers) : nil)
        while !a.isFinished {
            let i = a.nextLayer
            if let b, let map {
                while b.nextLayer <= map[i] { try b.runLayer(); done += 1; try step(progress(done / totalLayers)) }
            }
            try a.runLayer()
            done += 1
            try step(progress(done / totalLayers))
            if let b, let map, b.nextLayer == map[i] + 1 {
                result.layers.append(.init(layer: i, referenceLayer: map[i], cosine: meanCosine(a.hidden.base, b.hidden.base, reference: b.plan)))
            }
        }
        if let b {
            while !b.isFinished { try b.runLayer(); done += 1; try step(progress(done / totalLayers)) }
            try b.finish()
        }
        try a.finish()

        var writer: SaveFile?
        if let p = options.savePath { writer = try SaveFile(path: p, batch: batch, plan: model) }
        do {
            if model.causal {
                try scoreTokens(a, b, into: &result, writer: writer, progress: progress)
            } else {
                try pool(a, b, into: &result, writer: writer)
            }
            try writer?.finish()
        } catch {
            writer?.abandon()
            throw error
        }
        _ = progress(1)
        result.seconds = Date().timeIntervalSince(start)
        result.residentBytes = a.residentBytes + (b?.residentBytes ?? 0)
        result.expertEvaluations = a.expertEvaluations
        result.expertEvaluationsSkipped = a.expertEvaluationsSkipped
        return result
    }

    // MARK: Comparisons

    /// Mean over tokens of cos(model row, reference row at the kept channels).
    private func meanCosine(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, reference: ForwardPlan) -> Double {
        let h = model.hidden, rh = reference.hidden
        var total = 0.0
        for t in 0..<batch.tokenCount {
            total += cosine(x + t * h, y + t * rh, width: h)
        }
        return total / Double(batch.tokenCount)
    }

    private func cosine(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, width: Int) -> Double {
        var dot = 0.0, xx = 0.0, yy = 0.0
        for j in 0..<width {
            let yv = Double(options.hiddenKeep.map { y[$0[j]] } ?? y[j]), xv = Double(x[j])
            dot += xv * yv
            xx += xv * xv
            yy += yv * yv
        }
        let d = (xx * yy).squareRoot()
        return d > 0 ? dot / d : 0
    }

    /// Next-token NLL of the model; with a reference, KL(reference ‖ model), top-1
    /// agreement and final-hidden cosine. Logits are made a slice of rows at a time.
    private func step(_ goOn: Bool) throws(RuntimeError) {
        if !goOn { throw .interrupted }
    }

    private func scoreTokens(
        _ a: Executor, _ b: Executor?, into result: inout Result, writer: SaveFile?, progress: (Double) -> Bool
    ) throws(RuntimeError) {
        let v = model.vocab
        let chunk = max(1, min(256, (64 << 20) / max(1, v * 4)))
        let la = FloatBuffer(capacity: chunk * v), lb = FloatBuffer(capacity: b == nil ? 16 : chunk * v)
        var nll = 0.0, predicted = 0
        var kls: [Double] = []
        var agree = 0
        var cosines = 0.0
        try writer?.writeHidden(a.final.base, width: model.hidden)
        for s in 0..<batch.sequenceCount {
            let r = batch.range(of: s)
            var row = r.lowerBound
            while row < r.upperBound {
                let fractionDone = (Double(model.layers + (reference?.layers ?? 0)) + Double(row) / Double(batch.tokenCount))
                    / Double(model.layers + (reference?.layers ?? 0) + 1)
                try step(progress(fractionDone))
                let rows = row..<min(r.upperBound, row + chunk)
                let pa = la.reserve(rows.count * v)
                try a.logits(rows: rows, into: pa)
                let pb = b == nil ? nil : lb.reserve(rows.count * v)
                if let b, let pb { try b.logits(rows: rows, into: pb) }
                // Rows are independent: scored in parallel, summed in row order (the same
                // result whatever the thread count).
                let count = rows.count
                var rowNLL = [Double](repeating: 0, count: count), rowKL = rowNLL
                var rowAgree = [Bool](repeating: false, count: count)
                let first = rows.lowerBound, end = r.upperBound
                let hasReference = b != nil
                let workers = max(1, min(options.threads, count))
                let ids = batch.ids
                nonisolated(unsafe) let (xa, xb) = (pa, pb)
                rowNLL.withUnsafeMutableBufferPointer { nllOut in
                    rowKL.withUnsafeMutableBufferPointer { klOut in
                        rowAgree.withUnsafeMutableBufferPointer { agreeOut in
                            nonisolated(unsafe) let (nllOut, klOut, agreeOut) = (nllOut, klOut, agreeOut)
                            WorkerPool.shared.perform(workers) { worker in
                                var i = worker
                                while i < count {
                                    let t = first + i
                                    let x = xa + i * v
                                    let lseA = Self.logSumExp(x, v)
                                    if t + 1 < end { nllOut[i] = lseA - Double(x[Int(ids[t + 1])]) }
                                    if hasReference, let xb {
                                        let y = xb + i * v
                                        let lseB = Self.logSumExp(y, v)
                                        var kl = 0.0
                                        var bestA = 0, bestB = 0
                                        for j in 0..<v {
                                            let logP = Double(y[j]) - lseB
                                            let logQ = Double(x[j]) - lseA
                                            kl += exp(logP) * (logP - logQ)
                                            if x[j] > x[bestA] { bestA = j }
                                            if y[j] > y[bestB] { bestB = j }
                                        }
                                        klOut[i] = max(0, kl)
                                        agreeOut[i] = bestA == bestB
                                    }
                                    i += workers
                                }
                            }
                        }
                    }
                }
                for i in 0..<count {
                    let t = first + i
                    if t + 1 < end {
                        nll += rowNLL[i]
                        predicted += 1
                    }
                    if let b {
                        kls.append(rowKL[i])
                        if rowAgree[i] { agree += 1 }
                        cosines += cosine(a.final.base + t * model.hidden, b.final.base + t * b.plan.hidden, width: model.hidden)
                    }
                }
                try writer?.writeLogits(pa, rows: rows.count)
                row = rows.upperBound
            }
            try writer?.padLogits(sequence: s)
        }
        result.predictedTokens = predicted
        if predicted > 0 {
            result.nllMean = nll / Double(predicted)
            result.perplexity = exp(nll / Double(predicted))
        }
        if b != nil {
            let n = Double(batch.tokenCount)
            result.klMean = kls.reduce(0, +) / n
            result.klP95 = Self.quantile(kls, 0.95)
            result.top1Agreement = Double(agree) / n
            result.cosineMean = cosines / n
        }
    }

    /// Mean-pooled final hidden states per sequence; with a reference, their mean cosine.
    private func pool(_ a: Executor, _ b: Executor?, into result: inout Result, writer: SaveFile?) throws(RuntimeError) {
        let h = model.hidden
        try writer?.writeHidden(a.final.base, width: h)
        let pa = Self.meanPool(a.final.base, batch: batch, width: h)
        try writer?.writePooled(pa)
        if let b {
            let pb = Self.meanPool(b.final.base, batch: batch, width: b.plan.hidden)
            var total = 0.0
            for s in 0..<batch.sequenceCount {
                total += pa.withUnsafeBufferPointer { x in
                    pb.withUnsafeBufferPointer { y in cosine(x.baseAddress! + s * h, y.baseAddress! + s * b.plan.hidden, width: h) }
                }
            }
            result.cosineMean = total / Double(batch.sequenceCount)
        }
    }

    /// `[sequences, width]`: the mean of each sequence's rows.
    public static func meanPool(_ x: UnsafePointer<Float>, batch: TokenBatch, width: Int) -> [Float] {
        var out = [Float](repeating: 0, count: batch.sequenceCount * width)
        for s in 0..<batch.sequenceCount {
            let r = batch.range(of: s)
            var sum = [Double](repeating: 0, count: width)
            for t in r { for j in 0..<width { sum[j] += Double(x[t * width + j]) } }
            for j in 0..<width { out[s * width + j] = Float(sum[j] / Double(max(1, r.count))) }
        }
        return out
    }

    /// log Σ exp(x): f32 exponentials (what dominates the time over a large vocabulary),
    /// accumulated in f64.
    static func logSumExp(_ x: UnsafePointer<Float>, _ n: Int) -> Double {
        var m = -Float.infinity
        for j in 0..<n { m = max(m, x[j]) }
        var sum = 0.0
        for j in 0..<n { sum += Double(expf(x[j] - m)) }
        return Double(m) + log(sum)
    }

    /// The q-quantile with linear interpolation between order statistics (torch.quantile's default).
    public static func quantile(_ values: [Double], _ q: Double) -> Double? {
        guard !values.isEmpty else { return nil }
        let sorted = values.sorted()
        let position = q * Double(sorted.count - 1)
        let lower = Int(position.rounded(.down)), upper = min(sorted.count - 1, lower + 1)
        return sorted[lower] + (sorted[upper] - sorted[lower]) * (position - Double(lower))
    }
}

/// `--save`: F32 `hidden_states [N, T, H]`, then `logits [N, T, V]` (causal) or
/// `pooled [N, H]` (encoders), and `lengths [N]`; windows shorter than the longest are
/// padded with zeros. Written aside and renamed when complete.
final class SaveFile {
    let file: StagedTensorFile
    let batch: TokenBatch
    let longest: Int
    let vocab: Int
    private let zeroBlock = FloatBuffer()

    init(path: String, batch: TokenBatch, plan: ForwardPlan) throws(RuntimeError) {
        self.batch = batch
        longest = batch.longest
        vocab = plan.vocab
        let n = UInt64(batch.sequenceCount), t = UInt64(longest)
        var entries = [
            SafeTensorsWriter.Entry(name: "lengths", dtype: .i64, shape: [n]),
            SafeTensorsWriter.Entry(name: "hidden_states", dtype: .f32, shape: [n, t, UInt64(plan.hidden)]),
        ]
        if plan.causal {
            entries.append(.init(name: "logits", dtype: .f32, shape: [n, t, UInt64(plan.vocab)]))
        } else {
            entries.append(.init(name: "pooled", dtype: .f32, shape: [n, UInt64(plan.hidden)]))
        }
        file = try StagedTensorFile(path: path, entries: entries, metadata: [("format", "pt"), ("producer", "pare eval")])
        let lengths = (0..<batch.sequenceCount).map { Int64(batch.range(of: $0).count).littleEndian }
        try write(lengths, bytes: lengths.count * 8)
    }

    private func write(_ p: UnsafeRawPointer, bytes: Int) throws(RuntimeError) {
        try file.write(UnsafeRawBufferPointer(start: p, count: bytes))
    }

    private func zeros(_ count: Int) throws(RuntimeError) {
        let blockCount = 1 << 16
        if zeroBlock.count == 0 { zeroBlock.zero(blockCount) }
        var left = count
        while left > 0 {
            let n = min(left, blockCount)
            try write(zeroBlock.base, bytes: n * 4)
            left -= n
        }
    }

    func writeHidden(_ x: UnsafePointer<Float>, width: Int) throws(RuntimeError) {
        for s in 0..<batch.sequenceCount {
            let r = batch.range(of: s)
            try write(x + r.lowerBound * width, bytes: r.count * width * 4)
            try zeros((longest - r.count) * width)
        }
    }

    func writeLogits(_ x: UnsafePointer<Float>, rows: Int) throws(RuntimeError) {
        try write(x, bytes: rows * vocab * 4)
    }

    func padLogits(sequence s: Int) throws(RuntimeError) {
        try zeros((longest - batch.range(of: s).count) * vocab)
    }

    func writePooled(_ pooled: [Float]) throws(RuntimeError) {
        let copy = FloatBuffer(capacity: pooled.count)
        copy.reserve(pooled.count).update(from: pooled, count: pooled.count)
        try write(copy.base, bytes: pooled.count * 4)
    }

    /// Removes the unfinished file (a failed or interrupted run).
    func abandon() { file.abandon() }

    func finish() throws(RuntimeError) { try file.finish() }
}
