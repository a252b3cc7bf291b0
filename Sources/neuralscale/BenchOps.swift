import ArgumentParser
import Autodiff
import Foundation

/// `neuralscale bench ops`: the memory-bound ops of a training step (everything but the GEMMs)
/// at a VGG-11 activation shape, with the bandwidth each achieves.
struct BenchOps: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ops",
        abstract: "Time batch norm, activations, pooling and elementwise ops, forward and backward.",
        discussion: """
        Each op runs on an activation of shape [--batch-size, --channels, --size, --size] \
        (default: VGG-11's first conv output at batch 128). GB/s counts one read of every input \
        and one write of every output per pass (a lower bound on the traffic). Best of --iterations. \
        With more than one thread, then the cost of an empty parallel region (handing it to the \
        other threads and waiting for them), best of --iterations rounds of 2000.
        """
    )

    @Option(name: .long, help: "Images per batch.")
    var batchSize = 128
    @Option(name: .long, help: "Channels of the activation.")
    var channels = 64
    @Option(name: .long, help: "Height and width of the activation.")
    var size = 32
    @Option(name: .long, help: "Timed runs per op; the fastest counts.")
    var iterations = 5

    func validate() throws {
        guard batchSize >= 1, channels >= 1, size >= 2, iterations >= 1 else {
            throw ValidationError("--batch-size, --channels, --iterations must be >= 1 and --size >= 2")
        }
        guard batchSize <= 65_536, channels <= 65_536, size <= 4096, iterations <= 1_000_000 else {
            throw ValidationError("--batch-size and --channels must be at most 65536, --size at most 4096 and --iterations at most 1000000")
        }
    }

    func run() throws {
        var rng = RandomGenerator(seed: 0)
        let shape = [batchSize, channels, size, size]
        let x = Tensor.randn(shape, using: &rng, requiresGrad: true)
        let other = Tensor.randn(shape, using: &rng, requiresGrad: true)
        let gamma = Tensor.filled([channels], with: 1, requiresGrad: true)
        let beta = Tensor.zeros([channels], requiresGrad: true)
        let rm = Tensor.zeros([channels]), rv = Tensor.filled([channels], with: 1)
        let bytes = Double(x.count * 4)
        print("shape \(shape), \(Parallel.workers) threads, best of \(iterations)")
        print("op".padding(toLength: 26, withPad: " ", startingAt: 0) + "fwd ms   fwd GB/s   bwd ms   bwd GB/s")
        // (name, forward, tensors read+written forward, read+written backward)
        let cases: [(String, () -> Tensor, Double, Double)] = [
            ("batchnorm train", { batchNorm2d(x, weight: gamma, bias: beta, runningMean: rm, runningVar: rv, training: true) }, 3, 4),
            ("batchnorm train + relu", { batchNorm2d(x, weight: gamma, bias: beta, runningMean: rm, runningVar: rv, training: true, activation: .relu) }, 3, 5),
            ("relu", { relu(x) }, 2, 3),
            ("add", { add(x, other) }, 3, 4),
            ("maxpool 2x2", { maxPool2d(x, kernel: (2, 2)) }, 1.25, 2.5),
            ("global avgpool", { globalAvgPool(x) }, 1, 2),
        ]
        for (name, f, fwdTraffic, bwdTraffic) in cases {
            var bestF = Double.infinity, bestB = Double.infinity
            for it in 0...iterations {
                x.grad = nil; other.grad = nil; gamma.grad = nil; beta.grad = nil
                let t0 = monotonicSeconds()
                let y = f()
                let t1 = monotonicSeconds()
                let seed = Tensor.filled(y.shape, with: 0.5)
                let t2 = monotonicSeconds()
                y.backward(seed: seed)
                let t3 = monotonicSeconds()
                if it > 0 { bestF = min(bestF, t1 - t0); bestB = min(bestB, t3 - t2) }
            }
            print(name.padding(toLength: 26, withPad: " ", startingAt: 0)
                  + String(format: "%-9.2f%-11.1f%-9.2f%.1f", bestF * 1e3, fwdTraffic * bytes / bestF / 1e9,
                           bestB * 1e3, bwdTraffic * bytes / bestB / 1e9))
        }
        // What every parallel region costs before any work: handing it to the other threads and
        // waiting for them (an inference of one image runs dozens of regions).
        if Parallel.workers > 1 {
            var best = Double.infinity
            for _ in 0..<iterations {
                let regions = 2000, t0 = monotonicSeconds()
                for _ in 0..<regions { Parallel.forEach(Parallel.workers) { _ in } }
                best = min(best, (monotonicSeconds() - t0) / Double(regions))
            }
            print(String(format: "parallel region hand-off   %.2f us per empty region of %d threads", best * 1e6, Parallel.workers))
        }
    }
}
