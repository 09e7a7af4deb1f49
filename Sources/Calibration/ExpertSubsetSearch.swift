import Foundation
import Runtime

/// NAEE's expert-subset search ("Not All Experts are Equal"): per MoE layer, the `keep`
/// experts whose pruned layer reproduces the layer's output best on the calibration tokens.
///
/// For a kept set S, each token is re-routed as the pruned model would route it: the
/// router's softmax over S's logits, its top-k among S, and the family's renormalisation.
/// The loss is Σ_t ‖Z_t − Z′_t‖² between the original mixture Z and the re-routed Z′.
/// Removing at most E − keep experts moves a token's choice only down its own ranking, so
/// every Z′ is a mix of the token's first k + (E − keep) experts: the executor runs those
/// (`.expertCandidates`), and the search keeps their Gram matrix per token, which makes
/// each subset's loss O(tokens · (k + E − keep)²) with no pass over the hidden size.
///
/// Exhaustive when C(E, keep) ≤ `exhaustiveLimit` (Mixtral's C(8, 6) = 28), otherwise
/// greedy removal: the expert whose removal costs least goes, one at a time.
public final class ExpertSubsetSearch: ExecutionObserver {
    public struct LayerResult: Sendable, Equatable {
        public var layer: Int
        /// Kept experts, ascending.
        public var kept: [Int]
        /// Σ_t ‖Z_t − Z′_t‖² of the kept set.
        public var loss: Double
        /// Σ_t ‖Z_t‖², for the relative loss.
        public var outputSquares: Double
        public var exhaustive: Bool
        /// Subsets (exhaustive) or removals (greedy) whose loss was computed.
        public var evaluated: Int
        /// Losses of the subsets tried, lowest first (all of them for up to 1,000 subsets,
        /// else the best 20), for the record.
        public var ranking: [(kept: [Int], loss: Double)]

        public static func == (a: LayerResult, b: LayerResult) -> Bool {
            a.layer == b.layer && a.kept == b.kept && a.loss == b.loss && a.evaluated == b.evaluated
        }
    }

    public static let exhaustiveLimit = 10_000

    public let plan: ForwardPlan
    public let keep: Int
    public private(set) var results: [LayerResult] = []
    public var points: ObservationPoints { [.router, .expertOutputs, .expertCandidates, .layerOutput] }
    public var candidateExperts: Int { plan.experts - keep }

    private let width: Int
    /// This layer's state: each token's first `width` experts by routing weight, their
    /// outputs `[tokens, width, hidden]`, and exp(logit − max) of every expert.
    private var layer: Int?
    private var ranked: [Int32] = []
    private var outputs: [Float] = []
    private var exps: [Double] = []

    public init(plan: ForwardPlan, keep: Int) {
        self.plan = plan
        self.keep = keep
        width = min(plan.experts, plan.expertsPerToken + plan.experts - keep)
    }

    public func observe(_ observation: Observation) {
        switch observation {
        case let .router(l, logits, _, _, _):
            start(layer: l, logits: logits)
        case let .expertOutput(l, expert, tokens, values), let .expertCandidate(l, expert, tokens, values):
            guard l == layer else { return }
            store(expert: expert, tokens: tokens, values: values)
        case let .layerOutput(l, _):
            guard l == layer else { return }
            results.append(search())
            layer = nil
            outputs = []
        default:
            break
        }
    }

    private func start(layer l: Int, logits: Matrix) {
        let n = logits.rows, e = plan.experts, h = plan.hidden
        layer = l
        ranked = [Int32](repeating: 0, count: n * width)
        exps = [Double](repeating: 0, count: n * e)
        outputs = [Float](repeating: 0, count: n * width * h)
        var probabilities = [Float](repeating: 0, count: e)
        var order = [Int](repeating: 0, count: e)
        for t in 0..<n {
            let row = logits.row(t)
            Executor.rank(row.baseAddress!, experts: e, probabilities: &probabilities, order: &order)
            for r in 0..<width { ranked[t * width + r] = Int32(order[r]) }
            let m = row.max() ?? 0
            for j in 0..<e { exps[t * e + j] = Foundation.exp(Double(row[j] - m)) }
        }
    }

    private func store(expert: Int, tokens: [Int32], values: Matrix) {
        let h = plan.hidden
        outputs.withUnsafeMutableBufferPointer { out in
            for (i, token) in tokens.enumerated() {
                let t = Int(token)
                guard let r = (0..<width).first(where: { ranked[t * width + $0] == Int32(expert) }) else { continue }
                let src = values.row(i)
                for c in 0..<h { out[(t * width + r) * h + c] = src[c] }
            }
        }
    }

    /// Per token, the Gram matrix of its candidate outputs, then the subsets.
    private func search() -> LayerResult {
        let e = plan.experts, h = plan.hidden, w = width
        let n = ranked.count / w
        var gram = [Double](repeating: 0, count: n * w * w)
        outputs.withUnsafeBufferPointer { out in
            for t in 0..<n {
                for a in 0..<w {
                    for b in a..<w {
                        var dot = 0.0
                        let x = (t * w + a) * h, y = (t * w + b) * h
                        for c in 0..<h { dot += Double(out[x + c]) * Double(out[y + c]) }
                        gram[(t * w + a) * w + b] = dot
                        gram[(t * w + b) * w + a] = dot
                    }
                }
            }
        }
        let all = [Bool](repeating: true, count: e)
        // The original mixture's coefficients: the top-k, renormalised or not.
        var original = [Double](repeating: 0, count: n * w)
        var outputSquares = 0.0
        for t in 0..<n {
            let c = coefficients(t, kept: all)
            for r in 0..<w { original[t * w + r] = c[r] }
            outputSquares += quadratic(t, c, gram)
        }
        func loss(_ kept: [Bool]) -> Double {
            var total = 0.0
            for t in 0..<n {
                var c = coefficients(t, kept: kept)
                for r in 0..<w { c[r] = original[t * w + r] - c[r] }
                total += quadratic(t, c, gram)
            }
            return total
        }
        var tried: [(kept: [Int], loss: Double)] = []
        let subsets = Self.binomial(e, keep)
        if subsets <= Self.exhaustiveLimit {
            var combination = Array(0..<keep)
            while true {
                var mask = [Bool](repeating: false, count: e)
                for i in combination { mask[i] = true }
                tried.append((combination, loss(mask)))
                // Next combination in lexicographic order.
                var i = keep - 1
                while i >= 0, combination[i] == e - keep + i { i -= 1 }
                if i < 0 { break }
                combination[i] += 1
                for j in i + 1..<keep { combination[j] = combination[j - 1] + 1 }
            }
            tried.sort { $0.loss != $1.loss ? $0.loss < $1.loss : $0.kept.lexicographicallyPrecedes($1.kept) }
            let best = tried[0]
            return LayerResult(layer: layer!, kept: best.kept, loss: best.loss, outputSquares: outputSquares, exhaustive: true,
                               evaluated: tried.count, ranking: Array(tried.prefix(tried.count <= 1000 ? tried.count : 20)))
        }
        var mask = all
        var evaluated = 0
        var current = 0.0
        for _ in 0..<(e - keep) {
            var bestExpert = -1, bestLoss = Double.infinity
            for j in 0..<e where mask[j] {
                mask[j] = false
                let l = loss(mask)
                mask[j] = true
                evaluated += 1
                if l < bestLoss { bestLoss = l; bestExpert = j }
            }
            mask[bestExpert] = false
            current = bestLoss
            tried.append(((0..<e).filter { mask[$0] }, bestLoss))
        }
        let kept = (0..<e).filter { mask[$0] }
        return LayerResult(layer: layer!, kept: kept, loss: current, outputSquares: outputSquares, exhaustive: false,
                           evaluated: evaluated, ranking: Array(tried.sorted { $0.loss < $1.loss }.prefix(20)))
    }

    /// Token t's mixing coefficients over its candidates when only `kept` experts exist:
    /// the router's softmax over the kept logits, top-k of them, renormalised if the family
    /// does.
    private func coefficients(_ t: Int, kept: [Bool]) -> [Double] {
        let e = plan.experts, k = plan.expertsPerToken, w = width
        var c = [Double](repeating: 0, count: w)
        var chosen = 0, chosenSum = 0.0, keptSum = 0.0
        for j in 0..<e where kept[j] { keptSum += exps[t * e + j] }
        for r in 0..<w where chosen < k {
            let expert = Int(ranked[t * w + r])
            guard kept[expert] else { continue }
            c[r] = exps[t * e + expert]
            chosenSum += c[r]
            chosen += 1
        }
        let denominator = plan.renormalize ? chosenSum : keptSum
        for r in 0..<w { c[r] /= denominator }
        return c
    }

    private func quadratic(_ t: Int, _ c: [Double], _ gram: [Double]) -> Double {
        let w = width
        var total = 0.0
        for a in 0..<w where c[a] != 0 {
            for b in 0..<w where c[b] != 0 { total += c[a] * c[b] * gram[(t * w + a) * w + b] }
        }
        return total
    }

    static func binomial(_ n: Int, _ k: Int) -> Int {
        var result = 1
        for i in 0..<min(k, n - k) {
            result = result * (n - i) / (i + 1)
            if result > exhaustiveLimit { return result }
        }
        return result
    }
}
