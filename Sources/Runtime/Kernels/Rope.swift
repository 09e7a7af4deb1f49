import Foundation

/// Rotary position embeddings in the rotate-half layout transformers uses: the first
/// `rotaryDim / 2` values of a head pair with the next `rotaryDim / 2`; values past
/// `rotaryDim` (a partial rotary factor) pass through.
public struct Rope: Sendable {
    /// One inverse frequency per pair, after any scaling.
    public let inverseFrequencies: [Float]
    public let rotaryDim: Int

    /// The frequencies for a head of `headDim` values.
    ///
    /// `type` is the config's `rope_type`: `default`, `linear` (frequencies divided by
    /// `factor`) or `llama3` (low frequencies divided by `factor`, a smooth blend between
    /// `low_freq_factor` and `high_freq_factor` of `original_max_position_embeddings`).
    public init(headDim: Int, theta: Double, partialRotaryFactor: Double, type: String, parameters: [String: Double]) throws(RuntimeError) {
        var dim = Int(Double(headDim) * partialRotaryFactor)
        dim -= dim % 2
        guard dim > 0 else { throw .unsupported(what: "a rotary dimension of \(dim) (head_dim \(headDim) × partial_rotary_factor \(partialRotaryFactor))") }
        rotaryDim = dim
        // As transformers: base ** (arange(0, dim, 2) / dim), in f32.
        var inv = (0..<dim / 2).map { i -> Double in
            Double(Float(1) / Float(pow(theta, Double(Float(2 * i) / Float(dim)))))
        }
        func need(_ key: String) throws(RuntimeError) -> Double {
            guard let v = parameters[key] else { throw .configInvalid(key: key, problem: "is needed by rope_type '\(type)' and missing") }
            return v
        }
        switch type {
        case "default":
            break
        case "linear":
            let factor = try need("factor")
            inv = inv.map { $0 / factor }
        case "llama3":
            let factor = try need("factor"), low = try need("low_freq_factor"), high = try need("high_freq_factor")
            let old = try need("original_max_position_embeddings")
            let lowWavelen = old / low, highWavelen = old / high
            inv = inv.map { f -> Double in
                let f32 = Double(Float(f))
                let wavelen = Double(Float(2 * Double.pi / f32))
                var scaled = wavelen > lowWavelen ? f32 / factor : f32
                if !(wavelen < highWavelen) && !(wavelen > lowWavelen) {
                    let smooth = (old / wavelen - low) / (high - low)
                    scaled = (1 - smooth) * scaled / factor + smooth * scaled
                }
                return scaled
            }
        default:
            throw .unsupported(what: "rope_type '\(type)' (pare runs default, linear and llama3)")
        }
        inverseFrequencies = inv.map { Float($0) }
    }

    /// cos and sin tables `[positions, rotaryDim / 2]`, angles formed in f32 as transformers does.
    public func tables(positions: Int) -> (cos: [Float], sin: [Float]) {
        let half = rotaryDim / 2
        var c = [Float](repeating: 0, count: positions * half), s = c
        for p in 0..<positions {
            for i in 0..<half {
                let angle = Float(p) * inverseFrequencies[i]
                c[p * half + i] = Float(cos(Double(angle)))
                s[p * half + i] = Float(sin(Double(angle)))
            }
        }
        return (c, s)
    }

    /// Rotates `heads` heads of one token in place; `position` indexes the tables.
    @inline(__always)
    public func apply(
        _ x: UnsafeMutablePointer<Float>, heads: Int, headDim: Int, position: Int,
        cos: UnsafePointer<Float>, sin: UnsafePointer<Float>
    ) {
        let half = rotaryDim / 2
        let c = cos + position * half, s = sin + position * half
        for h in 0..<heads {
            let v = x + h * headDim
            for i in 0..<half {
                let a = v[i], b = v[i + half]
                v[i] = a * c[i] - b * s[i]
                v[i + half] = b * c[i] + a * s[i]
            }
        }
    }
}
