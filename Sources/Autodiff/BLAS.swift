import CBLAS

/// The only door to the C BLAS library (OpenBLAS).
///
/// OpenBLAS's level-3 threads split the output matrix, never the inner dimension, so a GEMM gives
/// the same bits on every run with the same thread count.
public enum BLAS {
    /// Row-major `C = alpha * op(A) * op(B) + beta * C` with `op(A)` [m, k], `op(B)` [k, n].
    @inline(__always)
    public static func gemm(
        transA: Bool, transB: Bool, m: Int, n: Int, k: Int,
        alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
        b: UnsafePointer<Float>, ldb: Int,
        beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int
    ) {
        guard m > 0, n > 0 else { return }
        _ = kernelSelection
        if k == 0 {
            // An empty product: C = beta * C, and with beta 0, C is set without being read
            // (it may be uninitialized).
            for i in 0..<m { for j in 0..<n { c[i * ldc + j] = beta == 0 ? 0 : beta * c[i * ldc + j] } }
            return
        }
        if n == 1 {
            // A matrix times a vector (a convolution of one image on a 1x1 map): sgemv streams A
            // once, where sgemm would first copy all of it into its packed layout. (C is zeroed
            // first for beta 0: sgemv scales it by beta, and 0 * NaN left in an unwritten buffer
            // is NaN.)
            if beta == 0 { for i in 0..<m { c[i * ldc] = 0 } }
            cblas_sgemv(CblasRowMajor, transA ? CblasTrans : CblasNoTrans, Int32(transA ? k : m), Int32(transA ? m : k),
                        alpha, a, Int32(lda), b, Int32(transB ? 1 : ldb), beta, c, Int32(ldc))
            return
        }
        if m == 1 {
            // A row vector times a matrix (a linear layer on one image): C^T = op(B)^T a^T.
            if beta == 0 { c.update(repeating: 0, count: n) }
            cblas_sgemv(CblasRowMajor, transB ? CblasNoTrans : CblasTrans, Int32(transB ? n : k), Int32(transB ? k : n),
                        alpha, b, Int32(ldb), a, Int32(transA ? lda : 1), beta, c, 1)
            return
        }
        cblas_sgemm(CblasRowMajor,
                    transA ? CblasTrans : CblasNoTrans, transB ? CblasTrans : CblasNoTrans,
                    Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb),
                    beta, c, Int32(ldc))
    }

    /// The kernel family chosen for a CPU this OpenBLAS release does not know, or nil when
    /// OpenBLAS's own choice stood. Evaluated once, before the first BLAS call: DYNAMIC_ARCH builds
    /// older than the CPU fall back to SSE3 ("Prescott") kernels, a several-fold loss on AVX-512
    /// machines, and this selects the kernels `OPENBLAS_CORETYPE` would (an explicit
    /// `OPENBLAS_CORETYPE` is always respected).
    public static let kernelSelection: String? = neuralscale_openblas_select_core().map { String(cString: $0) }

    /// The kernel family OpenBLAS runs (`openblas_get_corename`), e.g. "SkylakeX" or "Haswell".
    public static var core: String {
        _ = kernelSelection
        return openblas_get_corename().map { String(cString: $0) } ?? "unknown"
    }

    /// Makes OpenBLAS compute on the calling thread only. The kernels parallelize GEMMs
    /// themselves (see `GEMMConv`); OpenBLAS's idle threads would otherwise spin in
    /// `sched_yield` between GEMMs and take the cores from the other phases. Its pool, started
    /// when the library loads and spinning for its first 0.1 s or so even with one thread set,
    /// is ended too: a short process (an inference benchmark's trial, a few ms of runs) ran
    /// inside that spin, the engine's two threads sharing the cores with it (`perf sched` of a
    /// slow trial: the pool's thread 83 ms on the CPUs in a 0.35 s process, the main thread
    /// preempted 105 times against 9 in a fast trial).
    public static func useCallerThreadsOnly() {
        if !callerThreadsOnly {
            _ = kernelSelection
            openblas_set_num_threads(1)
            neuralscale_openblas_stop_threads()
            callerThreadsOnly = true
        }
    }
    nonisolated(unsafe) private static var callerThreadsOnly = false

    /// OpenBLAS's build: version, target core and thread model (`openblas_get_config`).
    public static var configuration: String {
        _ = kernelSelection
        return openblas_get_config().map { String(cString: $0) } ?? "unknown"
    }

    /// The number of threads OpenBLAS uses for level-3 calls.
    public static var threads: Int {
        get { Int(openblas_get_num_threads()) }
        set {
            _ = kernelSelection
            openblas_set_num_threads(Int32(newValue))
            callerThreadsOnly = newValue == 1
        }
    }
}
