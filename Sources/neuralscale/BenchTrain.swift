import ArgumentParser
import Autodiff
import Foundation
import Nets
import Training

/// `neuralscale bench train`: images/s of full SGD training steps on random CIFAR-shaped data,
/// the counterpart of `shared/reference/torch_train_bench.py`.
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Time full training steps (forward, backward, SGD update) of a net on random CIFAR-shaped data.",
        discussion: """
        Matches shared/reference/torch_train_bench.py: 3x32x32 inputs, 10 classes, SGD with \
        momentum 0.9, weight decay 5e-4, lr 0.05; two warm-up steps, then --steps timed steps. \
        Run both one right after the other on the same machine and compare the images/s.
        """
    )

    @Option(name: .long, help: "The net.")
    var model: Architecture

    @Option(name: .long, help: "Uniform width ratio.")
    var ratio = 1.0

    @Option(name: .long, help: "Images per step.")
    var batchSize = 128

    @Option(name: .long, help: "Timed steps (after two warm-up steps).")
    var steps = 5

    @Flag(name: .long, help: "Also print the time of the forward pass, the backward pass and the SGD update per step.")
    var profile = false

    func validate() throws {
        guard ratio > 0, ratio <= 4 else { throw ValidationError("--ratio must be in (0, 4], got \(ratio)") }
        guard batchSize >= 2, steps >= 1 else { throw ValidationError("--batch-size must be >= 2 and --steps >= 1") }
    }

    func run() throws {
        let arch = model
        let d = NetDescription.uniform(arch, ratio: ratio, inChannels: 3, imageSize: 32, classes: 10)
        let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 0)))
        let opt = SGD(parameters: net.parameters, schedule: .constant(0.05), momentum: 0.9, weightDecay: 5e-4)
        var rng = RandomGenerator(seed: 1)
        let x = Tensor.randn([batchSize, 3, 32, 32], using: &rng)
        let labels = (0..<batchSize).map { _ in Int32(rng.next() % 10) }
        let step = TrainingStep(net: net, optimizer: opt)
        _ = step(x, labels: labels)
        _ = step(x, labels: labels)
        step.timed = profile
        let start = monotonicSeconds()
        for _ in 0..<steps { _ = step(x, labels: labels) }
        let perStep = (monotonicSeconds() - start) / Double(steps)
        print("\(model.rawValue) " + String(format: "ratio=%g batch=%d threads=%d params=%d step=%.1fms images/s=%.1f openblas=%@",
                                   ratio, batchSize, Parallel.workers, net.parameterCount, perStep * 1e3,
                                   Double(batchSize) / perStep, BLAS.core))
        if profile {
            let n = Double(steps)
            print(String(format: "  forward %.1f ms, backward %.1f ms, SGD update %.1f ms per step",
                         step.times.forward / n * 1e3, step.times.backward / n * 1e3, step.times.update / n * 1e3))
        }
    }
}
