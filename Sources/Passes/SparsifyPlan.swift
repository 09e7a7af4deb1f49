import Emit
import ModelFolder
import ModelGraph
import OrderedJSON
import SafeTensors
import Tensors

/// A sparsify request resolved against a model: which tensors are pruned, how they are
/// scored, and the items the writer streams. Nothing but headers (and the statistics
/// file's norms) is read here.
public struct SparsifyPlan: Sendable {
    public let request: SparsifyRequest
    public let model: ModelFolder
    public let targets: [SparseTarget]
    public let items: [OutputItem]
    public let config: ModelConfig?
    /// Facts the user should know about the output (one sentence each).
    public let warnings: [String]

    public init(model: ModelFolder, request: SparsifyRequest, registry: DescriptorRegistry = .builtin) throws(SparsifyError) {
        self.model = model
        self.request = request
        let pattern = request.pattern
        let layout = request.layout
        if request.score == .wanda, request.statsPath == nil { throw .statsNeeded }
        if request.score != .wanda, request.statsPath != nil { throw .statsUnused }
        do { try layout.check(pattern) } catch { throw .layout(error) }
        let targetsRegex = try Self.regex(request.targets, option: "--targets")
        let ignoreRegex = try Self.regex(request.ignore, option: "--ignore")

        // Candidates: the descriptor's linear weights, or any 2-D float tensor --targets names.
        var candidates: [(tensor: ModelFolder.Tensor, input: NMSparsity.InputDimension, role: Role?)] = []
        let graph: ModelGraph?
        do { graph = try ModelGraph(model: model, registry: registry) } catch {
            guard targetsRegex != nil else { throw .graph(error) }
            graph = nil
        }
        var specs: [String: ArchitectureDescriptor.Tensor] = [:]
        if let graph {
            for node in graph.nodes { specs[node.name] = graph.descriptor.tensors[node.template] }
        }
        for tensor in model.tensors where tensor.info.shape.count == 2 {
            let spec = specs[tensor.info.name]
            if let targetsRegex {
                guard tensor.info.dtype.isCastable, tensor.info.name.contains(targetsRegex) else { continue }
            } else {
                guard spec?.role.isLinearWeight == true else { continue }
            }
            candidates.append((tensor, spec?.transposed == true ? .first : .last, spec?.role))
        }
        if let ignoreRegex { candidates.removeAll { $0.tensor.info.name.contains(ignoreRegex) } }
        guard !candidates.isEmpty else {
            throw .noTargets(reason: request.targets != nil || request.ignore != nil
                ? "no 2-D F32/F16/BF16 tensor matches --targets and escapes --ignore"
                : "the model has no linear weights in its layers")
        }

        let stats: SafeTensorsFile?
        do { stats = try request.statsPath.map { path throws(SafeTensorsError) in try SafeTensorsFile(path: path) } } catch { throw .stats(error) }
        var targets: [SparseTarget] = []
        for (tensor, input, role) in candidates {
            var target = SparseTarget(source: tensor, input: input, role: role)
            let name = target.name
            let dtype = tensor.info.dtype
            guard dtype.isCastable else {
                throw .layout(.unsupportedDType(tensor: name, dtype: dtype.name, format: layout.name, fix: "only F32, F16 and BF16 weights can be sparsified"))
            }
            guard target.inputSize % pattern.m == 0 else { throw .notGroupable(tensor: name, inputSize: target.inputSize, m: pattern.m) }
            do { try layout.check(target) } catch { throw .layout(error) }
            if let stats, let path = request.statsPath {
                target.norms = try Self.norms(for: target, in: stats, path: path)
            }
            targets.append(target)
        }
        self.targets = targets

        // Every tensor of the model in order, each target replaced by what the layout
        // writes for it.
        let byName = Dictionary(targets.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
        items = model.tensors.flatMap { tensor -> [OutputItem] in
            guard let target = byName[tensor.info.name] else { return [OutputItem(copying: tensor)] }
            let info = tensor.info
            let prune = NMPruneTransform(pattern: pattern, dtype: info.dtype, shape: info.shape.map { Int($0) }, input: target.input, norms: target.norms)
            return layout.items(for: target, pruning: prune)
        }
        var config = model.config
        warnings = layout.rewrite(&config, targets: targets, model: model, graph: graph)
        self.config = config
    }

    static func regex(_ pattern: String?, option: String) throws(SparsifyError) -> Regex<AnyRegexOutput>? {
        guard let pattern else { return nil }
        do { return try Regex(pattern) } catch { throw .badRegex(option: option, pattern: pattern, reason: "\(error)") }
    }

    /// The target's activation norms from the statistics file, checked.
    static func norms(for target: SparseTarget, in stats: SafeTensorsFile, path: String) throws(SparsifyError) -> [Float] {
        guard let info = stats.info(target.name + SparsifyRequest.statsSuffix) else {
            throw .statsMissing(path: path, tensor: target.name)
        }
        guard info.dtype == .f32, info.shape == [UInt64(target.inputSize)] else {
            throw .statsMismatch(path: path, tensor: target.name,
                                 problem: "is \(info.dtype.name) \(info.shape), but the weight has \(target.inputSize) input channels: it must be F32 [\(target.inputSize)]")
        }
        let norms = stats.withBytes(of: info) { Array($0.bindMemory(to: Float.self)) }
        if let bad = norms.firstIndex(where: { !$0.isFinite || $0 < 0 }) {
            throw .statsMismatch(path: path, tensor: target.name, problem: "holds \(norms[bad]) at input channel \(bad); norms are finite and not negative")
        }
        return norms
    }

    /// Parameters in the targets.
    public var targetParameters: UInt64 { targets.reduce(0) { $0 + $1.source.info.elementCount } }

    /// Elements set to zero (at least: already-zero weights may be among those kept).
    public var prunedParameters: UInt64 { targetParameters / UInt64(request.pattern.m) * UInt64(request.pattern.m - request.pattern.n) }
}
