import ModelFolder
import ModelGraph
import Tensors

/// One weight that gets N:M sparsity: the tensor, the dimension its groups run along, and
/// what scores its elements.
public struct SparseTarget: Sendable {
    public var source: ModelFolder.Tensor
    public var input: NMSparsity.InputDimension
    /// Wanda's per-input-channel activation norms; `nil` scores by magnitude.
    public var norms: [Float]?
    /// The descriptor's role for the tensor, if the model's family is known.
    public var role: Role?

    public init(source: ModelFolder.Tensor, input: NMSparsity.InputDimension, norms: [Float]? = nil, role: Role? = nil) {
        self.source = source
        self.input = input
        self.norms = norms
        self.role = role
    }

    public var name: String { source.info.name }
    /// Elements along the input dimension.
    public var inputSize: Int { Int(input == .last ? source.info.shape[1] : source.info.shape[0]) }

}
