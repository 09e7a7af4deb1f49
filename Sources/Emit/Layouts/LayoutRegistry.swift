/// The layouts `pare sparsify --format` offers, by name.
public enum LayoutRegistry {
    /// Every layout, in the order help and messages list them.
    public static let layouts: [any SparseLayout] = [
        DenseLayout(),
        CompressedTensorsLayout(),
        CutlassLayout(),
        PareLayout(),
    ]

    /// The `--format` names.
    public static var names: [String] { layouts.map(\.name) }

    /// The layout called `name`, if there is one.
    public static func layout(named name: String) -> (any SparseLayout)? {
        layouts.first { $0.name == name }
    }
}
