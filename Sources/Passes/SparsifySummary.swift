import Emit
import ModelFolder
import OrderedJSON
import Tensors

/// What a sparsify plan does, for `--dry-run`, `--json` and the provenance record.
public struct SparsifySummary: Sendable {
    public let plan: SparsifyPlan

    public init(_ plan: SparsifyPlan) { self.plan = plan }

    /// Tensor bytes of the output (dense and pare: before compression).
    public var outputTensorBytes: UInt64 { plan.items.reduce(0) { $0 + UInt64($1.entry.byteCount) } }

    public var json: JSONValue {
        let request = plan.request
        var members: [(key: String, value: JSONValue)] = [
            ("pattern", .string(request.pattern.description)),
            ("score", .string(request.score.rawValue)),
            ("format", .string(request.layout.name)),
        ]
        if let stats = request.statsPath { members.append(("stats", .string(stats))) }
        if let targets = request.targets { members.append(("targets_regex", .string(targets))) }
        if let ignore = request.ignore { members.append(("ignore_regex", .string(ignore))) }
        members += [
            ("targets", .array(plan.targets.map { target in
                .object([
                    ("name", .string(target.name)),
                    ("shape", .array(target.source.info.shape.map { .integer($0) })),
                    ("input_dimension", .integer(target.input == .last ? 1 : 0)),
                ])
            })),
            ("target_parameters", .integer(plan.targetParameters)),
            ("parameters", .integer(plan.model.parameterCount)),
            ("pruned_parameters", .integer(plan.prunedParameters)),
            ("tensor_bytes_before", .integer(plan.model.tensorBytes)),
            ("tensor_bytes_after", .integer(outputTensorBytes)),
            ("warnings", .array(plan.warnings.map { .string($0) })),
        ]
        return .object(members)
    }

    public var text: String {
        let request = plan.request
        let model = plan.model
        var lines: [String] = []
        lines.append("sparsify \(model.path): \(request.pattern) by \(request.score.rawValue), \(request.layout.name) output")
        let share = model.parameterCount > 0 ? Double(plan.prunedParameters) / Double(model.parameterCount) : 0
        lines.append("  targets      \(plan.targets.count) of \(model.tensors.count) tensors, \(Count.short(plan.targetParameters)) parameters")
        lines.append("  zeroed       \(Count.short(plan.prunedParameters)) parameters (\(ByteSize.format(share * 100, 1))% of the model)")
        lines.append("  tensor bytes \(ByteSize.describe(model.tensorBytes)) → \(ByteSize.describe(outputTensorBytes))" + (request.layout.weightFormat == .pare ? " before compression" : ""))
        let shown = plan.targets.prefix(12)
        for target in shown {
            let shape = target.source.info.shape.map(String.init).joined(separator: "×")
            lines.append("    \(target.name)  \(target.source.info.dtype.name) \(shape)\(target.input == .first ? "  (Conv1D: groups down the columns)" : "")")
        }
        if plan.targets.count > shown.count { lines.append("    … and \(plan.targets.count - shown.count) more (--json lists them all)") }
        return lines.joined(separator: "\n") + "\n"
    }
}
