/// Names of the calibration statistics (`formats/stats.md`): what `pare calibrate` writes
/// and `pare trim --stats` / `pare sparsify --score wanda` read. Layers and experts are the
/// calibrated model's indices.
public enum StatisticName {
    /// Wanda's sqrt(Σ x²) per input channel of a linear weight.
    public static func inputNorm(_ weight: String) -> String { weight + ".input_norm" }
    /// The mean over tokens of each input channel of a linear weight (bias compensation).
    public static func inputMean(_ weight: String) -> String { weight + ".input_mean" }
    /// Minitron importance of each query head (from the output projection's input).
    public static func heads(layer: Int) -> String { "layers.\(layer).attention.heads" }
    /// Minitron importance of each channel of a dense MLP (the down projection's input).
    public static func mlpChannels(layer: Int) -> String { "layers.\(layer).mlp.channels" }
    /// The same for one routed expert's FFN.
    public static func expertChannels(layer: Int, expert: Int) -> String { "layers.\(layer).experts.\(expert).channels" }
    /// The same for the shared expert's FFN.
    public static func sharedExpertChannels(layer: Int) -> String { "layers.\(layer).shared_expert.channels" }
    /// Minitron importance of each hidden (embedding) channel, summed over branches and layers.
    public static let hidden = "hidden"
    /// ShortGPT's block influence: 1 − mean cos(layer input, layer output).
    public static func blockInfluence(layer: Int) -> String { "layers.\(layer).block_influence" }
    /// Tokens routed to each expert.
    public static func routerTokens(layer: Int) -> String { "layers.\(layer).router.tokens" }
    /// Summed routing weight of each expert.
    public static func routerWeight(layer: Int) -> String { "layers.\(layer).router.weight" }
    /// NAEE's β: the median over tokens of w₂/w₁.
    public static func routerBeta(layer: Int) -> String { "layers.\(layer).router.beta" }
    /// sqrt(Σ over routed tokens of ‖expert output‖²), per expert.
    public static func expertOutputNorm(layer: Int) -> String { "layers.\(layer).experts.output_norm" }
}
