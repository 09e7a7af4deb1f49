/// A row-major view of activations the executor hands to an observer; valid only during
/// the call.
public struct Matrix {
    public let base: UnsafePointer<Float>
    public let rows: Int
    public let columns: Int
    /// Distance between rows, in values.
    public let stride: Int

    public init(_ base: UnsafePointer<Float>, rows: Int, columns: Int, stride: Int? = nil) {
        self.base = base
        self.rows = rows
        self.columns = columns
        self.stride = stride ?? columns
    }

    public func row(_ r: Int) -> UnsafeBufferPointer<Float> { UnsafeBufferPointer(start: base + r * stride, count: columns) }
    public subscript(r: Int, c: Int) -> Float { base[r * stride + c] }
}

/// Which observation points an observer wants; the executor skips the others entirely.
public struct ObservationPoints: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }

    /// Each layer's input hidden states `[tokens, hidden]`.
    public static let layerInput = ObservationPoints(rawValue: 1 << 0)
    /// Each layer's output hidden states `[tokens, hidden]`.
    public static let layerOutput = ObservationPoints(rawValue: 1 << 1)
    /// Each attention head's output before the output projection `[tokens, heads × head_dim]`.
    public static let headOutputs = ObservationPoints(rawValue: 1 << 2)
    /// FFN intermediate activations (the down projection's input) of MLPs, experts and shared experts.
    public static let ffnActivations = ObservationPoints(rawValue: 1 << 3)
    /// The input of every linear weight, named by tensor.
    public static let linearInputs = ObservationPoints(rawValue: 1 << 4)
    /// Router logits and the top-k choice of each MoE layer.
    public static let router = ObservationPoints(rawValue: 1 << 5)
    /// Each expert's output on the tokens routed to it (before the routing weight).
    public static let expertOutputs = ObservationPoints(rawValue: 1 << 6)
    /// Outputs of experts the router did not choose: each token's next `candidateExperts`
    /// by routing weight after its top-k (the executor runs them only for this).
    public static let expertCandidates = ObservationPoints(rawValue: 1 << 7)
    public static let all: ObservationPoints = [.layerInput, .layerOutput, .headOutputs, .ffnActivations, .linearInputs, .router, .expertOutputs]
}

/// What the executor shows an observer. Matrices have one row per token of the batch, in
/// batch order, except where `tokens` lists which batch tokens the rows are.
public enum Observation {
    case layerInput(layer: Int, hidden: Matrix)
    case layerOutput(layer: Int, hidden: Matrix)
    case headOutputs(layer: Int, values: Matrix, heads: Int, headDim: Int)
    /// `expert` is nil for a dense MLP; `shared` marks a shared expert.
    case ffnActivations(layer: Int, expert: Int?, shared: Bool, tokens: [Int32]?, values: Matrix)
    case linearInput(tensor: String, tokens: [Int32]?, values: Matrix)
    /// `choices[t * k + i]` is token t's i-th expert, `weights` its routing weight (after
    /// any renormalisation).
    case router(layer: Int, logits: Matrix, choices: [Int32], weights: [Float], topK: Int)
    case expertOutput(layer: Int, expert: Int, tokens: [Int32], values: Matrix)
    /// An expert's output on tokens that did not choose it (`.expertCandidates`).
    case expertCandidate(layer: Int, expert: Int, tokens: [Int32], values: Matrix)
}

/// Receives observations while the executor runs (the calibration statistics are one).
public protocol ExecutionObserver: AnyObject {
    var points: ObservationPoints { get }
    /// With `.expertCandidates`: how many experts past each token's top-k to run.
    var candidateExperts: Int { get }
    func observe(_ observation: Observation)
}

extension ExecutionObserver {
    public var candidateExperts: Int { 0 }
}
