import Dispatch
import Foundation
import ModelGraph
import Tensors

/// Runs a model over a batch of sequences, layer-major: every sequence passes through
/// layer l before layer l + 1 is read.
///
/// Memory is one layer's weights in f32 (one expert's at a time in an MoE layer), plus the
/// batch's hidden states and the attention and MLP workspace; all of it is reused from
/// layer to layer. Matrix products go through OpenBLAS over all of the batch's tokens at
/// once; attention runs per sequence and head, spread over `threads`.
///
/// Drive it with `embed()`, then `runLayer()` until `isFinished`, then `finish()`; the final
/// hidden states are in `final`, and `logits(rows:into:)` applies the head. Two executors
/// can be stepped side by side (a model and its reference).
public final class Executor {
    public let plan: ForwardPlan
    public let batch: TokenBatch
    public let threads: Int
    public weak var observer: ExecutionObserver?

    /// The residual stream `[tokens, hidden]`.
    public let hidden = FloatBuffer()
    /// The final hidden states `[tokens, hidden]`, after the final norm (after `finish()`).
    public let final = FloatBuffer()
    /// The next layer `runLayer()` will run.
    public private(set) var nextLayer = 0
    public var isFinished: Bool { nextLayer == plan.layers }

    private let weights: WeightStore
    // Workspace, reused by every layer.
    private let normed = FloatBuffer(), branch = FloatBuffer()
    private let q = FloatBuffer(), k = FloatBuffer(), v = FloatBuffer(), attention = FloatBuffer(), fused = FloatBuffer()
    private let ffnA = FloatBuffer(), ffnB = FloatBuffer()
    private let gathered = FloatBuffer(), expertOut = FloatBuffer(), routerLogits = FloatBuffer()
    private var scores: [FloatBuffer] = []
    private let cosTable: [Float], sinTable: [Float]
    private var points: ObservationPoints { muted ? [] : observer?.points ?? [] }
    /// Set while computing what the model does not (candidate experts), so observers see
    /// only the real forward pass.
    private var muted = false

    /// NAEE's dynamic skipping, per layer: a token's expert of rank i ≥ 1 is skipped when
    /// its routing weight is below β times the first one's (that weight becomes 0; the
    /// others are not renormalised). nil runs every routed expert.
    public var expertSkip: [Float?]?
    /// Expert evaluations (token, expert) the routing asked for, and how many were skipped.
    public private(set) var expertEvaluations = 0
    public private(set) var expertEvaluationsSkipped = 0

    public init(plan: ForwardPlan, batch: TokenBatch, threads: Int = FloatConversion.activeCores, source: String = "input") throws(RuntimeError) {
        self.plan = plan
        self.batch = batch
        self.threads = max(1, threads)
        weights = WeightStore(plan: plan)
        if let rope = plan.rope {
            (cosTable, sinTable) = rope.tables(positions: max(1, batch.longest))
        } else {
            (cosTable, sinTable) = ([], [])
        }
        for s in 0..<batch.sequenceCount {
            for (t, id) in batch.ids[batch.range(of: s)].enumerated() where id < 0 || Int(id) >= plan.vocab {
                throw .tokenOutOfVocabulary(path: source, sequence: s, position: t, id: Int(id), vocab: plan.vocab)
            }
            if let positions = plan.positions, batch.range(of: s).count > positions {
                throw .sequenceTooLong(path: source, sequence: s, length: batch.range(of: s).count, positions: positions)
            }
        }
        scores = (0..<self.threads).map { _ in FloatBuffer() }
    }

    private var tokens: Int { batch.tokenCount }

    /// Bytes this executor holds: weights, activations and workspace.
    public var residentBytes: Int {
        weights.residentBytes
            + [hidden, final, normed, branch, q, k, v, attention, fused, ffnA, ffnB, gathered, expertOut, routerLogits].reduce(0) { $0 + $1.bytes }
            + scores.reduce(0) { $0 + $1.bytes }
    }

    /// Starts from hidden states `[tokens, hidden]` at the input of layer `layer` (as
    /// another executor of the same model computed them), instead of `embed()`.
    public func start(at layer: Int, hidden states: UnsafePointer<Float>) {
        precondition(layer <= plan.layers, "no such layer")
        hidden.reserve(tokens * plan.hidden).update(from: states, count: tokens * plan.hidden)
        nextLayer = layer
    }

    // MARK: Embedding

    /// Token embeddings (scaled, plus learned positions and token type 0, normalised, as the
    /// family says) into `hidden`.
    public func embed() throws(RuntimeError) {
        let h = plan.hidden
        let x = hidden.reserve(tokens * h)
        guard let table = plan.node(.embedding) else { throw .tensorMissing(name: "the token embedding") }
        try gatherRows(table, rows: batch.ids.map(Int.init), into: x)
        if plan.spec.embedding.scaleBySqrtHidden {
            let s = Float(Double(h).squareRoot())
            for i in 0..<tokens * h { x[i] *= s }
        }
        if case .learned = plan.spec.positions, let table = plan.node(.positionEmbedding) {
            let rows = (0..<batch.sequenceCount).flatMap { s in (0..<batch.range(of: s).count) }
            let p = normed.reserve(tokens * h)
            try gatherRows(table, rows: rows, into: p)
            for i in 0..<tokens * h { x[i] += p[i] }
        }
        if let table = plan.node(.tokenTypeEmbedding) {
            let p = normed.reserve(tokens * h)
            try gatherRows(table, rows: [Int](repeating: 0, count: tokens), into: p)
            for i in 0..<tokens * h { x[i] += p[i] }
        }
        if let norm = plan.spec.embedding.norm {
            let w = try weights.load(norm, layer: nil, slot: "embedding.norm")
            normalize(x, into: x, rows: tokens, w)
        }
        nextLayer = 0
    }

    /// Copies rows of an embedding table, cast to f32, without casting the whole table.
    private func gatherRows(_ node: ModelGraph.Node, rows: [Int], into out: UnsafeMutablePointer<Float>) throws(RuntimeError) {
        let info = node.source.info
        guard info.dtype.isCastable else { throw .tensorDType(name: info.name, dtype: info.dtype.rawValue) }
        let width = Int(info.shape.last ?? 0), height = Int(info.shape.first ?? 0)
        let elementBytes = info.dtype.bitWidth / 8
        do {
            try plan.graph.model.shards[node.source.shard].withBytes(of: info) { raw in
                guard let base = raw.baseAddress else { return }
                for (i, r) in rows.enumerated() where r < height {
                    FloatConversion.convert(count: width, from: info.dtype, base + r * width * elementBytes, to: .f32, out + i * width)
                }
            }
        } catch {
            throw .tensorUnreadable(name: info.name, problem: error.description)
        }
    }

    // MARK: Layers

    /// Runs `nextLayer` over every sequence of the batch.
    public func runLayer() throws(RuntimeError) {
        precondition(!isFinished, "every layer has run")
        let l = nextLayer
        let h = plan.hidden, n = tokens
        let x = hidden.base
        if points.contains(.layerInput) { observer?.observe(.layerInput(layer: l, hidden: Matrix(x, rows: n, columns: h))) }
        // The kernel reads the next layer from disk while this one computes.
        let next = l + 1 < plan.layers ? plan.layerRuns[l + 1] : []
        for node in next.flatMap({ plan.graph.nodesByLayer[$0] ?? [] }) {
            plan.graph.model.shards[node.source.shard].prefetch(node.source.info, limit: Int(node.source.info.byteCount))
        }

        try residual(plan.spec.attentionBranch, layer: l, slot: "attention") { input, out throws(RuntimeError) in
            try attend(input, layer: l, into: out)
        }
        try residual(plan.spec.mlpBranch, layer: l, slot: "mlp") { input, out throws(RuntimeError) in
            if plan.isMoE(layer: l) {
                try moe(input, layer: l, into: out)
            } else {
                try mlp(input, layer: l, roles: .dense, expert: nil, rows: n, tokens: nil, into: out)
            }
        }
        if points.contains(.layerOutput) { observer?.observe(.layerOutput(layer: l, hidden: Matrix(hidden.base, rows: n, columns: h))) }
        nextLayer += 1
    }

    /// `x = norm_sum(x + norm_out(f(norm_in(x))))`.
    private func residual(
        _ branchSpec: ComputeSpec.Branch, layer: Int, slot: String,
        _ body: (UnsafePointer<Float>, UnsafeMutablePointer<Float>) throws(RuntimeError) -> Void
    ) throws(RuntimeError) {
        let h = plan.hidden, n = tokens
        let x = hidden.base
        var input = UnsafePointer(x)
        if let m = branchSpec.normIn {
            let w = try weights.load(m, layer: layer, slot: "\(slot).norm_in")
            let y = normed.reserve(n * h)
            normalize(x, into: y, rows: n, w)
            input = UnsafePointer(y)
        }
        let out = branch.reserve(n * h)
        try body(input, out)
        if let m = branchSpec.normOut {
            let w = try weights.load(m, layer: layer, slot: "\(slot).norm_out")
            normalize(out, into: out, rows: n, w)
        }
        for i in 0..<n * h { x[i] += out[i] }
        if let m = branchSpec.normSum {
            let w = try weights.load(m, layer: layer, slot: "\(slot).norm_sum")
            normalize(x, into: x, rows: n, w)
        }
    }

    private func normalize(_ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>, rows: Int, width: Int? = nil, stride: Int? = nil, _ w: NormWeights) {
        Normalization.apply(plan.norm, rows: rows, width: width ?? plan.hidden, stride: stride, x, into: y, weight: w.weight, bias: w.bias,
                            epsilon: plan.epsilon, unitOffset: plan.unitOffset)
    }

    /// `y = x · Wᵀ + b` over `rows` rows, showing the input to an observer that wants it.
    private func project(
        _ x: UnsafePointer<Float>, rows: Int, _ w: Weight, bias: Weight?, into y: UnsafeMutablePointer<Float>, tokens: [Int32]? = nil
    ) {
        if points.contains(.linearInputs) {
            observer?.observe(.linearInput(tensor: w.name, tokens: tokens, values: Matrix(x, rows: rows, columns: w.inputs)))
        }
        BLAS.linear(x, rows: rows, inputs: w.inputs, weight: w.values, outputs: w.outputs, transposed: w.transposed, into: y)
        if let bias { addBias(y, rows: rows, width: w.outputs, bias.values) }
    }

    private func addBias(_ y: UnsafeMutablePointer<Float>, rows: Int, width: Int, stride: Int? = nil, _ b: UnsafePointer<Float>) {
        let stride = stride ?? width
        for r in 0..<rows {
            let row = y + r * stride
            for j in 0..<width { row[j] += b[j] }
        }
    }

    // MARK: Attention

    private func attend(_ x: UnsafePointer<Float>, layer l: Int, into out: UnsafeMutablePointer<Float>) throws(RuntimeError) {
        let n = tokens, hd = plan.headDim
        let qWidth = plan.heads * hd, kvWidth = plan.kvHeads * hd
        let qs = q.reserve(n * qWidth), ks = k.reserve(n * kvWidth), vs = v.reserve(n * kvWidth)
        if let fusedWeight = try weights.load(.qkv, layer: l) {
            let width = fusedWeight.outputs
            let y = fused.reserve(n * width)
            project(x, rows: n, fusedWeight, bias: try weights.load(.qkvBias, layer: l), into: y)
            let parts = plan.segments(of: fusedWeight.node) ?? [qWidth, kvWidth, kvWidth]
            guard parts == [qWidth, kvWidth, kvWidth] else {
                throw .unsupported(what: "a fused q|k|v of segments \(parts) (expected \([qWidth, kvWidth, kvWidth]))")
            }
            for t in 0..<n {
                let row = y + t * width
                (qs + t * qWidth).update(from: row, count: qWidth)
                (ks + t * kvWidth).update(from: row + qWidth, count: kvWidth)
                (vs + t * kvWidth).update(from: row + qWidth + kvWidth, count: kvWidth)
            }
        } else {
            project(x, rows: n, try weights.require(.query, layer: l), bias: try weights.load(.queryBias, layer: l), into: qs)
            project(x, rows: n, try weights.require(.key, layer: l), bias: try weights.load(.keyBias, layer: l), into: ks)
            project(x, rows: n, try weights.require(.value, layer: l), bias: try weights.load(.valueBias, layer: l), into: vs)
        }
        if let qk = plan.spec.attention.qkNorm {
            let qn = try weights.load(qk.query, layer: l, slot: "attention.q_norm")
            let kn = try weights.load(qk.key, layer: l, slot: "attention.k_norm")
            switch qk.over {
            case .head:
                normalize(qs, into: qs, rows: n * plan.heads, width: hd, qn)
                normalize(ks, into: ks, rows: n * plan.kvHeads, width: hd, kn)
            case .width:
                normalize(qs, into: qs, rows: n, width: qWidth, qn)
                normalize(ks, into: ks, rows: n, width: kvWidth, kn)
            }
        }
        if let rope = plan.rope {
            cosTable.withUnsafeBufferPointer { c in
                sinTable.withUnsafeBufferPointer { s in
                    for seq in 0..<batch.sequenceCount {
                        let r = batch.range(of: seq)
                        for t in r {
                            rope.apply(qs + t * qWidth, heads: plan.heads, headDim: hd, position: t - r.lowerBound, cos: c.baseAddress!, sin: s.baseAddress!)
                            rope.apply(ks + t * kvWidth, heads: plan.kvHeads, headDim: hd, position: t - r.lowerBound, cos: c.baseAddress!, sin: s.baseAddress!)
                        }
                    }
                }
            }
        }
        let o = attention.reserve(n * qWidth)
        scaledDotProduct(q: qs, k: ks, v: vs, into: o, window: plan.windows[l])
        if points.contains(.headOutputs) {
            observer?.observe(.headOutputs(layer: l, values: Matrix(o, rows: n, columns: qWidth), heads: plan.heads, headDim: hd))
        }
        project(o, rows: n, try weights.require(.output, layer: l), bias: try weights.load(.outputBias, layer: l), into: out)
    }

    /// softmax(q·kᵀ · scale, masked) · v for every sequence and head; query head h reads kv
    /// head h / group. Work is split over `threads`, OpenBLAS single-threaded meanwhile.
    private func scaledDotProduct(
        q: UnsafeMutablePointer<Float>, k: UnsafeMutablePointer<Float>, v: UnsafeMutablePointer<Float>,
        into o: UnsafeMutablePointer<Float>, window: Int?
    ) {
        let hd = plan.headDim, heads = plan.heads, group = plan.heads / plan.kvHeads
        let qWidth = heads * hd, kvWidth = plan.kvHeads * hd
        let items = (0..<batch.sequenceCount).flatMap { s in (0..<heads).map { (s, $0) } }
        let longest = batch.longest
        for s in scores { s.reserve(longest * longest) }
        let workers = min(threads, items.count)
        let saved = BLAS.threads
        if workers > 1 { BLAS.threads = 1 }
        defer { if workers > 1 { BLAS.threads = saved } }
        let causal = plan.causal, scale = plan.scale, cap = plan.attentionSoftcap
        nonisolated(unsafe) let (q, k, v, o) = (q, k, v, o)
        let batch = self.batch
        let scratch = scores.map { $0.base }
        nonisolated(unsafe) let scratchPointers = scratch
        WorkerPool.shared.perform(workers) { worker in
            let p = scratchPointers[worker]
            var item = worker
            while item < items.count {
                defer { item += workers }
                let (s, head) = items[item]
                let r = batch.range(of: s)
                let len = r.count
                guard len > 0 else { continue }
                let kvHead = head / group
                let qh = q + r.lowerBound * qWidth + head * hd
                let kh = k + r.lowerBound * kvWidth + kvHead * hd
                let vh = v + r.lowerBound * kvWidth + kvHead * hd
                BLAS.gemm(m: len, n: len, k: hd, alpha: scale, qh, lda: qWidth, kh, ldb: kvWidth, transB: true, p, ldc: len)
                for i in 0..<len {
                    let row = p + i * len
                    let last = causal ? i : len - 1
                    let first = window.map { max(0, i - $0 + 1) } ?? 0
                    if let cap {
                        for j in first...last { row[j] = cap * tanh(row[j] / cap) }
                    }
                    var m = -Float.infinity
                    for j in first...last { m = max(m, row[j]) }
                    var sum: Float = 0
                    for j in first...last { let e = exp(row[j] - m); row[j] = e; sum += e }
                    let inv = 1 / sum
                    for j in 0..<len { row[j] = (j >= first && j <= last) ? row[j] * inv : 0 }
                }
                BLAS.gemm(m: len, n: hd, k: len, p, lda: len, vh, ldb: kvWidth, transB: false, o + r.lowerBound * qWidth + head * hd, ldc: qWidth)
            }
        }
    }

    // MARK: MLP and experts

    /// Roles of one MLP (a dense one, an expert, or a shared expert).
    struct MLPRoles {
        let gate: Role, up: Role, down: Role, gateUp: Role?
        let gateBias: Role?, upBias: Role?, downBias: Role?
        let slot: String
        static let dense = MLPRoles(gate: .gate, up: .up, down: .down, gateUp: .gateUp, gateBias: .gateBias, upBias: .upBias, downBias: .downBias, slot: "mlp")
        static let expert = MLPRoles(gate: .expertGate, up: .expertUp, down: .expertDown, gateUp: .expertGateUp, gateBias: nil, upBias: nil, downBias: nil, slot: "expert")
        static let shared = MLPRoles(gate: .sharedExpertGate, up: .sharedExpertUp, down: .sharedExpertDown, gateUp: nil, gateBias: nil, upBias: nil, downBias: nil, slot: "shared_expert")
    }

    /// `down(act(gate(x)) · up(x))` (or `down(act(up(x)))` ungated) over `rows` rows.
    private func mlp(
        _ x: UnsafePointer<Float>, layer l: Int, roles: MLPRoles, expert: Int?, rows: Int, tokens: [Int32]?,
        into out: UnsafeMutablePointer<Float>
    ) throws(RuntimeError) {
        let gated = plan.spec.mlp.gated
        var a: UnsafeMutablePointer<Float>
        var width: Int
        if let role = roles.gateUp, let fusedWeight = try weights.load(role, layer: l, expert: expert, slot: roles.slot + ".gate_up") {
            width = fusedWeight.outputs / 2
            let y = fused.reserve(rows * 2 * width)
            project(x, rows: rows, fusedWeight, bias: nil, into: y, tokens: tokens)
            a = ffnA.reserve(rows * width)
            let b = ffnB.reserve(rows * width)
            for r in 0..<rows {
                (a + r * width).update(from: y + r * 2 * width, count: width)
                (b + r * width).update(from: y + r * 2 * width + width, count: width)
            }
            activate(a, times: b, count: rows * width)
        } else {
            let up = try weights.require(roles.up, layer: l, expert: expert, slot: roles.slot + ".up")
            width = up.outputs
            if gated {
                let gate = try weights.require(roles.gate, layer: l, expert: expert, slot: roles.slot + ".gate")
                a = ffnA.reserve(rows * width)
                project(x, rows: rows, gate, bias: try roles.gateBias.flatMap { r throws(RuntimeError) in try weights.load(r, layer: l) }, into: a, tokens: tokens)
                let b = ffnB.reserve(rows * width)
                project(x, rows: rows, up, bias: try roles.upBias.flatMap { r throws(RuntimeError) in try weights.load(r, layer: l) }, into: b, tokens: tokens)
                activate(a, times: b, count: rows * width)
            } else {
                a = ffnA.reserve(rows * width)
                project(x, rows: rows, up, bias: try roles.upBias.flatMap { r throws(RuntimeError) in try weights.load(r, layer: l) }, into: a, tokens: tokens)
                activate(a, times: nil, count: rows * width)
            }
        }
        if points.contains(.ffnActivations) {
            observer?.observe(.ffnActivations(layer: l, expert: expert, shared: roles.slot == "shared_expert", tokens: tokens,
                                              values: Matrix(a, rows: rows, columns: width)))
        }
        let down = try weights.require(roles.down, layer: l, expert: expert, slot: roles.slot + ".down")
        project(a, rows: rows, down, bias: try roles.downBias.flatMap { r throws(RuntimeError) in try weights.load(r, layer: l) }, into: out, tokens: tokens)
    }

    /// The activation (times the up projection when gated), spread over `threads` for large
    /// batches: it is the one elementwise step with a transcendental per value.
    private func activate(_ a: UnsafeMutablePointer<Float>, times b: UnsafeMutablePointer<Float>?, count: Int) {
        let parts = count >= 1 << 16 ? threads : 1
        let slice = (count + parts - 1) / parts
        let activation = plan.activation
        nonisolated(unsafe) let (a, b) = (a, b)
        WorkerPool.shared.perform(parts) { part in
            let start = part * slice
            let n = min(slice, count - start)
            guard n > 0 else { return }
            if let b { activation.applyGated(a + start, times: b + start, count: n) } else { activation.apply(a + start, count: n) }
        }
    }

    /// Softmax router, top-k, optional renormalisation; each chosen expert runs on its
    /// tokens (its weights loaded once per layer) and adds its weighted output; then the
    /// shared expert, gated by a sigmoid when the family has one.
    private func moe(_ x: UnsafePointer<Float>, layer l: Int, into out: UnsafeMutablePointer<Float>) throws(RuntimeError) {
        let n = tokens, h = plan.hidden, e = plan.experts, topK = plan.expertsPerToken
        let router = try weights.require(.router, layer: l)
        let logits = routerLogits.reserve(n * e)
        project(x, rows: n, router, bias: nil, into: logits)
        var choices = [Int32](repeating: 0, count: n * topK)
        var chosenWeights = [Float](repeating: 0, count: n * topK)
        var probabilities = [Float](repeating: 0, count: e)
        var order = [Int](repeating: 0, count: e)
        for t in 0..<n {
            Self.rank(logits + t * e, experts: e, probabilities: &probabilities, order: &order)
            var total: Float = 0
            for i in 0..<topK { total += probabilities[order[i]] }
            for i in 0..<topK {
                choices[t * topK + i] = Int32(order[i])
                chosenWeights[t * topK + i] = plan.renormalize ? probabilities[order[i]] / total : probabilities[order[i]]
            }
        }
        if points.contains(.router) {
            observer?.observe(.router(layer: l, logits: Matrix(logits, rows: n, columns: e), choices: choices, weights: chosenWeights, topK: topK))
        }
        out.initialize(repeating: 0, count: n * h)
        var routed = [[(token: Int32, weight: Float)]](repeating: [], count: e)
        let beta = expertSkip.flatMap { l < $0.count ? $0[l] : nil }
        for t in 0..<n {
            for i in 0..<topK {
                expertEvaluations += 1
                if let beta, i > 0, chosenWeights[t * topK + i] < beta * chosenWeights[t * topK] {
                    expertEvaluationsSkipped += 1
                    continue
                }
                routed[Int(choices[t * topK + i])].append((Int32(t), chosenWeights[t * topK + i]))
            }
        }
        for expert in 0..<e where !routed[expert].isEmpty {
            let list = routed[expert]
            let rows = list.count
            let tokenList = list.map(\.token)
            let ye = try runExpert(expert, layer: l, on: tokenList, of: x)
            if points.contains(.expertOutputs) {
                observer?.observe(.expertOutput(layer: l, expert: expert, tokens: tokenList, values: Matrix(ye, rows: rows, columns: h)))
            }
            for (i, entry) in list.enumerated() {
                let dst = out + Int(entry.token) * h, src = ye + i * h
                for j in 0..<h { dst[j] += entry.weight * src[j] }
            }
        }
        if points.contains(.expertCandidates), let observer, observer.candidateExperts > 0 {
            try runCandidates(x, layer: l, logits: logits, count: min(e - topK, observer.candidateExperts))
        }
        if plan.node(.sharedExpertUp, layer: l) != nil {
            let ys = expertOut.reserve(n * h)
            try mlp(x, layer: l, roles: .shared, expert: nil, rows: n, tokens: nil, into: ys)
            if let gate = try weights.load(.sharedExpertRouter, layer: l) {
                let g = gathered.reserve(n)
                project(x, rows: n, gate, bias: nil, into: g)
                for t in 0..<n {
                    let s = 1 / (1 + exp(-g[t]))
                    for j in 0..<h { out[t * h + j] += s * ys[t * h + j] }
                }
            } else {
                for i in 0..<n * h { out[i] += ys[i] }
            }
        }
    }

    /// One expert's MLP on the rows `tokens` of `x` (gathered), into the expert workspace.
    private func runExpert(_ expert: Int, layer l: Int, on tokens: [Int32], of x: UnsafePointer<Float>) throws(RuntimeError) -> UnsafeMutablePointer<Float> {
        let h = plan.hidden
        let xe = gathered.reserve(tokens.count * h)
        for (i, t) in tokens.enumerated() { (xe + i * h).update(from: x + Int(t) * h, count: h) }
        let ye = expertOut.reserve(tokens.count * h)
        try mlp(xe, layer: l, roles: .expert, expert: expert, rows: tokens.count, tokens: tokens, into: ye)
        return ye
    }

    /// The router's softmax of one token's logits, and the experts by falling probability.
    public static func rank(_ row: UnsafePointer<Float>, experts e: Int, probabilities: inout [Float], order: inout [Int]) {
        var m = -Float.infinity
        for j in 0..<e { m = max(m, row[j]) }
        var sum: Float = 0
        for j in 0..<e { probabilities[j] = exp(row[j] - m); sum += probabilities[j] }
        for j in 0..<e { probabilities[j] /= sum; order[j] = j }
        // Largest first; ties keep the lower index first, as torch.topk does on CPU.
        order.sort { probabilities[$0] > probabilities[$1] || (probabilities[$0] == probabilities[$1] && $0 < $1) }
    }

    /// Runs each token's experts of ranks top-k ..< top-k + `count` (which the model does
    /// not run) and shows their outputs, so a search can re-route tokens among fewer
    /// experts. Observers see nothing of the work itself.
    private func runCandidates(_ x: UnsafePointer<Float>, layer l: Int, logits: UnsafePointer<Float>, count: Int) throws(RuntimeError) {
        let n = tokens, h = plan.hidden, e = plan.experts, topK = plan.expertsPerToken
        var candidates = [[Int32]](repeating: [], count: e)
        var order = [Int](repeating: 0, count: e)
        var probabilities = [Float](repeating: 0, count: e)
        for t in 0..<n {
            Self.rank(logits + t * e, experts: e, probabilities: &probabilities, order: &order)
            for i in topK..<topK + count { candidates[order[i]].append(Int32(t)) }
        }
        muted = true
        defer { muted = false }
        for expert in 0..<e where !candidates[expert].isEmpty {
            let list = candidates[expert]
            let ye = try runExpert(expert, layer: l, on: list, of: x)
            observer?.observe(.expertCandidate(layer: l, expert: expert, tokens: list, values: Matrix(ye, rows: list.count, columns: h)))
        }
    }

    // MARK: Head

    /// Applies the final norm (when the family has one) into `final`.
    public func finish() throws(RuntimeError) {
        precondition(isFinished, "layers remain")
        let n = tokens, h = plan.hidden
        // The layers' weights and workspace are done with: the head (often the largest
        // matrix) is loaded in their place.
        defer {
            weights.releaseAll()
            for b in [normed, branch, q, k, v, attention, fused, ffnA, ffnB, gathered, expertOut, routerLogits] + scores { b.release() }
        }
        let y = final.reserve(n * h)
        if let m = plan.spec.finalNorm {
            let w = try weights.load(m, layer: nil, slot: "final_norm")
            normalize(hidden.base, into: y, rows: n, w)
        } else {
            y.update(from: hidden.base, count: n * h)
        }
    }

    /// Logits `[rows, vocab]` of final-hidden rows `rows` into `out` (the head is loaded once).
    public func logits(rows: Range<Int>, into out: UnsafeMutablePointer<Float>) throws(RuntimeError) {
        guard let node = plan.headNode else { throw .tensorMissing(name: "lm_head") }
        if headWeight == nil || headWeight?.node.name != node.name {
            headWeight = Weight(values: try weights.load(node, slot: "lm_head"), node: node, transposed: plan.isTransposed(node))
            headBias = try weights.load(.lmHeadBias, layer: nil)
        }
        let w = headWeight!
        guard w.outputs == plan.vocab, w.inputs == plan.hidden else {
            throw .unsupported(what: "a head of shape \(node.source.info.shape) for vocabulary \(plan.vocab) and hidden size \(plan.hidden)")
        }
        BLAS.linear(final.base + rows.lowerBound * plan.hidden, rows: rows.count, inputs: plan.hidden, weight: w.values,
                    outputs: plan.vocab, transposed: w.transposed, into: out)
        if let b = headBias { addBias(out, rows: rows.count, width: plan.vocab, b.values) }
        if let cap = plan.finalSoftcap {
            for i in 0..<rows.count * plan.vocab { out[i] = cap * tanh(out[i] / cap) }
        }
    }

    private var headWeight: Weight?
    private var headBias: Weight?

    /// Runs every remaining layer and the final norm.
    public func runToEnd(progress: (Int) -> Void = { _ in }) throws(RuntimeError) {
        if nextLayer == 0 && hidden.count == 0 { try embed() }
        while !isFinished {
            try runLayer()
            progress(nextLayer)
        }
        try finish()
    }
}
