import Emit
import ModelFolder
import ModelGraph
import OrderedJSON
import PareFormat
import SafeTensors
import Tensors

/// How a sparsify request's format turns targets into output tensors and config.
struct SparseLayout {
    let request: SparsifyRequest

    init(request: SparsifyRequest) { self.request = request }

    /// The writer's items: every tensor of the model in order, targets replaced by their
    /// sparse form (one or several tensors, depending on the format).
    func items(model: ModelFolder, targets: [SparsifyPlan.Target]) -> [OutputItem] {
        let byName = Dictionary(targets.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        var items: [OutputItem] = []
        for tensor in model.tensors {
            let info = tensor.info
            guard let target = byName[info.name] else {
                items.append(OutputItem(source: tensor, entry: .init(name: info.name, dtype: info.dtype, shape: info.shape)))
                continue
            }
            let prune = NMPruneTransform(
                pattern: request.pattern, dtype: info.dtype, shape: info.shape.map { Int($0) }, input: target.input, norms: target.norms)
            let rows = info.shape[0], columns = info.shape[1]
            switch request.format {
            case .dense:
                items.append(OutputItem(source: tensor, entry: .init(name: info.name, dtype: info.dtype, shape: info.shape), transform: prune))
            case .pare:
                // Groups run along the last dimension only for nn.Linear; a pruned Conv1D
                // weight is half zeros in no row pattern, which the bitmask stores.
                let encoding: PareEncoding = target.input == .last ? .nm(request.pattern) : .bitmask
                items.append(OutputItem(source: tensor, entry: .init(name: info.name, dtype: info.dtype, shape: info.shape),
                                             encoding: encoding, transform: prune))
            case .compressedTensors:
                let prefix = CompressedTensorsLayout.prefix(of: info.name)
                let parts: [(String, DType, [UInt64], CompressedTensorsLayout.Transform.Part)] = [
                    ("shape", .i64, [2, 1], .shape),
                    ("compressed", info.dtype, [rows, columns / 2], .compressed),
                    ("bitmask", .u8, [rows, (columns + 7) / 8], .bitmask),
                ]
                for (suffix, dtype, shape, part) in parts {
                    items.append(OutputItem(source: tensor, entry: .init(name: "\(prefix).\(suffix)", dtype: dtype, shape: shape),
                                                 transform: CompressedTensorsLayout.Transform(prune: prune, part: part)))
                }
            case .cutlass:
                items.append(OutputItem(source: tensor, entry: .init(name: info.name + ".values", dtype: info.dtype, shape: [rows, columns / 2]),
                                             transform: CutlassLayout.Transform(prune: prune, part: .values)))
                items.append(OutputItem(source: tensor, entry: .init(name: info.name + ".meta", dtype: .i16, shape: [rows, columns / 16]),
                                             transform: CutlassLayout.Transform(prune: prune, part: .metadata)))
            }
        }
        return items
    }

    /// Config changes: compressed-tensors' `sparsity_config`; nothing for the others.
    func rewrite(_ config: inout ModelConfig?, model: ModelFolder, graph: ModelGraph?, targets: [SparsifyPlan.Target], warnings: inout [String]) {
        switch request.format {
        case .dense, .pare:
            return
        case .cutlass:
            warnings.append("the cutlass layout is not a checkpoint transformers loads: tools/load_cutlass.py builds torch's SparseSemiStructuredTensorCUTLASS from it (on a GPU)")
        case .compressedTensors:
            warnings.append("current vLLM releases no longer run compressed-tensors' sparse-24-bitmask format, and transformers 5 with compressed-tensors ≥ 0.20 loads it without error but with random weights; it is read correctly by compressed-tensors 0.14.0.1 with transformers 4.57. For today's runtimes use --format dense")
            let quantization = CompressedTensorsLayout.quantizationConfig(targets: targets, model: model, graph: graph)
            config?.edit { $0.set("quantization_config", to: quantization, appendIfMissing: true) }
        }
    }
}

