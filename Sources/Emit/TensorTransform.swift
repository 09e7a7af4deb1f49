/// Computes an output tensor from its source tensor's bytes, a block of rows at a time, so
/// that a pass (N:M sparsity, a packed layout) streams like a copy.
///
/// Output rows follow input rows: input rows `r` give `entryBytes · r.count / rows` output
/// bytes. A transform whose output is not laid out by rows asks for all rows at once.
public protocol TensorTransform: Sendable {
    /// Input rows transformed together (a step is a multiple of it); 0 for all at once.
    var rowBlock: Int { get }
    /// Writes the output bytes of input rows `rows` into `output`. `source` is the whole
    /// source tensor.
    func apply(source: UnsafeRawBufferPointer, rows: Range<Int>, into output: UnsafeMutableRawPointer)
}
