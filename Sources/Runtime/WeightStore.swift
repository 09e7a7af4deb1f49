import ModelFolder
import ModelGraph
import Tensors

/// Casts checkpoint tensors to f32 into reused buffers, one slot per use.
///
/// A slot ("attention.query", "expert.down") keeps its buffer from layer to layer, so the
/// weights resident at any time are one layer's (plus the head's), whatever the model's
/// depth. Bytes come from the mapped safetensors file, or are decoded from `.pare`.
final class WeightStore {
    let plan: ForwardPlan
    private var slots: [String: FloatBuffer] = [:]

    init(plan: ForwardPlan) { self.plan = plan }

    /// Loads `node` into `slot` and returns its values.
    func load(_ node: ModelGraph.Node, slot: String) throws(RuntimeError) -> UnsafeMutablePointer<Float> {
        let info = node.source.info
        guard info.dtype.isCastable else { throw .tensorDType(name: info.name, dtype: info.dtype.rawValue) }
        let count = Int(info.elementCount)
        let buffer = slots[slot] ?? { let b = FloatBuffer(); slots[slot] = b; return b }()
        let destination = buffer.reserve(count)
        let sources = plan.mergeSources(of: node)
        if !sources.isEmpty {
            // A collapsed layer: the merge rounded to the checkpoint's dtype, as a trim
            // writes it, so what is measured is what would be written.
            let bytes: [UInt8]
            do { bytes = try plan.graph.model.mergedBytes(base: node.source, others: sources.map(\.source)) } catch {
                throw .tensorUnreadable(name: info.name, problem: error.description)
            }
            bytes.withUnsafeBytes { FloatConversion.convertInParallel(count: count, from: info.dtype, $0.baseAddress!, to: .f32, destination) }
            return destination
        }
        // Piece by piece, so the mapped pages are released as soon as they are cast: the
        // resident set holds the f32 copy, not the checkpoint.
        let elementBytes = info.dtype.bitWidth / 8
        var done = 0
        try plan.graph.model.shards[node.source.shard].forEachPiece(
            of: info, pieceBytes: 8 << 20, mapError: { RuntimeError.tensorUnreadable(name: info.name, problem: $0.description) }
        ) { piece throws(RuntimeError) in
            guard let source = piece.baseAddress, piece.count > 0 else { return }
            let n = piece.count / elementBytes
            guard n * elementBytes == piece.count, done + n <= count else {
                throw .tensorUnreadable(name: info.name, problem: "it was read in pieces that split an element")
            }
            FloatConversion.convertInParallel(count: n, from: info.dtype, source, to: .f32, destination + done)
            done += n
        }
        guard done == count else { throw .tensorUnreadable(name: info.name, problem: "\(done) of \(count) values were read") }
        return destination
    }

    /// Loads the tensor of `role` in `layer`, or nil when the checkpoint has none.
    func load(_ role: Role, layer: Int?, expert: Int? = nil, slot: String? = nil) throws(RuntimeError) -> Weight? {
        guard let node = plan.node(role, layer: layer, expert: expert) else { return nil }
        return Weight(values: try load(node, slot: slot ?? role.rawValue), node: node, transposed: plan.isTransposed(node))
    }

    /// Loads the tensor of `role` in `layer`, which the model needs.
    func require(_ role: Role, layer: Int?, expert: Int? = nil, slot: String? = nil) throws(RuntimeError) -> Weight {
        guard let weight = try load(role, layer: layer, expert: expert, slot: slot) else {
            let name = layer.map { "\(role.rawValue) of layer \($0)" } ?? role.rawValue
            throw .tensorMissing(name: expert.map { "\(name), expert \($0)" } ?? name)
        }
        return weight
    }

    /// A norm module's weight and bias in `layer`.
    func load(_ module: ComputeSpec.NormModule, layer: Int?, slot: String) throws(RuntimeError) -> NormWeights {
        guard let w = plan.node(template: module.weight, layer: layer) else { throw .tensorMissing(name: module.module + ".weight") }
        let weight = try load(w, slot: slot + ".weight")
        var bias: UnsafeMutablePointer<Float>?
        if let b = module.bias, let node = plan.node(template: b, layer: layer) { bias = try load(node, slot: slot + ".bias") }
        return NormWeights(weight: weight, bias: bias)
    }

    /// Bytes of every slot: the weights' share of peak memory.
    var residentBytes: Int { slots.values.reduce(0) { $0 + $1.bytes } }

    /// Releases every slot's buffer (the layers', before the head is loaded).
    func releaseAll() { slots.removeAll() }
}

/// A loaded weight and how it is stored.
struct Weight {
    let values: UnsafeMutablePointer<Float>
    let node: ModelGraph.Node
    let transposed: Bool
    var name: String { node.name }
    /// Rows of the product (outputs).
    var outputs: Int { Int(transposed ? node.source.info.shape.last! : node.source.info.shape.first!) }
    var inputs: Int { Int(transposed ? node.source.info.shape.first! : node.source.info.shape.last!) }
}

struct NormWeights {
    let weight: UnsafeMutablePointer<Float>
    let bias: UnsafeMutablePointer<Float>?
}
