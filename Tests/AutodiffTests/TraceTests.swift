import Autodiff
import XCTest

/// The computation that ran, walkable: traced ops and tape records carry each op's kind, its
/// attributes and the identities of what it read and wrote.
final class TraceTests: XCTestCase {
    func testATraceRecordsKindsAttributesAndOperands() {
        var rng = RandomGenerator(seed: 3)
        let x = Tensor.randn([2, 3, 8, 8], using: &rng)
        let w = Tensor.randn([4, 3, 3, 3], using: &rng, requiresGrad: true), b = Tensor.filled([4], with: 0.1, requiresGrad: true)
        let gamma = Tensor.filled([4], with: 1, requiresGrad: true), beta = Tensor.filled([4], with: 0, requiresGrad: true)
        let mean = Tensor.filled([4], with: 0), variance = Tensor.filled([4], with: 1)
        let scale = Tensor.filled([4], with: 1)
        let (y, trace) = Tape.withoutGradients {
            Trace.record { () -> Tensor in
                let c = conv2d(x, weight: w, bias: b, stride: (2, 1), padding: (1, 0), groups: 1)
                let n = batchNorm2d(c, weight: gamma, bias: beta, runningMean: mean, runningVar: variance, training: false,
                                    eps: 1e-3, activation: .relu6)
                let p = maxPool2d(channelScale(n, scale), kernel: (2, 2))
                return flatten(add(p, selectChannels(p, [3, 2, -1, 0])))
            }
        }
        XCTAssertEqual(trace.ops.map(\.kind), [
            .conv2d(stride: Pair(2, 1), padding: Pair(1, 0), groups: 1),
            .batchNorm(eps: 1e-3, momentum: 0.1, training: false, activation: .relu6),
            .channelScale, .maxPool(kernel: Pair(2, 2), stride: Pair(2, 2), padding: Pair(0, 0)),
            .selectChannels([3, 2, -1, 0]), .add, .reshape,
        ])
        func id(_ t: Tensor) -> ObjectIdentifier? { ObjectIdentifier(t) }
        let ops = trace.ops
        XCTAssertEqual(ops[0].operands.all, [id(x), id(w), id(b)])
        XCTAssertEqual(ops[1].operands.all, [id(ops[0].output), id(gamma), id(beta), id(mean), id(variance)])
        XCTAssertEqual(ops[2].operands.all, [id(ops[1].output), id(scale)])
        XCTAssertEqual(ops[5].operands.all, [id(ops[3].output), id(ops[4].output)])
        XCTAssertTrue(ops.last!.output === y)
        XCTAssertEqual(Tape.current.count, 0, "an eval pass records nothing on the tape")
        XCTAssertEqual(conv2d(x, weight: w).shape, [2, 4, 6, 6], "outside a trace ops still run")
        Tape.current.clear()
    }

    func testTapeRecordsCarryTheSameDescription() {
        var rng = RandomGenerator(seed: 4)
        let x = Tensor.randn([2, 5], using: &rng)
        let w = Tensor.randn([3, 5], using: &rng, requiresGrad: true)
        let logits = linear(x, weight: w, bias: nil)
        let loss = crossEntropy(relu(logits), labels: [0, 2])
        XCTAssertEqual(Tape.current.ops.map(\.kind), [.linear, .relu, .crossEntropy])
        XCTAssertEqual(Tape.current.ops[0].operands.all, [ObjectIdentifier(x), ObjectIdentifier(w)])
        XCTAssertTrue(Tape.current.ops[2].output === loss)
        loss.backward()
        XCTAssertEqual(Tape.current.count, 0)
    }

    func testTracesNest() {
        let x = Tensor.filled([1, 2, 2, 2], with: 1)
        let (_, outer) = Trace.record { () -> Tensor in
            let a = relu(x)
            let (_, inner) = Trace.record { relu6(a) }
            XCTAssertEqual(inner.ops.map(\.kind), [.relu6])
            return globalAvgPool(a)
        }
        XCTAssertEqual(outer.ops.map(\.kind), [.relu, .globalAvgPool])
    }
}

/// `Tape.backward(afterEach:)`, what the overlapped gradient sum relies on: called once per
/// record, from the last down to 0, and after record i every gradient of a tensor that no record
/// below i reads is already final.
final class BackwardProgressTests: XCTestCase {
    func testGradientsAreCompleteOnceNoEarlierRecordReadsThem() {
        var rng = RandomGenerator(seed: 5)
        let x = Tensor.randn([2, 3, 6, 6], using: &rng)
        let w1 = Tensor.randn([4, 3, 3, 3], using: &rng, requiresGrad: true)
        let w2 = Tensor.randn([4, 4, 3, 3], using: &rng, requiresGrad: true)
        let gate = Tensor.filled([4], with: 1, requiresGrad: true)
        let fc = Tensor.randn([3, 4], using: &rng, requiresGrad: true)
        // The gate is read twice (records 1 and 3): its gradient is final only after record 1.
        func loss() -> Tensor {
            let a = channelScale(relu(conv2d(x, weight: w1, bias: nil, stride: (1, 1), padding: (1, 1), groups: 1)), gate)
            let b = channelScale(conv2d(a, weight: w2, bias: nil, stride: (1, 1), padding: (1, 1), groups: 1), gate)
            return crossEntropy(linear(flatten(globalAvgPool(b)), weight: fc, bias: nil), labels: [0, 2])
        }
        let params = [w1, w2, gate, fc]
        loss().backward()
        let final = params.map { $0.grad!.values }
        for p in params { p.grad = nil }

        let l = loss()
        let ops = Tape.current.ops
        let firstUse = params.map { p in ops.firstIndex { $0.operands.all.contains(ObjectIdentifier(p)) }! }
        XCTAssertEqual(firstUse[2], ops.firstIndex { $0.kind == .channelScale }, "the gate's first reader")
        var seen: [Int] = []
        Tape.current.backward(from: l) { index in
            seen.append(index)
            for (k, p) in params.enumerated() where firstUse[k] >= index {
                XCTAssertEqual(p.grad?.values, final[k], "parameter \(k) not final after record \(index)")
            }
        }
        XCTAssertEqual(seen, Array((0..<ops.count).reversed()))
    }
}
