import Foundation

/// 2-D batch normalization, optionally fused with the activation that follows it.
///
/// Training mode normalizes with the batch statistics and updates the running statistics as
/// PyTorch does: `running = (1 - momentum) * running + momentum * batch`, with the unbiased batch
/// variance. Eval mode normalizes with the running statistics. The forward kernel is one pass over
/// the channel (after the statistics pass); the backward kernel reads the activation's derivative
/// off the saved output, so a fused BN + ReLU costs no extra tensor. A per-channel gate (the
/// search's channel scale) between the normalization and the activation costs nothing either:
/// it folds into the channel's scale and shift, and its gradient comes from the two sums the
/// backward pass takes anyway.

/// Checks batch-norm shapes: `x` is [N, C, ...], every per-channel tensor is [C].
public func validateBatchNorm(input: [Int], weight: [Int], bias: [Int],
                              runningMean: [Int], runningVar: [Int]) throws {
    let op = "batchnorm2d"
    try require(input.count >= 2, op, "input \(input) must be [N, C, ...]")
    let c = input[1]
    for (name, shape) in [("weight", weight), ("bias", bias), ("running_mean", runningMean), ("running_var", runningVar)] {
        try require(shape == [c], op, "\(name) \(shape) does not match input \(input): expected [\(c)]")
    }
}

/// Batch normalization over the channels of `x`, multiplied by `gate` when given, followed by
/// `activation`: `act(gate * bn(x))`, what `channelScale` and the activation would compute after
/// a plain batch norm, in one pass.
/// - Parameters:
///   - x: [N, C, H, W]
///   - weight, bias: [C], the affine parameters (gamma, beta)
///   - runningMean, runningVar: [C] buffers; updated in place when `training`
///   - training: batch statistics (true) or running statistics (false)
///   - gate: [C] per-channel multiplier, or nil; it takes a gradient when it requires one
public func batchNorm2d(_ x: Tensor, weight: Tensor, bias: Tensor,
                        runningMean: Tensor, runningVar: Tensor,
                        training: Bool, momentum: Float = 0.1, eps: Float = 1e-5,
                        activation: Activation = .identity, gate: Tensor? = nil) -> Tensor {
    validated {
        try validateBatchNorm(input: x.shape, weight: weight.shape, bias: bias.shape,
                              runningMean: runningMean.shape, runningVar: runningVar.shape)
        if let gate {
            try require(gate.shape == [x.shape[1]], "batchnorm2d", "gate \(gate.shape) does not match input \(x.shape): expected [\(x.shape[1])]")
        }
        if training {
            try require(x.count / x.shape[1] > 1, "batchnorm2d",
                        "input \(x.shape) has one value per channel; training needs more than one")
        }
    }
    let n = x.shape[0], c = x.shape[1], inner = x.count / max(n * c, 1)
    let out = Tensor(uninitialized: x.shape)
    // Per channel: the mean used and 1/sqrt(var + eps), saved for backward.
    let stats = Tensor(uninitialized: [2, c])
    let kernel = BatchNormKernel(n: n, c: c, inner: inner, training: training, x: x.data, y: out.data,
                                 gamma: weight.data, gate: gate?.data, mean: stats.data, invStd: stats.data + c)
    Parallel.forEach(c) { ch in
        if training {
            let variance = kernel.batchStatistics(ch, eps: eps)
            let m = Double(n * inner)
            runningMean.data[ch] = (1 - momentum) * runningMean.data[ch] + momentum * kernel.mean[ch]
            runningVar.data[ch] = (1 - momentum) * runningVar.data[ch] + momentum * Float(variance * m / (m - 1))
        } else {
            kernel.mean[ch] = runningMean.data[ch]
            kernel.invStd[ch] = 1 / (runningVar.data[ch] + eps).squareRoot()
        }
        activation.dispatch(BatchNormKernel.Forward(k: kernel, channel: ch, beta: bias.data))
    }

    let kind = OpKind.batchNorm(eps: eps, momentum: momentum, training: training, activation: activation)
    let operands = Operands(x, weight, bias, runningMean, runningVar, gate)
    Trace.note(kind, operands, out)
    if Tape.needsRecord(x, weight, bias, gate) {
        Tape.record(kind, operands, out) { d in
            withExtendedLifetime((stats, gate)) {
                let dx = x.requiresGrad ? x.gradDestination() : nil
                let dGamma = weight.requiresGrad ? weight.gradBuffer().data : nil
                let dBeta = bias.requiresGrad ? bias.gradBuffer().data : nil
                let dGate = gate.flatMap { $0.requiresGrad ? $0.gradBuffer().data : nil }
                Parallel.forEach(c) { ch in
                    activation.dispatch(BatchNormKernel.Backward(k: kernel, channel: ch, beta: bias.data, dy: d.data,
                                                                 dx: dx?.grad.data, freshDx: dx?.fresh ?? false,
                                                                 dGamma: dGamma, dBeta: dBeta, dGate: dGate))
                }
            }
        }
    }
    return out
}

/// The per-channel loops of batch norm. Channel `ch` of image `img` is the contiguous run
/// `(img * c + ch) * inner ..< +inner`; each channel is owned by one worker.
struct BatchNormKernel {
    let n: Int, c: Int, inner: Int
    let training: Bool
    let x: UnsafeMutablePointer<Float>, y: UnsafeMutablePointer<Float>, gamma: UnsafeMutablePointer<Float>
    /// The per-channel gate, or nil for none (a gate of ones).
    let gate: UnsafeMutablePointer<Float>?
    let mean: UnsafeMutablePointer<Float>, invStd: UnsafeMutablePointer<Float>

    @inline(__always) func offset(_ img: Int, _ ch: Int) -> Int { (img * c + ch) * inner }

    /// Two-pass mean and variance, partial sums in Double. Sets `mean` and `invStd` (from the
    /// biased variance, as normalization uses) and returns the biased variance.
    func batchStatistics(_ ch: Int, eps: Float) -> Double {
        let m = Double(n * inner)
        var s: Double = 0
        for img in 0..<n { s += Double(sum(x + offset(img, ch), inner)) }
        let mu = Float(s / m)
        var q: Double = 0
        for img in 0..<n { q += Double(sumSquaredDeviations(x + offset(img, ch), inner, from: mu)) }
        mean[ch] = mu
        invStd[ch] = Float(1 / (q / m + Double(eps)).squareRoot())
        return q / m
    }

    /// `y = act(x * scale + shift)`, `scale = gate * gamma / std`, `shift = gate * beta - mean * scale`.
    struct Forward: ActivationKernel {
        let k: BatchNormKernel, channel: Int, beta: UnsafeMutablePointer<Float>

        func run<A: ActivationRule>(_ rule: A.Type) {
            let ch = channel, g = k.gate?[ch] ?? 1
            let scale = g * k.gamma[ch] * k.invStd[ch], shift = g * beta[ch] - k.mean[ch] * scale
            for img in 0..<k.n {
                let src = k.x + k.offset(img, ch), dst = k.y + k.offset(img, ch)
                for i in 0..<k.inner { dst[i] = A.apply(src[i] * scale + shift) }
            }
        }
    }

    /// With `g = act'(y) * dy`, `xhat = (x - mean) / std` and the gate `s`, over the channel's
    /// m values: `dBeta += s * sum(g)`, `dGamma += s * sum(g * xhat)`,
    /// `dGate += gamma * sum(g * xhat) + beta * sum(g)` (that is, `sum(g * bn(x))`),
    /// `dx += s * gamma / std * (g - sum(g)/m - xhat * sum(g * xhat)/m)` in training
    /// (the batch statistics depend on x), `dx += s * gamma / std * g` in eval; `=` instead of
    /// `+=` into a fresh dx.
    struct Backward: ActivationKernel {
        let k: BatchNormKernel, channel: Int
        let beta: UnsafeMutablePointer<Float>
        let dy: UnsafeMutablePointer<Float>
        let dx: UnsafeMutablePointer<Float>?, freshDx: Bool
        let dGamma: UnsafeMutablePointer<Float>?, dBeta: UnsafeMutablePointer<Float>?
        let dGate: UnsafeMutablePointer<Float>?

        func run<A: ActivationRule>(_ rule: A.Type) {
            let ch = channel, mu = k.mean[ch], istd = k.invStd[ch]
            var sg: Float = 0, sgx: Float = 0
            for img in 0..<k.n {
                let o = k.offset(img, ch)
                if A.self == IdentityRule.self {
                    sg += sum(dy + o, k.inner)
                    sgx += dot(dy + o, k.x + o, k.inner, center: mu)
                } else {
                    let src = k.x + o, d = dy + o, y = k.y + o
                    var a: Float = 0, b: Float = 0
                    for i in 0..<k.inner {
                        let g = A.gradient(y[i], d[i])
                        a += g
                        b += g * (src[i] - mu)
                    }
                    sg += a
                    sgx += b
                }
            }
            sgx *= istd  // sum(g * xhat)
            let s = k.gate?[ch] ?? 1
            dGate?[ch] += k.gamma[ch] * sgx + beta[ch] * sg
            dGamma?[ch] += s * sgx
            dBeta?[ch] += s * sg
            guard let dx else { return }
            let scale = s * k.gamma[ch] * istd, m = Float(k.n * k.inner)
            let meanG = k.training ? sg / m : 0, meanGX = k.training ? sgx / m : 0
            for img in 0..<k.n {
                let o = k.offset(img, ch)
                let src = k.x + o, d = dy + o, y = k.y + o, dst = dx + o
                if freshDx {
                    for i in 0..<k.inner {
                        let xhat = (src[i] - mu) * istd
                        dst[i] = scale * (A.gradient(y[i], d[i]) - meanG - xhat * meanGX)
                    }
                } else {
                    for i in 0..<k.inner {
                        let xhat = (src[i] - mu) * istd
                        dst[i] += scale * (A.gradient(y[i], d[i]) - meanG - xhat * meanGX)
                    }
                }
            }
        }
    }
}
