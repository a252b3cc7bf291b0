import Autodiff
import XCTest

final class SGDTests: XCTestCase {
    /// Six steps with given gradients and learning rates match `torch.optim.SGD` (Reference/sgd.json).
    func testMatchesTorchSGD() throws {
        for c in try ReferenceFile.load("sgd.json").cases {
            let p0 = try c.tensor("p0_init", requiresGrad: true), p1 = try c.tensor("p1_init", requiresGrad: true)
            let lrs = try c.list("lrs")
            let opt = SGD(parameters: [p0, p1], schedule: .constant(Float(lrs[0])), momentum: try c.float("momentum"),
                          weightDecay: try c.float("weight_decay"), nesterov: try c.flag("nesterov"))
            for k in 0..<(try c.int("steps")) {
                opt.setLearningRate(Float(lrs[k]))
                p0.grad = try c.tensor("grad_p0_step\(k)")
                p1.grad = try c.tensor("grad_p1_step\(k)")
                opt.step()
                assertClose(p0, try c.tensor("p0_after_step\(k)"), rtol: 1e-6, atol: 1e-7, "\(c.name) p0 step \(k)")
                assertClose(p1, try c.tensor("p1_after_step\(k)"), rtol: 1e-6, atol: 1e-7, "\(c.name) p1 step \(k)")
            }
            if try c.float("momentum") > 0 {
                assertClose(opt.momentumBuffer(0), try c.tensor("p0_momentum_final"), rtol: 1e-6, atol: 1e-7, "\(c.name) buf0")
                assertClose(opt.momentumBuffer(1), try c.tensor("p1_momentum_final"), rtol: 1e-6, atol: 1e-7, "\(c.name) buf1")
            } else {
                XCTAssertNil(opt.momentumBuffer(0), "\(c.name): no momentum, no buffer")
            }
        }
    }

    /// d = g + wd*w; buf = d (first step), then m*buf + d; w -= lr*buf, worked by hand.
    func testHandWorkedSteps() {
        let w = Tensor(shape: [1], values: [1], requiresGrad: true)
        let opt = SGD(parameters: [w], schedule: .constant(0.5), momentum: 0.9, weightDecay: 0.1)
        w.grad = Tensor(shape: [1], values: [2])
        opt.step()  // d = 2 + 0.1 = 2.1; buf = 2.1; w = 1 - 1.05 = -0.05
        XCTAssertEqual(w.data[0], -0.05, accuracy: 1e-6)
        w.grad = Tensor(shape: [1], values: [1])
        opt.step()  // d = 1 - 0.005 = 0.995; buf = 1.89 + 0.995 = 2.885; w = -0.05 - 1.4425 = -1.4925
        XCTAssertEqual(w.data[0], -1.4925, accuracy: 1e-6)
        XCTAssertEqual(opt.stepCount, 2)
    }

    func testWeightDecayWithoutMomentum() {
        let w = Tensor(shape: [2], values: [1, -2], requiresGrad: true)
        let opt = SGD(parameters: [w], schedule: .constant(0.5), weightDecay: 0.1)
        w.grad = Tensor(shape: [2], values: [2, 0])
        opt.step()  // w -= 0.5 * (g + 0.1 w): 1 - 0.5 * 2.1 = -0.05; -2 - 0.5 * (-0.2) = -1.9
        XCTAssertEqual(w.data[0], -0.05, accuracy: 1e-6)
        XCTAssertEqual(w.data[1], -1.9, accuracy: 1e-6)
        XCTAssertNil(opt.momentumBuffer(0), "no momentum, no buffer")
    }

    func testParametersWithoutGradientsStayPut() {
        let w = Tensor(shape: [2], values: [1, 2], requiresGrad: true)
        let idle = Tensor(shape: [2], values: [3, 4], requiresGrad: true)
        let opt = SGD(parameters: [w, idle], schedule: .constant(0.1), momentum: 0.9, weightDecay: 0.5)
        w.grad = Tensor(shape: [2], values: [1, 1])
        opt.step()
        XCTAssertEqual(idle.values, [3, 4], "a parameter without a gradient must not move (not even weight decay)")
        XCTAssertNotEqual(w.values, [1, 2])
        XCTAssertNotNil(opt.momentumBuffer(0))
        XCTAssertNil(opt.momentumBuffer(1))
    }

    /// Saving the state mid-run and loading it into a fresh optimizer continues bit-identically.
    func testStateRoundTripContinuesExactly() throws {
        func grads(_ k: Int) -> [Float] { [Float(k) * 0.3 - 1, 0.7, Float(k % 3)] }
        func makeRun() -> (Tensor, SGD) {
            let w = Tensor(shape: [3], values: [0.5, -1, 2], requiresGrad: true)
            return (w, SGD(parameters: [w], schedule: .multiStep(base: 0.1, milestones: [2], gamma: 0.1),
                           momentum: 0.9, weightDecay: 5e-4, nesterov: true))
        }
        let (a, optA) = makeRun()
        for k in 0..<6 {
            optA.beginEpoch(k / 2)
            a.grad = Tensor(shape: [3], values: grads(k))
            optA.step()
        }
        let (b, optB) = makeRun()
        for k in 0..<3 {
            optB.beginEpoch(k / 2)
            b.grad = Tensor(shape: [3], values: grads(k))
            optB.step()
        }
        let saved = optB.state
        let encoded = try JSONEncoder().encode(saved)
        let (c, optC) = makeRun()
        c.copy(from: b)
        try optC.load(try JSONDecoder().decode(SGDState.self, from: encoded))
        XCTAssertEqual(optC.state, saved)
        for k in 3..<6 {
            optC.beginEpoch(k / 2)
            c.grad = Tensor(shape: [3], values: grads(k))
            optC.step()
        }
        XCTAssertEqual(c.values, a.values, "resumed run must be bit-identical")
        XCTAssertEqual(optC.stepCount, 6)
    }

    func testLoadRejectsMismatchedState() {
        let w = Tensor(shape: [3], values: [0, 0, 0], requiresGrad: true)
        let opt = SGD(parameters: [w], schedule: .constant(0.1), momentum: 0.9)
        let bad = SGDState(epoch: 0, stepCount: 1, learningRate: 0.1, momentumBuffers: [[1, 2]])
        XCTAssertThrowsError(try opt.load(bad)) { error in
            XCTAssertTrue("\(error)".contains("momentum buffer 0 has 2 values"), "\(error)")
        }
    }

    func testSchedules() {
        let constant = ConstantLearningRate(0.05)
        XCTAssertEqual(constant.learningRate(epoch: 0), 0.05)
        XCTAssertEqual(constant.learningRate(epoch: 1000), 0.05)

        let multi = MultiStepLearningRate(base: 0.1, milestones: [50, 100, 125], gamma: 0.1)
        XCTAssertEqual(multi.learningRate(epoch: 0), 0.1)
        XCTAssertEqual(multi.learningRate(epoch: 49), 0.1)
        XCTAssertEqual(multi.learningRate(epoch: 50), 0.01, accuracy: 1e-9)
        XCTAssertEqual(multi.learningRate(epoch: 100), 0.001, accuracy: 1e-10)
        XCTAssertEqual(multi.learningRate(epoch: 149), 0.0001, accuracy: 1e-11)

        let opt = SGD(parameters: [], schedule: multi)
        opt.beginEpoch(60)
        XCTAssertEqual(opt.learningRate, 0.01, accuracy: 1e-9)
        XCTAssertEqual(opt.state.epoch, 60)
    }
}
