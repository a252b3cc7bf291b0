/// Matrix products on BLAS: `matmul` and the fully connected `linear`.

/// `a @ b`.
/// - Parameters:
///   - a: [M, K]
///   - b: [K, N]
/// - Returns: [M, N]
public func matmul(_ a: Tensor, _ b: Tensor) -> Tensor {
    validated {
        try require(a.shape.count == 2 && b.shape.count == 2 && a.shape[1] == b.shape[0], "matmul",
                    "cannot multiply \(a.shape) by \(b.shape): expected [M, K] and [K, N]")
    }
    let m = a.shape[0], k = a.shape[1], n = b.shape[1]
    let out = Tensor(uninitialized: [m, n])
    BLAS.gemm(transA: false, transB: false, m: m, n: n, k: k, a: a.data, lda: k, b: b.data, ldb: n,
              beta: 0, c: out.data, ldc: n)
    Trace.note(.matmul, Operands(a, b), out)
    if Tape.needsRecord(a, b) {
        Tape.record(.matmul, Operands(a, b), out) { d in
            // dA = dOut @ B^T, dB = A^T @ dOut, both added into the existing gradients.
            if a.requiresGrad {
                BLAS.gemm(transA: false, transB: true, m: m, n: k, k: n, a: d.data, lda: n, b: b.data, ldb: n,
                          beta: 1, c: a.gradBuffer().data, ldc: k)
            }
            if b.requiresGrad {
                BLAS.gemm(transA: true, transB: false, m: k, n: n, k: m, a: a.data, lda: k, b: d.data, ldb: n,
                          beta: 1, c: b.gradBuffer().data, ldc: n)
            }
        }
    }
    return out
}

/// The fully connected layer `x @ weight^T + bias`, PyTorch's `nn.Linear`.
/// - Parameters:
///   - x: [N, In]
///   - weight: [Out, In]
///   - bias: [Out], optional
/// - Returns: [N, Out]
public func linear(_ x: Tensor, weight: Tensor, bias: Tensor?) -> Tensor {
    validated {
        try require(x.shape.count == 2 && weight.shape.count == 2 && x.shape[1] == weight.shape[1], "linear",
                    "input \(x.shape) and weight \(weight.shape): expected [N, In] and [Out, In]")
        if let bias {
            try require(bias.shape == [weight.shape[0]], "linear",
                        "bias \(bias.shape) does not match weight \(weight.shape): expected [\(weight.shape[0])]")
        }
    }
    let n = x.shape[0], inF = x.shape[1], outF = weight.shape[0]
    let out = Tensor(uninitialized: [n, outF])
    let po = out.data
    if let bias {
        let pb = bias.data
        for i in 0..<n { (po + i * outF).update(from: pb, count: outF) }
    }
    BLAS.gemm(transA: false, transB: true, m: n, n: outF, k: inF, a: x.data, lda: inF, b: weight.data, ldb: inF,
              beta: bias == nil ? 0 : 1, c: po, ldc: outF)
    Trace.note(.linear, Operands(x, weight, bias), out)
    if Tape.needsRecord(x, weight, bias) {
        Tape.record(.linear, Operands(x, weight, bias), out) { d in
            let pd = d.data
            if x.requiresGrad {  // dX = dOut @ W
                BLAS.gemm(transA: false, transB: false, m: n, n: inF, k: outF, a: pd, lda: outF,
                          b: weight.data, ldb: inF, beta: 1, c: x.gradBuffer().data, ldc: inF)
            }
            if weight.requiresGrad {  // dW = dOut^T @ X
                BLAS.gemm(transA: true, transB: false, m: outF, n: inF, k: n, a: pd, lda: outF,
                          b: x.data, ldb: inF, beta: 1, c: weight.gradBuffer().data, ldc: inF)
            }
            if let bias, bias.requiresGrad {
                let db = bias.gradBuffer().data
                for o in 0..<outF {
                    var s: Float = 0
                    for i in 0..<n { s += pd[i * outF + o] }
                    db[o] += s
                }
            }
        }
    }
    return out
}
