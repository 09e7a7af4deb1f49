import Tensors

/// Where the writer streams one output file's tensor bytes, whatever the format.
protocol TensorSink: AnyObject {
    func write(_ bytes: UnsafeRawBufferPointer) throws(EmitError)
    /// Appends `count` bytes of `mapping` from `offset` (in the kernel where it can).
    func copy(from mapping: MappedFile, at offset: Int, count: Int) throws(EmitError)
    /// Lets `body` produce the next `count` bytes (at most `OutputFile.maximumSpace`) in
    /// place where the format allows it.
    func withSpace(_ count: Int, _ body: (UnsafeMutableRawPointer) -> Void) throws(EmitError)
    func finish(sync: Bool) throws(EmitError)
}
