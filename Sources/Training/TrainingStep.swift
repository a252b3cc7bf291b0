import Autodiff
import Foundation
import Nets

/// One SGD step on a minibatch, the one `train`, `descend` and `bench train` all run: the
/// forward pass in training mode, the cross-entropy loss, the backward pass, a caller's hook
/// (the search scores its gates there), then the update.
public final class TrainingStep {
    public let net: Network
    public let optimizer: SGD
    /// When true, the wall time of the three phases is summed into `times`.
    public var timed = false
    public private(set) var times = (forward: 0.0, backward: 0.0, update: 0.0)

    public init(net: Network, optimizer: SGD) {
        self.net = net
        self.optimizer = optimizer
    }

    /// Runs the step on `images` [N, C, H, W] with `labels`.
    /// - Parameter afterBackward: runs once the gradients are in, before the update.
    /// - Returns: the logits and the mean loss, or nil when the loss is NaN or infinite; then
    ///   nothing is updated and the tape is cleared.
    public func callAsFunction(_ images: Tensor, labels: [Int32], afterBackward: () -> Void = {}) -> (logits: Tensor, loss: Float)? {
        let t0 = timed ? monotonicSeconds() : 0
        optimizer.zeroGrad()
        let logits = net.logits(images, training: true)
        let loss = crossEntropy(logits, labels: labels)
        let value = loss.scalar
        guard value.isFinite else {
            Tape.current.clear()
            return nil
        }
        let t1 = timed ? monotonicSeconds() : 0
        loss.backward()
        afterBackward()
        let t2 = timed ? monotonicSeconds() : 0
        optimizer.step()
        if timed {
            let t3 = monotonicSeconds()
            times.forward += t1 - t0
            times.backward += t2 - t1
            times.update += t3 - t2
        }
        return (logits, value)
    }
}
