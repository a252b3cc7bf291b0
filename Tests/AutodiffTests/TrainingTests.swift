import Autodiff
import XCTest

/// A tiny conv net on the engine's ops: conv-BN-ReLU, max pool, depthwise conv-BN-ReLU6, global
/// average pool, linear.
private struct TinyNet {
    let conv1: Tensor, bn1w: Tensor, bn1b: Tensor, rm1: Tensor, rv1: Tensor
    let dw: Tensor, bn2w: Tensor, bn2b: Tensor, rm2: Tensor, rv2: Tensor
    let conv3: Tensor, fc: Tensor, fcb: Tensor

    init(seed: UInt64, inChannels: Int = 3, width: Int = 8, classes: Int = 4) {
        var rng = RandomGenerator(seed: seed)
        conv1 = Tensor.randn([width, inChannels, 3, 3], std: 0.3, using: &rng, requiresGrad: true)
        bn1w = Tensor.filled([width], with: 1, requiresGrad: true); bn1b = Tensor.zeros([width], requiresGrad: true)
        rm1 = Tensor.zeros([width]); rv1 = Tensor.filled([width], with: 1)
        dw = Tensor.randn([width, 1, 3, 3], std: 0.3, using: &rng, requiresGrad: true)
        bn2w = Tensor.filled([width], with: 1, requiresGrad: true); bn2b = Tensor.zeros([width], requiresGrad: true)
        rm2 = Tensor.zeros([width]); rv2 = Tensor.filled([width], with: 1)
        conv3 = Tensor.randn([2 * width, width, 1, 1], std: 0.3, using: &rng, requiresGrad: true)
        fc = Tensor.randn([classes, 2 * width], std: 0.1, using: &rng, requiresGrad: true)
        fcb = Tensor.zeros([classes], requiresGrad: true)
    }

    var parameters: [Tensor] { [conv1, bn1w, bn1b, dw, bn2w, bn2b, conv3, fc, fcb] }

    func logits(_ x: Tensor, training: Bool) -> Tensor {
        var h = conv2d(x, weight: conv1, padding: (1, 1))
        h = batchNorm2d(h, weight: bn1w, bias: bn1b, runningMean: rm1, runningVar: rv1, training: training, activation: .relu)
        h = maxPool2d(h, kernel: (2, 2))
        h = conv2d(h, weight: dw, stride: (2, 2), padding: (1, 1), groups: dw.shape[0])
        h = batchNorm2d(h, weight: bn2w, bias: bn2b, runningMean: rm2, runningVar: rv2, training: training, activation: .relu6)
        h = relu(conv2d(h, weight: conv3))
        return linear(flatten(globalAvgPool(h)), weight: fc, bias: fcb)
    }
}

final class TrainingTests: XCTestCase {
    /// The net must memorize one fixed batch: the loss falls below 1% of where it started.
    func testSmallConvNetOverfitsOneBatch() {
        var rng = RandomGenerator(seed: 3)
        let x = Tensor.randn([8, 3, 12, 12], using: &rng)
        let labels: [Int32] = [0, 1, 2, 3, 3, 2, 1, 0]
        let net = TinyNet(seed: 1)
        let opt = SGD(parameters: net.parameters, schedule: .constant(0.05), momentum: 0.9)
        var first: Float = 0, last: Float = 0
        for step in 0..<300 {
            let loss = crossEntropy(net.logits(x, training: true), labels: labels)
            if step == 0 { first = loss.scalar }
            last = loss.scalar
            if last < 0.005 * first { break }
            opt.zeroGrad()
            loss.backward()
            opt.step()
        }
        XCTAssertGreaterThan(first, 1.0, "an untrained 4-class net starts near ln 4")
        XCTAssertLessThan(last, 0.01 * first, "loss went from \(first) to \(last)")
        Tape.current.clear()
        let correct = Tape.withoutGradients { correctPredictions(net.logits(x, training: true), labels: labels) }
        XCTAssertEqual(correct, 8)
        XCTAssertEqual(Tape.current.count, 0, "evaluation under withoutGradients must record nothing")
    }

    /// Same seed, same data: bit-identical weights, whatever the number of worker threads.
    func testTrainingIsBitIdenticalAcrossRunsAndThreadCounts() {
        func train(workers: Int) -> [[Float]] {
            let saved = Parallel.workers
            Parallel.workers = workers
            defer { Parallel.workers = saved }
            var rng = RandomGenerator(seed: 5)
            let x = Tensor.randn([16, 3, 16, 16], using: &rng)
            let labels: [Int32] = (0..<16).map { Int32($0 % 4) }
            let net = TinyNet(seed: 2, width: 16)
            let opt = SGD(parameters: net.parameters, schedule: .constant(0.05), momentum: 0.9, weightDecay: 5e-4)
            for _ in 0..<5 {
                let loss = crossEntropy(net.logits(x, training: true), labels: labels)
                opt.zeroGrad()
                loss.backward()
                opt.step()
            }
            return net.parameters.map(\.values) + [net.rm1.values, net.rv2.values]
        }
        let a = train(workers: 2), b = train(workers: 2), c = train(workers: 1)
        func firstDifference(_ x: [[Float]], _ y: [[Float]]) -> String? {
            for (i, (u, v)) in zip(x, y).enumerated() {
                if let j = u.indices.first(where: { u[$0].bitPattern != v[$0].bitPattern }) {
                    return "tensor \(i) element \(j): \(u[j]) vs \(v[j])"
                }
            }
            return nil
        }
        XCTAssertEqual(a.map(\.count), b.map(\.count))
        XCTAssertNil(firstDifference(a, b), "two runs with the same seed differ")
        XCTAssertNil(firstDifference(a, c), "one worker and two workers differ")
    }
}
