import ModelFolder
import ModelGraph
import OrderedJSON
import Testing
import TestSupport

@testable import Passes

@Suite struct RecipeTests {
    @Test func readsYAMLWithFlagsNamesAndKeepLists() throws {
        let recipe = try Recipe.parse("""
            # a committed trim
            drop_layers: "3,20-22"
            merge_layers: [[5, 6]]
            merge_norms: merge
            kv_heads: 4
            ffn: 0.75
            expert_ffn: 512
            experts: 6
            plan:
              attention:
                "0": {kv_heads: [1, 2], query_heads: [[0], [1]]}
              ffn: {"1": [0, 4, 9]}
            """, source: "r.yaml")
        #expect(recipe.request.dropLayers == [3, 20, 21, 22])
        #expect(recipe.request.merges == [[5, 6]])
        #expect(recipe.request.mergeNorms == .merge)
        #expect(recipe.request.count(.kvHeads) == 4)
        #expect(recipe.request.sizes[.ffn] == .ratio(0.75))
        #expect(recipe.request.sizes[.expertFFN] == .count(512))
        #expect(recipe.request.count(.experts) == 6)
        #expect(recipe.plan.attention[0] == .init(kvHeads: [1, 2], queryHeads: [[0], [1]]))
        #expect(recipe.plan.ffn[1] == [0, 4, 9])
    }

    @Test func readsJSONToo() throws {
        let recipe = try Recipe.parse(#"{"drop_layers": [1, 2], "heads": 8}"#, source: "r.json")
        #expect(recipe.request.dropLayers == [1, 2])
        #expect(recipe.request.count(.heads) == 8)
    }

    @Test(arguments: [
        ("ffn: lots", "'ffn'"),
        ("kv_heads: -1", "'kv_heads'"),
        ("drop_layer: [1]", "unknown key"),
        ("plan: {ffn: {x: [1]}}", "plan.ffn"),
        ("merge_layers: \"4-2\"", "'merge_layers'"),
        ("- 1\n- 2", "(top level)"),
    ])
    func refusesBadRecipesNamingTheKey(_ text: String, _ mention: String) {
        #expect {
            try Recipe.parse(text, source: "bad.yaml")
        } throws: { error in
            "\(error)".contains("bad.yaml") && "\(error)".contains(mention) && "\(error)".hasSuffix("[rule: recipe]")
        }
    }

    @Test func aPlanRoundTripsThroughItsJSON() throws {
        var plan = TrimPlan()
        plan.dropLayers = [2]
        plan.merges = [.init(layers: [0, 1], norms: .first)]
        plan.attention = [3: .init(kvHeads: [0], queryHeads: [[1, 2]])]
        plan.ffn = [3: [1, 2, 3]]
        plan.expertFFN = [3: [0: [4, 5], 2: [1, 7]]]
        plan.experts = [3: [0, 2]]
        plan.sharedExpertFFN = [3: [9]]
        let back = try TrimPlan(json: try JSONParser.parse(plan.json.serialized()), source: "p")
        #expect(back == plan)
    }

    @Test func explicitKeepListsWinOverScoringAndAreChecked() throws {
        let graph = try ModelGraph(model: try ModelFolder(path: Fixtures.model("llama-gqa-f32")))
        var explicit = TrimPlan()
        explicit.ffn = [0: Array(0..<48), 1: Array(48..<96)]
        var planner = TrimPlanner(graph: graph)
        let plan = try planner.plan(TrimRequest(), explicit: explicit)
        #expect(plan.ffn == explicit.ffn)
        for bad in [[5, 3], [], [200]] {
            var wrong = TrimPlan()
            wrong.ffn = [0: bad, 1: Array(0..<bad.count)]
            #expect {
                var p = TrimPlanner(graph: graph)
                _ = try p.plan(TrimRequest(), explicit: wrong)
            } throws: { error in
                (error as? TrimError)?.rule == "bad-keep-list"
            }
        }
        // Different counts per layer are refused when the output is built.
        var uneven = TrimPlan()
        uneven.ffn = [0: Array(0..<48), 1: Array(0..<40)]
        var p = TrimPlanner(graph: graph)
        let unevenPlan = try p.plan(TrimRequest(), explicit: uneven)
        #expect(throws: TrimError.self) {
            _ = try TrimmedModel(graph: graph, plan: unevenPlan)
        }
    }
}
