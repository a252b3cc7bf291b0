import ArgumentParser
import Autodiff
import Foundation

/// `neuralscale bench conv`: forward plus both backward passes of VGG-11's eight convolutions at
/// their CIFAR shapes, against a plain sgemm timed in the same run.
struct BenchConv: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "conv",
        abstract: "Time VGG-11's eight 3x3 convolutions (CIFAR shapes, 3x32x32 input): forward, weight and input gradients.",
        discussion: """
        Prints per layer the algorithm used (im2col and GEMM, or Winograd's F(m,3)), its GFLOP/s \
        (forward and backward together, and each apart) and their percentage of the sgemm \
        yardstick's, the FLOP-weighted total, and in the same run the GFLOP/s of a plain cblas_sgemm \
        (M=N=K=--gemm-size) as the yardstick. FLOPs are the direct convolution's, a multiply-add \
        counting 2, whatever the algorithm: Winograd's layers do fewer, so their rate can exceed \
        sgemm's. The backward pass counts twice the forward (weight and input gradients); its time is \
        the convolution's backward rule, the upstream gradient handed over without a copy; "dW ms" \
        times it again without the input gradient (a first layer's case), not counted in the total. Each \
        figure is the best of --iterations timed runs after one warm-up run. Build with -c release.
        """
    )

    @Option(name: .long, help: "Images per batch.")
    var batchSize = 128

    @Option(name: .long, help: "Timed runs per layer; the fastest counts (the machine is shared and noisy).")
    var iterations = 3

    @Option(name: .long, help: "Size of the square sgemm yardstick.")
    var gemmSize = 2048

    @Option(name: .long, help: "Floats of im2col scratch per worker (Conv2DTuning.columnBudget); default: the tuned value.")
    var columnBudget: Int?

    @Option(name: .long, help: winogradHelp)
    var winograd = Conv2DTuning.Winograd.auto

    @Option(name: .long, parsing: .upToNextOption,
            help: "Layers to time, numbered 1-8 as in the table (e.g. --layers 1 7); default: all eight.")
    var layers: [Int] = []

    @Flag(name: .long, help: "Print one JSON object instead of the table.")
    var json = false

    func validate() throws {
        guard (1...65_536).contains(batchSize) else { throw ValidationError("--batch-size must be in 1...65536, got \(batchSize)") }
        guard (1...1_000_000).contains(iterations) else { throw ValidationError("--iterations must be in 1...1000000, got \(iterations)") }
        if let columnBudget, !(1...(1 << 30)).contains(columnBudget) { throw ValidationError("--column-budget must be in 1...\(1 << 30), got \(columnBudget)") }
        guard (64...16_384).contains(gemmSize) else { throw ValidationError("--gemm-size must be in 64...16384, got \(gemmSize)") }
        for l in layers where !(1...Self.layers.count).contains(l) {
            throw ValidationError("--layers takes layer numbers 1-\(Self.layers.count), got \(l)")
        }
    }

    /// VGG-11's convolutions on 32x32 input: (in, out, spatial size).
    static let layers: [(cin: Int, cout: Int, size: Int)] = [
        (3, 64, 32), (64, 128, 16), (128, 256, 8), (256, 256, 8),
        (256, 512, 4), (512, 512, 4), (512, 512, 2), (512, 512, 2),
    ]

    struct LayerResult: Encodable {
        let layer: String
        let algorithm: String
        let forwardMs: Double
        let backwardMs: Double
        /// The backward pass with the weight's and the bias's gradients only (no input gradient).
        let weightGradientMs: Double
        let gflop: Double
        let gflops: Double
        /// The forward alone, and the backward (both gradients, twice the forward's FLOPs).
        let forwardGFLOPs: Double
        let backwardGFLOPs: Double
        /// `gflops` over the sgemm yardstick's GFLOP/s.
        var sgemmRatio = 0.0
    }

    struct Report: Encodable {
        let batchSize: Int
        let threads: Int
        let layers: [LayerResult]
        let totalGFLOPs: Double
        let sgemmGFLOPs: Double
        let ratio: Double
    }

    func run() throws {
        if let columnBudget { Conv2DTuning.columnBudget = columnBudget }
        Conv2DTuning.winograd = winograd
        var rng = RandomGenerator(seed: 0)
        var results: [LayerResult] = []
        var totalFlop = 0.0, totalSeconds = 0.0
        for (i, l) in Self.layers.enumerated() where layers.isEmpty || layers.contains(i + 1) {
            let x = Tensor.randn([batchSize, l.cin, l.size, l.size], using: &rng, requiresGrad: true)
            let w = Tensor.randn([l.cout, l.cin, 3, 3], std: 0.05, using: &rng, requiresGrad: true)
            let b = Tensor.zeros([l.cout], requiresGrad: true)
            let seed = Tensor.randn([batchSize, l.cout, l.size, l.size], using: &rng)
            var bestF = Double.infinity, bestB = Double.infinity, bestW = Double.infinity
            for it in 0...iterations {
                // Both gradients, then the weight's (and bias's) alone, as for a first layer.
                for inputGradient in [true, false] {
                    x.requiresGrad = inputGradient
                    x.grad = nil; w.grad = nil; b.grad = nil
                    // The upstream gradient is handed to the tape, not copied (as PyTorch's
                    // `y.backward(dy)`): the timed backward is the convolution's rule alone.
                    let dy = Tensor(uninitialized: seed.shape)
                    dy.copy(from: seed)
                    let t0 = monotonicSeconds()
                    let y = conv2d(x, weight: w, bias: b, stride: (1, 1), padding: (1, 1))
                    let t1 = monotonicSeconds()
                    y.backward(takingSeed: dy)
                    let t2 = monotonicSeconds()
                    guard it > 0 else { continue }
                    if inputGradient {
                        bestF = min(bestF, t1 - t0)
                        bestB = min(bestB, t2 - t1)
                    } else {
                        bestW = min(bestW, t2 - t1)
                    }
                }
            }
            // Forward, plus the weight and input gradients at the forward's cost each.
            let geometry = try Conv2DGeometry.validate(input: x.shape, weight: w.shape, bias: b.shape,
                                                       stride: (1, 1), padding: (1, 1), groups: 1)
            let flop = 3 * geometry.forwardFLOPs
            totalFlop += flop
            totalSeconds += bestF + bestB
            results.append(LayerResult(layer: "conv\(i + 1) \(l.cin)->\(l.cout) @\(l.size)x\(l.size)",
                                       algorithm: geometry.algorithm.description, forwardMs: bestF * 1e3, backwardMs: bestB * 1e3,
                                       weightGradientMs: bestW * 1e3,
                                       gflop: flop / 1e9, gflops: flop / (bestF + bestB) / 1e9,
                                       forwardGFLOPs: flop / 3 / bestF / 1e9, backwardGFLOPs: flop * 2 / 3 / bestB / 1e9))
        }
        let sgemm = sgemmGFLOPs(size: gemmSize, iterations: iterations)
        for i in results.indices { results[i].sgemmRatio = results[i].gflops / sgemm }
        let total = totalFlop / totalSeconds / 1e9
        let report = Report(batchSize: batchSize, threads: Parallel.workers, layers: results,
                            totalGFLOPs: total, sgemmGFLOPs: sgemm, ratio: total / sgemm)
        if json {
            let enc = JSONEncoder()
            enc.outputFormatting = [.sortedKeys]
            print(String(decoding: try enc.encode(report), as: UTF8.self))
            return
        }
        print("VGG-11 convolutions, batch \(batchSize), \(Parallel.workers) threads, best of \(iterations)")
        print(pad("layer", 26) + pad("algorithm", 17) + pad("fwd ms", 10) + pad("bwd ms", 10) + pad("(dW ms)", 10)
              + pad("GFLOP", 9) + pad("GFLOP/s", 10) + pad("(fwd", 8) + pad("bwd)", 8) + "% sgemm")
        for r in results {
            print(pad(r.layer, 26) + pad(r.algorithm, 17) + pad(fmt(r.forwardMs), 10) + pad(fmt(r.backwardMs), 10)
                  + pad(fmt(r.weightGradientMs), 10) + pad(fmt(r.gflop), 9) + pad(fmt(r.gflops), 10)
                  + pad(fmt(r.forwardGFLOPs), 8) + pad(fmt(r.backwardGFLOPs), 8) + fmt(100 * r.sgemmRatio))
        }
        print("total (FLOP-weighted): \(fmt(total)) GFLOP/s")
        print("plain sgemm \(gemmSize)^3: \(fmt(sgemm)) GFLOP/s (OpenBLAS \(BLAS.core) kernels)")
        print("ratio: \(fmt(100 * total / sgemm))% of plain sgemm")
    }

    private func pad(_ s: String, _ n: Int) -> String { s.padding(toLength: max(n, s.count + 1), withPad: " ", startingAt: 0) }
    private func fmt(_ v: Double) -> String { String(format: "%.1f", v) }
}

/// GFLOP/s of a square row-major sgemm on all cores (OpenBLAS's own threads), best of
/// `iterations` after one warm-up.
func sgemmGFLOPs(size n: Int, iterations: Int) -> Double {
    let saved = BLAS.threads
    BLAS.threads = Parallel.workers
    defer { BLAS.threads = saved }
    var rng = RandomGenerator(seed: 1)
    let a = Tensor.randn([n, n], using: &rng), b = Tensor.randn([n, n], using: &rng)
    let c = Tensor.zeros([n, n])
    var best = Double.infinity
    for it in 0...iterations {
        let t0 = monotonicSeconds()
        BLAS.gemm(transA: false, transB: false, m: n, n: n, k: n, a: a.data, lda: n, b: b.data, ldb: n,
                  beta: 0, c: c.data, ldc: n)
        if it > 0 { best = min(best, monotonicSeconds() - t0) }
    }
    return 2 * Double(n) * Double(n) * Double(n) / best / 1e9
}
