import COpenBLAS

/// Thin wrappers over OpenBLAS: row-major single-precision products and the thread count.
public enum BLAS {
    /// `y[n, m] = x[n, k] · Wᵀ` for a weight stored `[m, k]` (nn.Linear), or `x · W` for one
    /// stored `[k, m]` (GPT-2's Conv1D, `transposed`). `ldx`/`ldy` default to dense rows.
    @inline(__always)
    public static func linear(
        _ x: UnsafePointer<Float>, rows n: Int, inputs k: Int, ldx: Int? = nil,
        weight: UnsafePointer<Float>, outputs m: Int, transposed: Bool,
        into y: UnsafeMutablePointer<Float>, ldy: Int? = nil, accumulate: Bool = false
    ) {
        guard n > 0, m > 0, k > 0 else { return }
        cblas_sgemm(
            CblasRowMajor, CblasNoTrans, transposed ? CblasNoTrans : CblasTrans,
            Int32(n), Int32(m), Int32(k), 1, x, Int32(ldx ?? k), weight, Int32(transposed ? m : k),
            accumulate ? 1 : 0, y, Int32(ldy ?? m))
    }

    /// `c[m, n] = alpha · a[m, k] · (transB ? bᵀ : b)` with explicit leading dimensions.
    @inline(__always)
    public static func gemm(
        m: Int, n: Int, k: Int, alpha: Float = 1,
        _ a: UnsafePointer<Float>, lda: Int, _ b: UnsafePointer<Float>, ldb: Int, transB: Bool,
        _ c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        guard m > 0, n > 0, k > 0 else { return }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), 0, c, Int32(ldc))
    }

    /// The name of the kernels OpenBLAS runs ("Haswell", "SkylakeX", ...): its choice for the
    /// CPU, or `OPENBLAS_CORETYPE`'s.
    public static var coreName: String { String(cString: openblas_get_corename()) }

    /// OpenBLAS's worker threads (every core by default).
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set { openblas_set_num_threads(Int32(max(1, newValue))) }
    }
}
