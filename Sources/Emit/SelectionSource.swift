/// Supplies an item's kept indices when the writer reaches it, for plans that are finished
/// layer by layer while the output is written (scores computed just in time).
public protocol SelectionSource: AnyObject, Sendable {
    /// The selections of item `index` (its position in the writer's item list).
    func selections(forItem index: Int) throws(EmitError) -> [[Int]?]?
}
