import Autodiff
import Foundation
import Nets

/// One SGD step on a minibatch, the one `train`, `descend` and `bench train` all run: the
/// forward pass in training mode, the cross-entropy loss, the backward pass, a caller's hook
/// (the search scores its gates there), then the update.
///
/// In a data-parallel run (`group`) every process runs it on its slice of the same global batch
/// and computes what one process would on the whole batch: batch norm uses the global batch's
/// statistics (`DataParallel.group`), each process's loss gradient is weighted by its share of
/// the batch, and the gradients of every parameter and channel scale are summed over the
/// processes before the hook and the update, so the weights stay the same everywhere.
public final class TrainingStep {
    public let net: Network
    public let optimizer: SGD
    public let group: ProcessGroup?
    /// When true, the wall time of the three phases is summed into `times` (the backward pass's
    /// including the gradients' sum over the processes, which is also in `sum`).
    public var timed = false
    public private(set) var times = (forward: 0.0, backward: 0.0, update: 0.0, sum: 0.0)
    /// Floats of gradient the last step summed over the processes.
    public private(set) var summedFloats = 0
    /// The tensors whose gradients are summed over the processes, in the net's fixed order.
    private lazy var reduced: [Tensor] = net.state.filter { $0.kind != .buffer }.map(\.tensor)

    public init(net: Network, optimizer: SGD, group: ProcessGroup? = nil) {
        self.net = net
        self.optimizer = optimizer
        self.group = group
    }

    /// Runs the step on `images` [N, C, H, W] with `labels`, this process's slice of a global
    /// batch of `globalCount` images (nil: the images are the whole batch).
    /// - Parameter afterBackward: runs once the gradients are in, before the update.
    /// - Returns: the logits of these images and the mean loss over the global batch, or nil when
    ///   that loss is NaN or infinite; then nothing is updated and the tape is cleared.
    public func callAsFunction(_ images: Tensor, labels: [Int32], globalCount: Int? = nil,
                               afterBackward: () -> Void = {}) -> (logits: Tensor, loss: Float)? {
        let t0 = timed ? monotonicSeconds() : 0
        optimizer.zeroGrad()
        let previous = DataParallel.group
        DataParallel.group = group
        defer { DataParallel.group = previous }
        let logits = net.logits(images, training: true)
        let loss = crossEntropy(logits, labels: labels)
        var value = loss.scalar
        // This process's share of the global batch's mean loss.
        let share = Float(labels.count) / Float(globalCount ?? labels.count)
        if let group {
            var total = value * share
            group.sum(&total, count: 1)
            value = total
        }
        guard value.isFinite else {
            Tape.current.clear()
            return nil
        }
        let t1 = timed ? monotonicSeconds() : 0
        if let group {
            loss.backward(seed: Tensor(shape: [], values: [share]))
            let s0 = timed ? monotonicSeconds() : 0
            sumGradients(over: group)
            if timed { times.sum += monotonicSeconds() - s0 }
        } else {
            loss.backward()
        }
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

    /// Sums the gradients over the processes: packed into one buffer in the net's order, summed
    /// (in buckets, `ProcessGroup.sum`), and unpacked.
    private func sumGradients(over group: ProcessGroup) {
        let tensors = reduced.filter { $0.grad != nil }
        let total = tensors.reduce(0) { $0 + $1.count }
        summedFloats = total
        let buffer = Tensor(uninitialized: [total])
        var offset = 0
        for t in tensors {
            (buffer.data + offset).update(from: t.grad!.data, count: t.count)
            offset += t.count
        }
        group.sum(buffer.data, count: total)
        offset = 0
        for t in tensors {
            t.grad!.data.update(from: buffer.data + offset, count: t.count)
            offset += t.count
        }
    }
}

/// Checks that every process of `group` holds the same values in `tensors` (a data-parallel
/// run's weights, or its gates after a pruning step), as the sums over the processes guarantee:
/// a hash of the bits per process, cut into three 21-bit pieces whose sums over the processes are
/// exact; they are all equal exactly when each piece's sum is size times this process's piece.
/// - Throws: `TrainingError.output` naming `what` on a process whose values differ from the
///   others', so that a run whose processes went apart stops instead of writing one's results.
public func checkAgreement(_ group: ProcessGroup?, on tensors: [Tensor], what: String) throws {
    guard let group, group.size > 1 else { return }
    var hash: UInt64 = 0xcbf2_9ce4_8422_2325  // FNV-1a over the values' bits
    for t in tensors {
        for i in 0..<t.count {
            hash = (hash ^ UInt64(t.data[i].bitPattern)) &* 0x100_0000_01b3
        }
    }
    let pieces = (0..<3).map { Double((hash >> (21 * UInt64($0))) & 0x1f_ffff) }
    var sums = pieces
    group.sum(&sums, count: 3)
    guard zip(sums, pieces).allSatisfy({ $0 == Double(group.size) * $1 }) else {
        throw TrainingError.output("process \(group.rank) of \(group.size) holds other \(what) than the others "
                                   + "(their sums over the processes differ); the run stops")
    }
}
