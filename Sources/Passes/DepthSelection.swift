import ModelGraph
import OrderedJSON

/// `--drop-layers auto:N`: which N layers go, by ShortGPT's block influence (the layers
/// that change the hidden state least), or simply the last N before the final layer.
public enum DepthSelection {
    /// The layers to drop (ascending, original numbering) and a record of how they were
    /// chosen. Layers in `excluded` (already dropped or merged) are not candidates.
    public static func choose(
        _ count: Int, criterion: TrimCriteria.Criterion?, statistics: CalibrationStatistics?, layers: Int, excluded: Set<Int>
    ) throws(TrimError) -> (layers: [Int], record: JSONValue) {
        let candidates = (0..<layers).filter { !excluded.contains($0) }
        switch criterion {
        case .bi?:
            guard let statistics else {
                throw .criterion(name: "bi", problem: "ranks layers by block influence from calibration statistics: give --stats FILE or --calibrate --tokens FILE, or use --score last")
            }
            guard count < candidates.count else { throw .countOutOfRange(what: "layers to drop", requested: count, available: candidates.count - 1) }
            var influence: [Int: Double] = [:]
            for layer in candidates { influence[layer] = try statistics.vector(StatisticName.blockInfluence(layer: layer), count: 1)[0] }
            let order = candidates.sorted { influence[$0]! != influence[$1]! ? influence[$0]! < influence[$1]! : $0 < $1 }
            let chosen = Array(order.prefix(count)).sorted()
            return (chosen, .object([
                ("criterion", .string("bi")), ("dropped", .array(chosen.map { .integer($0) })),
                ("block_influence", .object(candidates.map { (String($0), .double(influence[$0]!)) })),
            ]))
        case .last?:
            // The final layer stays: ShortGPT and later work find it among the most important.
            let before = candidates.filter { $0 != layers - 1 }
            guard count <= before.count else { throw .countOutOfRange(what: "layers to drop before the final one", requested: count, available: before.count) }
            let chosen = Array(before.suffix(count))
            return (chosen, .object([("criterion", .string("last")), ("dropped", .array(chosen.map { .integer($0) }))]))
        default:
            throw .criterion(name: criterion?.rawValue ?? "", problem: "cannot choose layers to drop; --drop-layers auto:N takes --score bi (with statistics) or --score last")
        }
    }
}
