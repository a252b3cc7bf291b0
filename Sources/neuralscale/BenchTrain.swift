import ArgumentParser
import Autodiff
import Foundation
import MessagePassing
import Nets
import Pruning
import Training

/// `neuralscale bench train`: images/s of full SGD training steps on random CIFAR-shaped data,
/// the counterpart of `../shared/reference/torch_train_bench.py`.
struct BenchTrain: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "train",
        abstract: "Time full training steps (forward, backward, SGD update) of a net on random CIFAR-shaped data.",
        discussion: """
        Matches ../shared/reference/torch_train_bench.py: 3x32x32 inputs, 10 classes, SGD with \
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

    @Flag(name: .long, help: """
        Also time every op forward and backward: a table per op kind and one per op (in forward \
        order, with its output shape), plus the SGD update. Profiling adds a clock read per op.
        """)
    var profile = false

    @Flag(name: .long, help: """
        Time the search's step instead: the net with its channel gates (what `descend` trains) and \
        the Taylor-FO score accumulation after every backward pass.
        """)
    var gated = false

    @Option(name: .long, help: winogradHelp)
    var winograd = Conv2DTuning.Winograd.auto

    @Flag(name: .long, help: "Print one JSON object (images/s, step ms, peak memory, and the profile with --profile) instead of text.")
    var json = false

    func validate() throws {
        guard ratio > 0, ratio <= 4 else { throw ValidationError("--ratio must be in (0, 4], got \(ratio)") }
        guard (2...65_536).contains(batchSize), (1...1_000_000).contains(steps) else {
            throw ValidationError("--batch-size must be in 2...65536 and --steps in 1...1000000")
        }
    }

    func run() throws {
        Conv2DTuning.winograd = winograd
        // Under `mpirun`: the data-parallel step, each process on its slice of the batch.
        let parallel = try DataParallelRun.launch()
        try parallel.run {
            try parallel.requireBatch(batchSize)
            try measure(parallel)
        }
    }

    private func measure(_ parallel: DataParallelRun) throws {
        let baseMB = ProcessMemory.residentMB
        let d = NetDescription.uniform(model, ratio: ratio, inChannels: 3, imageSize: 32, classes: 10)
        let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 0)), gated: gated)
        let pruner = gated ? Pruner(net, settings: PruningSettings()) : nil
        let opt = SGD(parameters: net.parameters, schedule: .constant(0.05), momentum: 0.9, weightDecay: 5e-4)
        var rng = RandomGenerator(seed: 1)
        let rank = parallel.group?.rank ?? 0, processes = parallel.group?.size ?? 1
        let first = batchSize * rank / processes, local = batchSize * (rank + 1) / processes - first
        let x = Tensor.randn([local, 3, 32, 32], using: &rng)
        let labels = (0..<local).map { _ in Int32(rng.next() % 10) }
        let step = TrainingStep(net: net, optimizer: opt, group: parallel.group)
        let run = { _ = step(x, labels: labels, globalCount: batchSize) { pruner?.accumulate() } }
        run()
        run()
        let ops = profile ? OpProfile() : nil
        step.timed = profile
        let start = monotonicSeconds()
        for _ in 0..<steps {
            if let ops { ops.step(run) } else { run() }
        }
        let perStep = (monotonicSeconds() - start) / Double(steps)
        let n = Double(steps)
        let result = BenchTrainResult(
            model: model.rawValue, ratio: ratio, batch: batchSize, threads: Parallel.workers, gated: gated,
            params: net.parameterCount, processes: processes, stepMs: perStep * 1e3, imagesPerSecond: Double(batchSize) / perStep,
            peakResidentMB: ProcessMemory.peakResidentMB, peakIncreaseMB: ProcessMemory.peakResidentMB - baseMB,
            openblasCore: BLAS.core,
            phases: profile ? .init(forwardMs: step.times.forward / n * 1e3, backwardMs: step.times.backward / n * 1e3,
                                    updateMs: step.times.update / n * 1e3,
                                    sumMs: processes > 1 ? step.times.sum / n * 1e3 : nil) : nil,
            summedMB: processes > 1 ? Double(step.summedFloats * 4) / 1_048_576 : nil,
            byKind: ops?.byKind.map { .init(kind: $0.kind, count: $0.count, forwardMs: $0.forward * 1e3, backwardMs: $0.backward * 1e3) },
            byOp: ops?.entries.map { .init(kind: $0.kind, outputShape: $0.outputShape, forwardMs: $0.forward / n * 1e3,
                                           backwardMs: $0.backward / n * 1e3) })
        guard parallel.leads else { return }
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(result), as: UTF8.self))
        } else {
            print(result.text)
        }
    }
}

/// What `bench train` measured.
struct BenchTrainResult: Codable {
    struct Phases: Codable {
        let forwardMs, backwardMs, updateMs: Double
        /// The gradients' sum over the processes outside the backward pass (part of the backward
        /// time): the whole sum with NEURALSCALE_GRADIENT_BUCKET_MB=0, else the wait for the
        /// buckets still unfinished when the pass ends.
        var sumMs: Double?
    }
    struct KindTime: Codable { let kind: String; let count: Int; let forwardMs, backwardMs: Double }
    struct OpTime: Codable { let kind: String; let outputShape: [Int]; let forwardMs, backwardMs: Double }
    let model: String, ratio: Double, batch: Int, threads: Int, gated: Bool, params: Int
    /// Processes of a data-parallel run (`mpirun`), each with `threads` threads.
    var processes: Int = 1
    let stepMs, imagesPerSecond: Double
    /// The process's peak resident set, and its increase over the set before the net was built.
    let peakResidentMB, peakIncreaseMB: Double
    let openblasCore: String
    let phases: Phases?
    /// Gradient megabytes summed over the processes per step.
    var summedMB: Double?
    let byKind: [KindTime]?
    let byOp: [OpTime]?

    var text: String {
        var lines = ["\(model) " + String(format: "ratio=%g batch=%d threads=%d params=%d step=%.1fms images/s=%.1f peak-rss=%.0fMB",
                                           ratio, batch, threads, params, stepMs, imagesPerSecond, peakResidentMB)
                     + (gated ? " gated" : "") + " openblas=\(openblasCore)" + (processes > 1 ? " processes=\(processes)" : "")]
        if let phases {
            lines.append(String(format: "  forward %.1f ms, backward %.1f ms, SGD update %.1f ms per step",
                                phases.forwardMs, phases.backwardMs, phases.updateMs)
                         + (phases.sumMs.map { String(format: "; %.1f ms of it waiting for the gradient sum over the processes", $0) } ?? "")
                         + (summedMB.map { String(format: " (%.1f MB)", $0) } ?? ""))
        }
        func row(_ cells: [String], _ widths: [Int]) -> String {
            zip(cells, widths).map { $0.padding(toLength: max($1, $0.count), withPad: " ", startingAt: 0) }.joined(separator: " ")
        }
        let ms = { (v: Double) in String(format: "%.2f", v) }
        if let byKind {
            let total = byKind.reduce(0) { $0 + $1.forwardMs + $1.backwardMs }
            lines.append("")
            lines.append(row(["op kind", "count", "fwd ms", "bwd ms", "share"], [16, 6, 9, 9, 6]))
            for k in byKind {
                lines.append(row([k.kind, "\(k.count)", ms(k.forwardMs), ms(k.backwardMs),
                                  String(format: "%.1f%%", 100 * (k.forwardMs + k.backwardMs) / max(total, 1e-12))], [16, 6, 9, 9, 6]))
            }
        }
        if let byOp {
            lines.append("")
            lines.append(row(["#", "op", "output", "fwd ms", "bwd ms"], [4, 16, 20, 9, 9]))
            for (i, o) in byOp.enumerated() {
                lines.append(row(["\(i)", o.kind, o.outputShape.map(String.init).joined(separator: "x"), ms(o.forwardMs), ms(o.backwardMs)],
                                 [4, 16, 20, 9, 9]))
            }
        }
        return lines.joined(separator: "\n")
    }
}
