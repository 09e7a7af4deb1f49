import Foundation
import Testing
@testable import Runtime

/// Each compute piece against values worked out by hand.
@Suite struct KernelTests {
    @Test func rmsNormDividesByRootMeanSquare() {
        // x = [3, 4]: mean(x²) = 12.5, rms = sqrt(12.5 + eps).
        let x: [Float] = [3, 4]
        var y = [Float](repeating: 0, count: 2)
        let w: [Float] = [1, 2]
        Normalization.apply(.rms, rows: 1, width: 2, x, into: &y, weight: w, bias: nil, epsilon: 0.5, unitOffset: false)
        let r = Float(13).squareRoot()
        #expect(abs(y[0] - 3 / r) < 1e-6)
        #expect(abs(y[1] - 2 * 4 / r) < 1e-6)
        // Gemma multiplies by 1 + w.
        Normalization.apply(.rms, rows: 1, width: 2, x, into: &y, weight: w, bias: nil, epsilon: 0.5, unitOffset: true)
        #expect(abs(y[0] - 2 * 3 / r) < 1e-6)
        #expect(abs(y[1] - 3 * 4 / r) < 1e-6)
    }

    @Test func layerNormCentresScalesAndShifts() {
        // x = [1, 3]: mean 2, biased variance 1.
        let x: [Float] = [1, 3]
        var y = [Float](repeating: 0, count: 2)
        Normalization.apply(.layer, rows: 1, width: 2, x, into: &y, weight: [2, 3], bias: [10, 20], epsilon: 0, unitOffset: false)
        #expect(y == [8, 23])
    }

    @Test func normOverHeadsUsesTheRowStride() {
        // Two heads of width 2 in one row of 4: each head is normalised on its own.
        let x: [Float] = [3, 4, 6, 8]
        var y = [Float](repeating: 0, count: 4)
        Normalization.apply(.rms, rows: 2, width: 2, x, into: &y, weight: nil, bias: nil, epsilon: 0, unitOffset: false)
        let a = Float(12.5).squareRoot(), b = Float(50).squareRoot()
        #expect(abs(y[0] - 3 / a) < 1e-6 && abs(y[3] - 8 / b) < 1e-6)
    }

    @Test(arguments: [
        ("silu", Float(1), Float(1 / (1 + exp(-1.0)))),
        ("gelu", Float(1), Float(0.5 * (1 + erf(1 / 2.0.squareRoot())))),
        ("gelu_new", Float(1), Float(0.5 * (1 + tanh((2 / Double.pi).squareRoot() * 1.044715)))),
        ("gelu_pytorch_tanh", Float(-2), Float(-1 * (1 + tanh((2 / Double.pi).squareRoot() * (-2 - 0.044715 * 8))))),
        ("relu", Float(-3), Float(0)),
    ])
    func activationsMatchTheirFormulas(name: String, x: Float, expected: Float) throws {
        let act = try #require(Activation(configName: name))
        var v = [x]
        act.apply(&v, count: 1)
        #expect(abs(v[0] - expected) < 1e-6)
    }

    @Test func unknownActivationsAreNotGuessed() {
        #expect(Activation(configName: "quick_gelu") == nil)
        #expect(Activation(configName: "gelu_10") == nil)
    }

    @Test func ropeRotatesPairsHalfApart() throws {
        // head_dim 4, theta 100: inverse frequencies 1 and 1/10.
        let rope = try Rope(headDim: 4, theta: 100, partialRotaryFactor: 1, type: "default", parameters: [:])
        #expect(rope.inverseFrequencies == [1, 0.1])
        let (c, s) = rope.tables(positions: 3)
        var x: [Float] = [1, 2, 3, 4]
        rope.apply(&x, heads: 1, headDim: 4, position: 2, cos: c, sin: s)
        // Pairs (x0, x2) at angle 2 and (x1, x3) at angle 0.2.
        #expect(abs(x[0] - Float(1 * cos(2.0) - 3 * sin(2.0))) < 1e-6)
        #expect(abs(x[2] - Float(3 * cos(2.0) + 1 * sin(2.0))) < 1e-6)
        #expect(abs(x[1] - Float(2 * cos(0.2) - 4 * sin(0.2))) < 1e-6)
        #expect(abs(x[3] - Float(4 * cos(0.2) + 2 * sin(0.2))) < 1e-6)
    }

    @Test func partialRotaryLeavesTheTailAlone() throws {
        let rope = try Rope(headDim: 4, theta: 100, partialRotaryFactor: 0.5, type: "default", parameters: [:])
        #expect(rope.rotaryDim == 2)
        let (c, s) = rope.tables(positions: 2)
        var x: [Float] = [1, 2, 3, 4]
        rope.apply(&x, heads: 1, headDim: 4, position: 1, cos: c, sin: s)
        #expect(abs(x[0] - Float(cos(1.0) - 2 * sin(1.0))) < 1e-6)
        #expect(x[2] == 3 && x[3] == 4)
    }

    @Test func linearAndLlama3ScalingDivideLowFrequencies() throws {
        let linear = try Rope(headDim: 4, theta: 100, partialRotaryFactor: 1, type: "linear", parameters: ["factor": 4])
        #expect(linear.inverseFrequencies == [0.25, 0.025])
        // Wavelengths 2π and 20π; with an old context of 8 tokens, low factor 1 and high
        // factor 4: 20π > 8 is low-frequency (divided by 8); 2π < 8/4 = 2 is false and
        // 2π > 8 is false, so it is blended: smooth = (8/2π − 1)/3.
        let llama3 = try Rope(headDim: 4, theta: 100, partialRotaryFactor: 1, type: "llama3",
                              parameters: ["factor": 8, "low_freq_factor": 1, "high_freq_factor": 4, "original_max_position_embeddings": 8])
        let smooth = (8 / (2 * Double.pi) - 1) / 3
        #expect(abs(Double(llama3.inverseFrequencies[0]) - ((1 - smooth) / 8 + smooth)) < 1e-6)
        #expect(abs(Double(llama3.inverseFrequencies[1]) - 0.1 / 8) < 1e-7)
    }

    @Test func unknownRopeTypesAreRefused() {
        #expect(throws: RuntimeError.unsupported(what: "rope_type 'yarn' (pare runs default, linear and llama3)")) {
            try Rope(headDim: 4, theta: 100, partialRotaryFactor: 1, type: "yarn", parameters: [:])
        }
        #expect(throws: RuntimeError.configInvalid(key: "factor", problem: "is needed by rope_type 'linear' and missing")) {
            try Rope(headDim: 4, theta: 100, partialRotaryFactor: 1, type: "linear", parameters: [:])
        }
    }

    @Test func blasLinearHandlesBothStorageOrders() {
        // x [1, 2] = [1, 2]; W stored [out 3, in 2] and its transpose [in 2, out 3].
        let x: [Float] = [1, 2]
        let w: [Float] = [1, 0, 0, 1, 1, 1]
        let wt: [Float] = [1, 0, 1, 0, 1, 1]
        var y = [Float](repeating: 0, count: 3)
        BLAS.linear(x, rows: 1, inputs: 2, weight: w, outputs: 3, transposed: false, into: &y)
        #expect(y == [1, 2, 3])
        y = [0, 0, 0]
        BLAS.linear(x, rows: 1, inputs: 2, weight: wt, outputs: 3, transposed: true, into: &y)
        #expect(y == [1, 2, 3])
    }
}
