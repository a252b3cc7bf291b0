import Autodiff
import XCTest

/// Batch norm over the processes of a data-parallel run (`DataParallel.group`), checked in one
/// process against processes simulated by their sums.
final class SyncBatchNormTests: XCTestCase {
    /// A group of one: its sums are the identity, so batch norm over it must compute what it
    /// computes alone (the global statistics then take a different but exact route).
    final class Alone: ProcessGroup {
        let rank = 0, size = 1
        func sum(_ values: UnsafeMutablePointer<Float>, count: Int) {}
        func sum(_ values: UnsafeMutablePointer<Double>, count: Int) {}
        func barrier() {}
    }

    /// Two processes holding the same images: the global batch is this one twice, whose
    /// statistics and normalized sums are this batch's, so batch norm must again compute what it
    /// computes alone; the sums of the group are really taken (twice the values), so a count or
    /// a sum left local would show.
    final class Twins: ProcessGroup {
        let rank = 0, size = 2
        func sum(_ values: UnsafeMutablePointer<Float>, count: Int) { for i in 0..<count { values[i] *= 2 } }
        func sum(_ values: UnsafeMutablePointer<Double>, count: Int) { for i in 0..<count { values[i] *= 2 } }
        func barrier() {}
    }

    func testGroupsOfOneAndOfTwinsMatchNoGroup() {
        var rng = RandomGenerator(seed: 3)
        for shape in [[4, 3, 5, 6], [6, 5, 2, 2], [8, 4, 1, 1]] {
            let c = shape[1]
            let x = Tensor.randn(shape, using: &rng), seed = Tensor.randn(shape, using: &rng)
            for i in 0..<x.count { x.data[i] = 3 + 2 * x.data[i] }
            let gamma = Tensor.randn([c], using: &rng), beta = Tensor.randn([c], using: &rng)
            let gate = Tensor.uniform([c], low: 0.5, high: 1.5, using: &rng)
            func run(_ group: ProcessGroup?) -> [[Float]] {
                DataParallel.group = group
                defer { DataParallel.group = nil }
                for t in [x, gamma, beta, gate] { t.requiresGrad = true; t.grad = nil }
                let rm = Tensor.zeros([c]), rv = Tensor.filled([c], with: 1)
                let y = batchNorm2d(x, weight: gamma, bias: beta, runningMean: rm, runningVar: rv, training: true,
                                    activation: .relu, gate: gate)
                y.backward(seed: seed)
                return [y.values, x.grad!.values, gamma.grad!.values, beta.grad!.values, gate.grad!.values, rm.values, rv.values]
            }
            let alone = run(nil)
            for (label, group) in [("a group of one", Alone() as ProcessGroup), ("twins", Twins())] {
                let grouped = run(group)
                for (i, name) in ["y", "dx", "dgamma", "dbeta", "dgate", "running mean"].enumerated() {
                    assertClose(grouped[i], alone[i], rtol: 1e-4, atol: 1e-5, "\(shape), \(label): \(name)")
                }
                // The unbiased running variance counts the global batch: m/(m-1) with m twice as large.
                let m = Float(shape[0] * shape[2] * shape[3])
                let rescaled = zip(alone[6], grouped[6]).map { a, _ in 0.9 + (a - 0.9) / (m / (m - 1)) * (2 * m / (2 * m - 1)) }
                assertClose(grouped[6], label == "twins" ? rescaled : alone[6], rtol: 1e-4, atol: 1e-5, "\(shape), \(label): running var")
            }
        }
    }
}
