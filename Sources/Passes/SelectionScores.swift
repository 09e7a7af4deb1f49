import ModelGraph
import OrderedJSON
import Synchronization

/// Scores a trim ranks structures by instead of weight magnitude, axis by axis; `nil` for
/// an axis leaves it to magnitude. The planner asks once per keep list it chooses.
public protocol SelectionScores: Sendable {
    /// Scores of every index of `axis` in `layer` (original numbering; nil for the whole
    /// model), inside index `within` of the axis it is chosen in; higher stays.
    func scores(_ axis: Axis, layer: Int?, within: Int?) throws(TrimError) -> [Double]?
}

/// Calibration statistics as selection scores (Minitron's activation importance, and for
/// experts their output norms or routing counts), remembering every score it served so the
/// trim can record them.
public final class ActivationScores: SelectionScores {
    public let statistics: CalibrationStatistics
    public let criteria: TrimCriteria
    /// NAEE's chosen experts per MoE layer, and how each choice is recorded.
    public let expertSubsets: [Int: (kept: [Int], record: JSONValue)]
    private let binding: AxisBinding
    private let served = Mutex<[TrimPlan.Key: (statistic: String, scores: [Double])]>([:])

    public init(statistics: CalibrationStatistics, criteria: TrimCriteria, binding: AxisBinding,
                expertSubsets: [Int: (kept: [Int], record: JSONValue)] = [:]) {
        self.statistics = statistics
        self.criteria = criteria
        self.binding = binding
        self.expertSubsets = expertSubsets
    }

    public func scores(_ axis: Axis, layer: Int?, within: Int?) throws(TrimError) -> [Double]? {
        let size = binding.size(axis) ?? 0
        let name: String
        var values: [Double]
        switch axis {
        case .experts:
            guard let layer else { return nil }
            switch criteria.experts {
            case .activation?: name = StatisticName.expertOutputNorm(layer: layer)
            case .frequency?: name = StatisticName.routerTokens(layer: layer)
            case .reconstruction?:
                guard let subset = expertSubsets[layer] else {
                    throw .criterion(name: "reconstruction", problem: "has no expert-subset search for layer \(layer); it runs with --calibrate --tokens FILE and --experts N")
                }
                // The search's set ranks first; the planner keeps exactly those.
                return (0..<size).map { subset.kept.contains($0) ? 1 : 0 }
            default: return nil
            }
            values = try statistics.vector(name, count: size)
        case .kvHeads, .group:
            guard criteria.width == .activation, let layer, let group = binding.size(.group), let heads = binding.size(.heads) else { return nil }
            name = StatisticName.heads(layer: layer)
            let perHead = try statistics.vector(name, count: heads)
            if axis == .kvHeads {
                // A kv group scores the sum of its query heads.
                values = (0..<size).map { w in perHead[w * group..<(w + 1) * group].reduce(0, +) }
            } else {
                guard let w = within else { return nil }
                values = Array(perHead[w * group..<(w + 1) * group])
            }
        case .ffn, .expertFFN, .sharedExpertFFN, .hidden:
            guard criteria.width == .activation else { return nil }
            switch axis {
            case .ffn: name = StatisticName.mlpChannels(layer: layer ?? 0)
            case .sharedExpertFFN: name = StatisticName.sharedExpertChannels(layer: layer ?? 0)
            case .expertFFN: name = StatisticName.expertChannels(layer: layer ?? 0, expert: within ?? 0)
            default: name = StatisticName.hidden
            }
            values = try statistics.vector(name, count: size)
        default:
            return nil
        }
        served.withLock { $0[TrimPlan.Key(axis, layer: layer, within: within)] = (name, values) }
        return values
    }

    /// The expert-subset searches, by layer.
    public var subsetRecord: JSONValue? {
        expertSubsets.isEmpty ? nil : .array(expertSubsets.keys.sorted().map { expertSubsets[$0]!.record })
    }

    /// Every score served, keyed as the plan's keep lists are.
    public var record: JSONValue {
        let entries = served.withLock { $0 }.sorted { $0.key < $1.key }
        return .array(entries.map { key, value in
            var members: [(key: String, value: JSONValue)] = [("axis", .string(key.axis.rawValue))]
            if let layer = key.layer { members.append(("layer", .integer(layer))) }
            if let within = key.within { members.append(("within", .integer(within))) }
            members.append(("statistic", .string(value.statistic)))
            members.append(("scores", .array(value.scores.map { .double($0) })))
            return .object(members)
        })
    }
}
