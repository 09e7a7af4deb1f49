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
    /// One weight that gets N:M sparsity.
    public struct Target: Sendable {
        public var source: ModelFolder.Tensor
        public var input: NMSparsity.InputDimension
        public var norms: [Float]?
        /// The descriptor's role for the tensor, if the model's family is known.
        public var role: String? = nil

        public var name: String { source.info.name }
        /// Elements along the input dimension.
        public var inputSize: Int { Int(input == .last ? source.info.shape[1] : source.info.shape[0]) }
    }

    public let request: SparsifyRequest
    public let model: ModelFolder
    public let targets: [Target]
    public let items: [OutputItem]
    public let config: ModelConfig?
    /// Facts the user should know about the output (one sentence each).
    public let warnings: [String]

    public init(model: ModelFolder, request: SparsifyRequest, registry: DescriptorRegistry = .builtin) throws(SparsifyError) {
        self.model = model
        self.request = request
        let pattern = request.pattern
        if request.score == .wanda, request.statsPath == nil { throw .statsNeeded }
        if request.score != .wanda, request.statsPath != nil { throw .statsUnused }
        if request.format == .compressedTensors || request.format == .cutlass, !pattern.fitsTwoFour {
            throw .formatNeedsPattern(format: request.format.rawValue, pattern: pattern.description, needed: "2:4")
        }
        let targetsRegex = try Self.regex(request.targets, option: "--targets")
        let ignoreRegex = try Self.regex(request.ignore, option: "--ignore")

        // Candidates: the descriptor's linear weights, or any 2-D float tensor --targets names.
        var candidates: [(tensor: ModelFolder.Tensor, input: NMSparsity.InputDimension, role: String?)] = []
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
                guard let role = spec?.role, SparsifyRequest.defaultRoles.contains(role) else { continue }
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
        var targets: [Target] = []
        for (tensor, input, role) in candidates {
            var target = Target(source: tensor, input: input, norms: nil, role: role)
            let name = target.name
            let dtype = tensor.info.dtype
            guard dtype.isCastable else {
                throw .unsupportedDType(tensor: name, dtype: dtype.name, format: request.format.rawValue, fix: "only F32, F16 and BF16 weights can be sparsified")
            }
            guard target.inputSize % pattern.m == 0 else { throw .notGroupable(tensor: name, inputSize: target.inputSize, m: pattern.m) }
            try Self.checkLayout(target, format: request.format)
            if let stats, let path = request.statsPath {
                target.norms = try Self.norms(for: target, in: stats, path: path)
            }
            targets.append(target)
        }
        self.targets = targets

        var config = model.config
        var warnings: [String] = []
        let layout = SparseLayout(request: request)
        items = layout.items(model: model, targets: targets)
        layout.rewrite(&config, model: model, graph: graph, targets: targets, warnings: &warnings)
        self.config = config
        self.warnings = warnings
    }

    static func regex(_ pattern: String?, option: String) throws(SparsifyError) -> Regex<AnyRegexOutput>? {
        guard let pattern else { return nil }
        do { return try Regex(pattern) } catch { throw .badRegex(option: option, pattern: pattern, reason: "\(error)") }
    }

    /// Refuses targets the chosen layout cannot hold.
    private static func checkLayout(_ target: Target, format: SparsifyRequest.Format) throws(SparsifyError) {
        let name = target.name
        switch format {
        case .dense, .pare:
            return
        case .compressedTensors, .cutlass:
            guard target.input == .last else { throw .transposedUnsupported(tensor: name, format: format.rawValue) }
            if format == .compressedTensors, !(target.role.map(CompressedTensorsLayout.linearRoles.contains) ?? false) {
                throw .shapeUnsupported(tensor: name, shape: target.source.info.shape, format: format.rawValue,
                                        reason: "compressed-tensors decompresses nn.Linear modules only, and the architecture descriptor does not name this tensor a linear weight")
            }
            if format == .cutlass {
                let dtype = target.source.info.dtype
                guard dtype == .f16 || dtype == .bf16 else {
                    throw .unsupportedDType(tensor: name, dtype: dtype.name, format: format.rawValue,
                                            fix: "CUTLASS 2:4 kernels take F16 or BF16; convert first with pare convert --dtype bf16")
                }
                let shape = target.source.info.shape
                if let reason = CutlassLayout.unsupportedShape(rows: Int(shape[0]), columns: Int(shape[1])) {
                    throw .shapeUnsupported(tensor: name, shape: shape, format: format.rawValue, reason: reason)
                }
            }
        }
    }

    /// The target's activation norms from the statistics file, checked.
    static func norms(for target: Target, in stats: SafeTensorsFile, path: String) throws(SparsifyError) -> [Float] {
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
