import Autodiff
import Nets

/// Random BN weights, biases and running statistics (and classifier biases: every 1-D
/// parameter), so eval mode is not the identity and folding has something to fold.
public func randomizeNormalization(_ net: Network, using rng: inout RandomGenerator) {
    for t in net.state where t.name.hasSuffix("running_mean") || t.name.hasSuffix("running_var")
        || (t.tensor.shape.count == 1 && t.kind == .parameter) {
        for i in 0..<t.tensor.count {
            let u = rng.uniform()
            t.tensor.data[i] = t.name.hasSuffix("running_var") ? 0.5 + u : 0.4 * (u - 0.5) + (t.name.hasSuffix(".weight") ? 1 : 0)
        }
    }
}
