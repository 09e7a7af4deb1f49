import Foundation

/// Row-wise RMSNorm and LayerNorm, f32 as transformers computes them.
public enum Normalization {
    /// Normalises `rows` rows of `width` values from `x` into `y` (which may be `x`).
    ///
    /// RMSNorm: `x / sqrt(mean(x²) + eps) · w` (`· (1 + w)` with `unitOffset`, Gemma).
    /// LayerNorm: `(x − mean) / sqrt(var + eps) · w + b` with the biased variance.
    /// `stride` is the distance between rows (q/k norms over one head use the projection's
    /// width).
    public static func apply(
        _ kind: NormKindValue, rows: Int, width: Int, stride: Int? = nil,
        _ x: UnsafePointer<Float>, into y: UnsafeMutablePointer<Float>,
        weight: UnsafePointer<Float>?, bias: UnsafePointer<Float>?, epsilon: Float, unitOffset: Bool
    ) {
        let stride = stride ?? width
        for r in 0..<rows {
            let xi = x + r * stride, yi = y + r * stride
            switch kind {
            case .rms:
                var sum: Float = 0
                for j in 0..<width { sum += xi[j] * xi[j] }
                let inv = 1 / (sum / Float(width) + epsilon).squareRoot()
                if let weight {
                    if unitOffset {
                        for j in 0..<width { yi[j] = (xi[j] * inv) * (1 + weight[j]) }
                    } else {
                        for j in 0..<width { yi[j] = weight[j] * (xi[j] * inv) }
                    }
                } else {
                    for j in 0..<width { yi[j] = xi[j] * inv }
                }
            case .layer:
                var sum: Float = 0
                for j in 0..<width { sum += xi[j] }
                let mean = sum / Float(width)
                var sq: Float = 0
                for j in 0..<width { let d = xi[j] - mean; sq += d * d }
                let inv = 1 / (sq / Float(width) + epsilon).squareRoot()
                for j in 0..<width {
                    var v = (xi[j] - mean) * inv
                    if let weight { v *= weight[j] }
                    if let bias { v += bias[j] }
                    yi[j] = v
                }
            }
        }
    }
}

/// The norm kinds the executor computes.
public enum NormKindValue: Sendable {
    case rms
    case layer
}
