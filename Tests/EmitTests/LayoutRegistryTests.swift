import Emit
import ModelFolder
import PareFormat
import Testing
import Tensors

@Suite struct LayoutRegistryTests {
    @Test func namesTheFormatsInTheOrderHelpListsThem() {
        #expect(LayoutRegistry.names == ["dense", "compressed-tensors", "cutlass", "pare"])
        for name in LayoutRegistry.names { #expect(LayoutRegistry.layout(named: name)?.name == name) }
        #expect(LayoutRegistry.layout(named: "Dense") == nil)
        #expect(LayoutRegistry.layouts.filter { $0.weightFormat == .pare }.map(\.name) == ["pare"])
    }

    @Test(arguments: [(NMSparsity.InputDimension.last, PareEncoding.nm(.twoFour)), (.first, .bitmask)])
    func denseAndPareWriteThePrunedWeightUnderItsName(_ input: NMSparsity.InputDimension, _ encoding: PareEncoding) throws {
        let target = LayoutTesting.target(rows: 8, columns: 16, dtype: .bf16, input: input)
        let prune = LayoutTesting.prune(target)
        for layout in [DenseLayout(), PareLayout()] as [any SparseLayout] {
            let items = layout.items(for: target, pruning: prune)
            let item = try #require(items.first)
            #expect(items.count == 1)
            #expect(item.entry.name == target.name && item.entry.dtype == .bf16 && item.entry.shape == [8, 16])
            #expect(item.transform is NMPruneTransform)
            #expect(item.encoding == (layout.weightFormat == .pare ? encoding : nil))
            #expect(throws: Never.self) { try layout.check(target) }
            #expect(throws: Never.self) { try layout.check(NMPacking.Pattern(n: 4, m: 8)!) }
        }
    }
}
