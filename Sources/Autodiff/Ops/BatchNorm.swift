import Foundation

/// 2-D batch normalization, optionally fused with the activation that follows it.
///
/// Training mode normalizes with the batch statistics and updates the running statistics as
/// PyTorch does: `running = (1 - momentum) * running + momentum * batch`, with the unbiased batch
/// variance. Eval mode normalizes with the running statistics. The forward kernel is one pass over
/// the channel (after the statistics pass); the backward kernel reads the activation's derivative
/// off the saved output, so a fused BN + ReLU costs no extra tensor.

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

/// Batch normalization over the channels of `x`, followed by `activation`.
/// - Parameters:
///   - x: [N, C, H, W]
///   - weight, bias: [C], the affine parameters (gamma, beta)
///   - runningMean, runningVar: [C] buffers; updated in place when `training`
///   - training: batch statistics (true) or running statistics (false)
public func batchNorm2d(_ x: Tensor, weight: Tensor, bias: Tensor,
                        runningMean: Tensor, runningVar: Tensor,
                        training: Bool, momentum: Float = 0.1, eps: Float = 1e-5,
                        activation: Activation = .identity) -> Tensor {
    validated {
        try validateBatchNorm(input: x.shape, weight: weight.shape, bias: bias.shape,
                              runningMean: runningMean.shape, runningVar: runningVar.shape)
        if training {
            try require(x.count / x.shape[1] > 1, "batchnorm2d",
                        "input \(x.shape) has one value per channel; training needs more than one")
        }
    }
    let n = x.shape[0], c = x.shape[1], inner = x.count / max(n * c, 1)
    let m = n * inner  // values per channel
    let out = Tensor(uninitialized: x.shape)
    // Per channel: the mean used and 1/sqrt(var + eps), saved for backward.
    let stats = Tensor(uninitialized: [2, c])
    let px = x.data, po = out.data, mean = stats.data, invStd = stats.data + c
    let gamma = weight.data, beta = bias.data, rm = runningMean.data, rv = runningVar.data

    Parallel.forEach(c) { ch in
        var mu: Float, istd: Float
        if training {
            var s: Double = 0
            for img in 0..<n { s += Double(sum(px + (img * c + ch) * inner, inner)) }
            mu = Float(s / Double(m))
            var q: Double = 0
            for img in 0..<n { q += Double(sumSquaredDeviations(px + (img * c + ch) * inner, inner, from: mu)) }
            let variance = q / Double(m)
            istd = Float(1 / (variance + Double(eps)).squareRoot())
            rm[ch] = (1 - momentum) * rm[ch] + momentum * mu
            rv[ch] = (1 - momentum) * rv[ch] + momentum * Float(variance * Double(m) / Double(m - 1))
        } else {
            mu = rm[ch]
            istd = 1 / (rv[ch] + eps).squareRoot()
        }
        mean[ch] = mu
        invStd[ch] = istd
        let scale = gamma[ch] * istd, shift = beta[ch] - mu * scale
        for img in 0..<n {
            let base = (img * c + ch) * inner
            let src = px + base, dst = po + base
            switch activation {
            case .identity: for i in 0..<inner { dst[i] = src[i] * scale + shift }
            case .relu: for i in 0..<inner { dst[i] = max(src[i] * scale + shift, 0) }
            case .relu6: for i in 0..<inner { dst[i] = min(max(src[i] * scale + shift, 0), 6) }
            }
        }
    }

    if Tape.needsRecord(x, weight, bias) {
        Tape.record("batchnorm2d", out) { d in
            let pd = d.data, mean = stats.data, invStd = stats.data + c  // `stats` lives as long as this rule
            let dx = x.requiresGrad ? x.gradBuffer().data : nil
            let dGamma = weight.requiresGrad ? weight.gradBuffer().data : nil
            let dBeta = bias.requiresGrad ? bias.gradBuffer().data : nil
            Parallel.forEach(c) { ch in
                let mu = mean[ch], istd = invStd[ch]
                // Sums of the pre-activation gradient g and of g * xhat over the channel.
                var sg: Float = 0, sgx: Float = 0
                for img in 0..<n {
                    let base = (img * c + ch) * inner
                    let src = px + base, dy = pd + base, y = po + base
                    var a: Float = 0, b: Float = 0
                    if activation == .identity {
                        a = sum(dy, inner)
                        b = dot(dy, src, inner, center: mu)
                    } else {
                        for i in 0..<inner where activation.passes(y[i]) { a += dy[i]; b += dy[i] * (src[i] - mu) }
                    }
                    sg += a
                    sgx += b
                }
                sgx *= istd  // sum(g * xhat)
                dGamma?[ch] += sgx
                dBeta?[ch] += sg
                guard let dx else { return }
                let k = gamma[ch] * istd
                let meanG = training ? sg / Float(m) : 0, meanGX = training ? sgx / Float(m) : 0
                for img in 0..<n {
                    let base = (img * c + ch) * inner
                    let src = px + base, dy = pd + base, y = po + base, dst = dx + base
                    for i in 0..<inner {
                        let g = activation.passes(y[i]) ? dy[i] : 0
                        let xhat = (src[i] - mu) * istd
                        dst[i] += k * (g - meanG - xhat * meanGX)
                    }
                }
            }
        }
    }
    return out
}
