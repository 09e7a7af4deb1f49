import Emit
import ModelFolder
import ModelGraph
import Synchronization

/// Chooses kept indices one layer at a time, as the writer reaches each layer, so scoring
/// a layer overlaps with writing the previous one and reads weights the writer is about to
/// read anyway.
///
/// Only selections change between the shape-only plan the output was laid out with and the
/// final one; that holds when no experts are pruned (a pruned expert set would change
/// which tensors are written, and under which names), so experts use the eager planner.
public final class LayerByLayerPlan: SelectionSource {
    private struct State {
        var planner: TrimPlanner
        var plan: TrimPlan
        var planned: Set<Int> = []
    }

    private let graph: ModelGraph
    private let request: TrimRequest
    private let explicit: TrimPlan
    private let layout: TrimmedModel
    private let state: Mutex<State>

    /// Whether a request can be planned layer by layer: not when it prunes an axis that
    /// names tensors (experts: which tensors are written would change), nor one selected
    /// once for the whole model (hidden: every layer's scores are needed first).
    public static func applies(to request: TrimRequest, explicit: TrimPlan) -> Bool {
        let axes = Set(request.sizes.keys).union(explicit.keep.keys.map(\.axis))
        return !axes.contains { $0.namesTensors || $0.scope == .model }
    }

    /// `layout` is the trimmed model built from the shape-only (dry run) plan.
    public init(graph: ModelGraph, request: TrimRequest, explicit: TrimPlan, layout: TrimmedModel, selectionScores: SelectionScores? = nil) {
        self.graph = graph
        self.request = request
        self.explicit = explicit
        self.layout = layout
        var base = layout.plan
        // Width keep lists are filled in per layer; merges and drops are already final.
        base.keep = [:]
        state = Mutex(State(planner: TrimPlanner(graph: graph, selectionScores: selectionScores), plan: base))
    }

    public func selections(forItem index: Int) throws(EmitError) -> [[Int]?]? {
        guard let node = layout.itemNodes[index], let layer = node.layer else { return layout.items[index].selections }
        let plan: TrimPlan
        do {
            plan = try state.withLock { (state: inout State) throws(TrimError) -> TrimPlan in
                try Self.ensure(layer, in: &state, request: request, explicit: explicit)
                return state.plan
            }
        } catch {
            throw .planFailed(reason: error.description)
        }
        let spec = graph.descriptor.tensors[node.template]
        var selections: [[Int]?] = []
        for dimension in spec.shape {
            do {
                selections.append(try TrimmedModel.keptIndices(dimension, node: node, plan: plan, changed: layout.changedAxes, binding: graph.binding, family: graph.descriptor.family))
            } catch {
                throw .planFailed(reason: error.description)
            }
        }
        return selections
    }

    private static func ensure(_ layer: Int, in state: inout State, request: TrimRequest, explicit: TrimPlan) throws(TrimError) {
        guard !state.planned.contains(layer) else { return }
        let part = try state.planner.plan(request, explicit: explicit, only: [layer])
        for (key, kept) in part.keep where key.layer == layer { state.plan.keep[key] = kept }
        state.planned.insert(layer)
    }

    /// The complete plan: layers the writer never needed scores for are planned now.
    public func finish() throws(TrimError) -> TrimPlan {
        try state.withLock { (state: inout State) throws(TrimError) -> TrimPlan in
            for layer in 0..<graph.binding.layerCount where !state.plan.removedLayers.contains(layer) {
                try Self.ensure(layer, in: &state, request: request, explicit: explicit)
            }
            return state.plan
        }
    }
}
