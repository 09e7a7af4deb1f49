import ModelFolder
import ModelGraph
import Testing
import TestSupport
@testable import Passes

/// Statistics made up for a model: every name a selection reads, with chosen values.
private func statistics(_ values: [String: [Float]], model: String = "test") -> CalibrationStatistics {
    CalibrationStatistics(source: model, fileSHA256: nil, metadata: [("tokens", "10")], values: values)
}

@Suite struct TrimCriteriaTests {
    @Test func eachCriterionGoesToTheChoiceItMakes() throws {
        let c = try TrimCriteria(parsing: "activation,bi")
        #expect(c.width == .activation && c.depth == .bi && c.experts == .activation)
        let f = try TrimCriteria(parsing: "magnitude,frequency")
        #expect(f.width == .magnitude && f.experts == .frequency && f.depth == nil)
        #expect(try TrimCriteria(parsing: "reconstruction").experts == .reconstruction)
        #expect(TrimCriteria().resolved(hasStatistics: true) == TrimCriteria(width: .activation, depth: .bi, experts: .activation))
        #expect(TrimCriteria().resolved(hasStatistics: false) == TrimCriteria(width: .magnitude, depth: nil, experts: .magnitude))
        #expect(!TrimCriteria(width: .magnitude, depth: .last, experts: .magnitude).needsStatistics)
        #expect(TrimCriteria(width: .magnitude, depth: .bi).needsStatistics)
    }

    @Test(arguments: ["magnitude,activation", "bi,last", "frequency,reconstruction", "wanda", ""])
    func conflictsAndUnknownWordsAreRefused(_ text: String) {
        if text.isEmpty {
            #expect((try? TrimCriteria(parsing: text)) == TrimCriteria())
        } else {
            #expect(throws: TrimError.self) { try TrimCriteria(parsing: text) }
        }
    }
}

@Suite struct DepthSelectionTests {
    @Test func blockInfluenceDropsTheLayersThatChangeLeast() throws {
        let s = statistics((0..<6).reduce(into: [:]) { $0[StatisticName.blockInfluence(layer: $1)] = [[0.5, 0.1, 0.3, 0.05, 0.2, 0.9][$1]] })
        #expect(try DepthSelection.choose(2, criterion: .bi, statistics: s, layers: 6, excluded: []).layers == [1, 3])
        // Layers already dropped or merged are not candidates.
        #expect(try DepthSelection.choose(2, criterion: .bi, statistics: s, layers: 6, excluded: [3]).layers == [1, 4])
        #expect(throws: TrimError.self) { try DepthSelection.choose(6, criterion: .bi, statistics: s, layers: 6, excluded: []) }
        #expect(throws: TrimError.self) { try DepthSelection.choose(1, criterion: .bi, statistics: nil, layers: 6, excluded: []) }
    }

    @Test func lastDropsTheLayersBeforeTheFinalOne() throws {
        #expect(try DepthSelection.choose(2, criterion: .last, statistics: nil, layers: 6, excluded: []).layers == [3, 4])
        #expect(try DepthSelection.choose(2, criterion: .last, statistics: nil, layers: 6, excluded: [4]).layers == [2, 3])
    }
}

@Suite struct ActivationSelectionTests {
    /// GQA: a kv group scores the sum of its query heads, and query heads are ranked within
    /// their group; FFN channels and hidden channels by their own statistics.
    @Test func activationScoresChooseWhatTheStatisticsRankHighest() throws {
        let graph = try ModelGraph(model: try ModelFolder(path: Fixtures.model("llama-gqa-f32")))
        let b = graph.binding
        let heads = b.size(.heads)!, kv = b.size(.kvHeads)!, group = b.size(.group)!, ffn = b.size(.ffn)!, hidden = b.size(.hidden)!
        #expect(kv >= 2 && group >= 2)
        var values: [String: [Float]] = [:]
        for l in 0..<b.layerCount {
            // The last kv group's first head is the strongest single head, but the first
            // group is the strongest group.
            var h = [Float](repeating: 1, count: heads)
            for g in 0..<group { h[g] = 3 }
            h[1] = 3.5
            h[(kv - 1) * group] = 4
            values[StatisticName.heads(layer: l)] = h
            values[StatisticName.mlpChannels(layer: l)] = (0..<ffn).map { Float(($0 * 7 + l) % ffn) }
        }
        values[StatisticName.hidden] = (0..<hidden).map { Float(hidden - $0) }
        let scores = ActivationScores(statistics: statistics(values), criteria: TrimCriteria(width: .activation, experts: .activation), binding: b)
        var request = TrimRequest()
        request.sizes[.kvHeads] = .count(1)
        request.sizes[.heads] = .count(1)
        request.sizes[.ffn] = .count(4)
        request.sizes[.hidden] = .count(hidden / 2)
        var planner = TrimPlanner(graph: graph, selectionScores: scores)
        let plan = try planner.plan(request)
        for l in 0..<b.layerCount {
            #expect(plan.kept(.kvHeads, layer: l) == [0])
            #expect(plan.kept(.group, layer: l, within: 0) == [1])
            let channels = values[StatisticName.mlpChannels(layer: l)]!
            let top = channels.indices.sorted { channels[$0] > channels[$1] }.prefix(4).sorted()
            #expect(plan.kept(.ffn, layer: l) == Array(top))
        }
        #expect(plan.kept(.hidden, layer: nil) == Array(0..<hidden / 2))
        // Every served score is recorded.
        guard case .array(let served) = scores.record else { Issue.record("no record"); return }
        #expect(served.count == b.layerCount * 3 + 1)
    }

    @Test func aStatisticOfTheWrongShapeIsRefusedByName() throws {
        let graph = try ModelGraph(model: try ModelFolder(path: Fixtures.model("llama-gqa-f32")))
        let scores = ActivationScores(statistics: statistics([StatisticName.mlpChannels(layer: 0): [1, 2, 3]]),
                                      criteria: TrimCriteria(width: .activation), binding: graph.binding)
        var request = TrimRequest()
        request.sizes[.ffn] = .count(2)
        var planner = TrimPlanner(graph: graph, selectionScores: scores)
        #expect {
            try planner.plan(request)
        } throws: { error in
            "\(error)".contains("layers.0.mlp.channels") && "\(error)".contains("another shape")
        }
    }
}
