import Emit
import ModelFolder
import ModelGraph
import OrderedJSON
import SafeTensors
import Tensors

/// FLAP's bias compensation: what removed channels contributed on average is folded into
/// the bias of the projection that read them, so the layer's mean output stays where it was.
///
/// For a down projection W (or an attention output projection) whose input channels R are
/// removed, the bias gains δ[o] = Σ_{c∈R} W[o, c] · mean(x_c), with the channel means of the
/// calibration tokens (`<W>.input_mean`). Where the family has no such bias, a config
/// switch that creates it (Llama's `mlp_bias`, `attention_bias`) is turned on and every
/// bias it creates is written (zeros, but the compensated one); without a switch the
/// request is refused with the reason.
extension TrimmedModel {
    /// The projections compensation folds into, by the bias role each one's bias has.
    static let compensated: [(weight: Role, bias: Role, what: String, request: String)] = [
        (.down, .downBias, "FFN channels", "--ffn"),
        (.output, .outputBias, "attention heads", "--heads/--kv-heads"),
    ]

    /// This trim with compensated biases. The plan's keep lists must be final.
    public func compensatingBiases(with statistics: CalibrationStatistics) throws(TrimError) -> TrimmedModel {
        let family = graph.descriptor.family
        for axis in [Axis.expertFFN, .sharedExpertFFN] where plan.keep.keys.contains(where: { $0.axis == axis }) {
            throw .notSupported(family: family, request: "--compensate bias with pruned \(axis.noun) (\(axis.option), or a fraction on --ffn)",
                                reason: "the removed channels would fold into the bias of each expert's down projection, and experts have no bias in its class")
        }
        var result = self
        var compensatedAny = false
        for target in Self.compensated {
            let weights = itemNodes.indices.filter { i in
                guard let node = itemNodes[i], node.expert == nil, node.layer != nil else { return false }
                return graph.descriptor.tensors[node.template].role == target.weight
            }
            // Where the result could not hold a bias, refuse before reading anything.
            if !hasBias(target.bias), weights.contains(where: removesInputs(item:)) {
                _ = try biasSwitch(target.bias, what: target.what)
            }
            // Only where the trim removes the projection's input channels.
            var deltas: [(layer: Int, delta: [Float])] = []
            for i in weights {
                if let d = try delta(item: i, statistics: statistics) { deltas.append((itemNodes[i]!.layer!, d)) }
            }
            guard !deltas.isEmpty else { continue }
            compensatedAny = true
            let byLayer = Dictionary(deltas, uniquingKeysWith: { a, _ in a })
            if hasBias(target.bias) {
                try result.addToExistingBiases(target.bias, byLayer: byLayer, what: target.what)
            } else {
                try result.createBiases(target.bias, byLayer: byLayer, what: target.what)
            }
        }
        guard compensatedAny else {
            throw .notSupported(family: family, request: "--compensate bias",
                                reason: "the trim removes no FFN channels and no attention heads, so there is nothing to compensate (it applies to --ffn, --heads and --kv-heads)")
        }
        return result
    }

    /// Whether the checkpoint has the bias (an `optional` template the checkpoint leaves
    /// out is one its class does not create).
    private func hasBias(_ role: Role) -> Bool {
        graph.nodes.contains(where: { graph.descriptor.tensors[$0.template].role == role })
    }

    /// The config flag whose switch creates the bias, or the refusal.
    private func biasSwitch(_ role: Role, what: String) throws(TrimError) -> (template: ArchitectureDescriptor.Tensor, key: String) {
        let descriptor = graph.descriptor
        guard let gated = descriptor.tensors.first(where: { $0.role == role && $0.requiredIf.map { !$0.negated } == true }),
              let flag = gated.requiredIf?.flag, let key = descriptor.flags[flag]?.key else {
            throw .notSupported(family: descriptor.family, request: "--compensate bias",
                                reason: "its class has no bias on the projection that reads the removed \(what) (\(role.rawValue)) and no config switch that adds one")
        }
        return (gated, key)
    }

    /// Whether the trim removes input channels of item `i`'s projection.
    private func removesInputs(item i: Int) -> Bool {
        let node = itemNodes[i]!
        let transposed = graph.descriptor.tensors[node.template].transposed
        let shape = node.source.info.shape
        guard shape.count == 2, let kept = items[i].selections?[transposed ? 0 : 1] else { return false }
        return kept.count < Int(transposed ? shape[0] : shape[1])
    }

    /// δ over the projection's full output width, or nil when the trim keeps every input
    /// channel of item `i`.
    private func delta(item i: Int, statistics: CalibrationStatistics) throws(TrimError) -> [Float]? {
        let node = itemNodes[i]!
        let item = items[i]
        let transposed = graph.descriptor.tensors[node.template].transposed
        let shape = node.source.info.shape.map { Int($0) }
        guard shape.count == 2 else { return nil }
        let (outputs, inputs) = transposed ? (shape[1], shape[0]) : (shape[0], shape[1])
        guard let kept = item.selections?[transposed ? 0 : 1] else { return nil }
        let keep = Set(kept)
        let removed = (0..<inputs).filter { !keep.contains($0) }
        guard !removed.isEmpty else { return nil }
        let mean = try statistics.vector(StatisticName.inputMean(node.name), count: inputs)
        let w = try floats(node.source, mergedWith: item.mergeSources)
        var delta = [Double](repeating: 0, count: outputs)
        for c in removed where mean[c] != 0 {
            for o in 0..<outputs {
                delta[o] += Double(w[transposed ? c * outputs + o : o * inputs + c]) * mean[c]
            }
        }
        return delta.map(Float.init)
    }

    /// A tensor (or its LaCo merge, as written) as f32.
    private func floats(_ tensor: ModelFolder.Tensor, mergedWith others: [ModelFolder.Tensor]) throws(TrimError) -> [Float] {
        let info = tensor.info
        guard info.dtype.isCastable else { throw .cannotScore(tensor: info.name, dtype: info.dtype.name) }
        let count = Int(info.elementCount)
        var out = [Float](repeating: 0, count: count)
        do throws(ModelFolderError) {
            if others.isEmpty {
                try graph.model.shards[tensor.shard].withBytes(of: info) { bytes in
                    out.withUnsafeMutableBufferPointer { FloatConversion.convert(count: count, from: info.dtype, bytes.baseAddress!, to: .f32, $0.baseAddress!) }
                }
            } else {
                let merged = try graph.model.mergedBytes(base: tensor, others: others)
                merged.withUnsafeBytes { bytes in
                    out.withUnsafeMutableBufferPointer { FloatConversion.convert(count: count, from: info.dtype, bytes.baseAddress!, to: .f32, $0.baseAddress!) }
                }
            }
        } catch {
            throw .input(error)
        }
        return out
    }

    private static func bytes(_ values: [Float], as dtype: DType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: values.count * dtype.bitWidth / 8)
        values.withUnsafeBytes { source in
            out.withUnsafeMutableBytes { FloatConversion.convert(count: values.count, from: .f32, source.baseAddress!, to: dtype, $0.baseAddress!) }
        }
        return out
    }

    /// Adds δ to the biases the checkpoint has, through the bias item's own selection.
    private mutating func addToExistingBiases(_ role: Role, byLayer: [Int: [Float]], what: String) throws(TrimError) {
        for (i, node) in itemNodes.enumerated() {
            guard let node, let layer = node.layer, node.expert == nil, graph.descriptor.tensors[node.template].role == role,
                  let delta = byLayer[layer] else { continue }
            let item = items[i]
            var values = try floats(node.source, mergedWith: item.mergeSources)
            guard values.count == delta.count else {
                throw .notSupported(family: graph.descriptor.family, request: "--compensate bias",
                                    reason: "'\(node.name)' has \(values.count) values and its projection \(delta.count) outputs")
            }
            for o in values.indices { values[o] += delta[o] }
            if let kept = item.selections?.first ?? nil { values = kept.map { values[$0] } }
            items[i] = OutputItem(contents: Self.bytes(values, as: item.entry.dtype), entry: item.entry, nominalSource: node.source)
        }
        // A layer that removes channels but has no bias: the checkpoint left it out.
        let covered = Set(itemNodes.compactMap { $0 }.filter { graph.descriptor.tensors[$0.template].role == role }.compactMap(\.layer))
        if let missing = byLayer.keys.sorted().first(where: { !covered.contains($0) }) {
            throw .notSupported(family: graph.descriptor.family, request: "--compensate bias",
                                reason: "layer \(missing) has no \(role.rawValue) tensor to fold the removed \(what) into")
        }
    }

    /// Turns on the config switch that creates the bias, and writes every tensor it creates:
    /// zeros, and δ in the compensated one.
    private mutating func createBiases(_ role: Role, byLayer: [Int: [Float]], what: String) throws(TrimError) {
        let descriptor = graph.descriptor
        let (gated, key) = try biasSwitch(role, what: what)
        let surviving = (0..<graph.binding.layerCount).filter { !plan.removedLayers.contains($0) }
        var newIndex: [Int: Int] = [:]
        for (i, layer) in surviving.enumerated() { newIndex[layer] = i }
        let templates = descriptor.tensors.indices.filter { descriptor.tensors[$0].requiredIf == gated.requiredIf }
        var added: [(after: Int, item: OutputItem)] = []
        for layer in surviving {
            // The new tensors go after the layer's last tensor, in the dtype of its weights.
            guard let last = itemNodes.lastIndex(where: { $0?.layer == layer }), let anchor = itemNodes[last] else { continue }
            let projection = itemNodes.firstIndex { node in
                guard let node, node.layer == layer, node.expert == nil else { return false }
                return Self.compensated.contains { $0.bias == role && descriptor.tensors[node.template].role == $0.weight }
            }
            for t in templates {
                let spec = descriptor.tensors[t]
                guard graph.binding.admits(spec.layers, layer: layer) else { continue }
                var shape: [UInt64] = []
                for dimension in spec.shape {
                    let size: Int
                    do {
                        switch dimension {
                        case .expression(let e): size = try e.evaluate { sizes[$0] }
                        case .concat(let parts): size = try parts.reduce(0) { (total: Int, part: AxisExpression) throws(AxisExpression.EvaluationError) in total + (try part.evaluate { sizes[$0] }) }
                        }
                    } catch {
                        throw .notSupported(family: descriptor.family, request: "--compensate bias", reason: "the size of '\(spec.name)' cannot be worked out (\(dimension))")
                    }
                    shape.append(UInt64(size))
                }
                let count = shape.reduce(1) { $0 * Int($1) }
                var values = [Float](repeating: 0, count: count)
                if spec.role == role, let delta = byLayer[layer], let p = projection {
                    // δ is over the projection's full output; keep what the trim keeps.
                    let projectionNode = itemNodes[p]!
                    let outDim = descriptor.tensors[projectionNode.template].transposed ? 1 : 0
                    let kept = items[p].selections?[outDim] ?? Array(0..<delta.count)
                    guard kept.count == count else {
                        throw .notSupported(family: descriptor.family, request: "--compensate bias", reason: "'\(spec.name)' would have \(count) values and its projection \(kept.count) outputs")
                    }
                    values = kept.map { delta[$0] }
                }
                let dtype = items[projection ?? last].entry.dtype
                let name = TensorTemplate(spec.name).name(layer: newIndex[layer], expert: nil)
                added.append((last, OutputItem(contents: Self.bytes(values, as: dtype), entry: .init(name: name, dtype: dtype, shape: shape), nominalSource: anchor.source)))
            }
        }
        for (after, item) in added.reversed() {
            items.insert(item, at: after + 1)
            itemNodes.insert(nil, at: after + 1)
        }
        var json = config.json
        let before = json[key]
        json.set(key, to: .bool(true), appendIfMissing: true)
        config.edit { $0 = json }
        configChanges.append((key, before, .bool(true)))
    }
}
