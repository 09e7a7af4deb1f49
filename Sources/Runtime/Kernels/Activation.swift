import Foundation

/// An MLP activation, by the names transformers' `hidden_act` uses.
public enum Activation: String, Sendable, CaseIterable {
    case silu
    case gelu
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`, `gelu_fast`).
    case geluTanh = "gelu_tanh"
    case relu

    /// The activation a config names, or nil when the executor does not implement it.
    public init?(configName: String) {
        switch configName {
        case "silu", "swish": self = .silu
        case "gelu": self = .gelu
        case "gelu_new", "gelu_pytorch_tanh", "gelu_fast": self = .geluTanh
        case "relu": self = .relu
        default: return nil
        }
    }

    /// Applies the activation in place to `count` values.
    public func apply(_ x: UnsafeMutablePointer<Float>, count: Int) {
        switch self {
        case .silu:
            for i in 0..<count { let v = x[i]; x[i] = v / (1 + exp(-v)) }
        case .gelu:
            for i in 0..<count { let v = x[i]; x[i] = 0.5 * v * (1 + erf(v * 0.70710678118654752)) }
        case .geluTanh:
            for i in 0..<count {
                let v = x[i]
                x[i] = 0.5 * v * (1 + tanh(0.79788456080286536 * (v + 0.044715 * v * v * v)))
            }
        case .relu:
            for i in 0..<count { x[i] = max(0, x[i]) }
        }
    }

    /// `a = act(a) · b` element-wise (a gated MLP's product).
    public func applyGated(_ a: UnsafeMutablePointer<Float>, times b: UnsafePointer<Float>, count: Int) {
        apply(a, count: count)
        for i in 0..<count { a[i] *= b[i] }
    }
}
