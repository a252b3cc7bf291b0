import Autodiff
import XCTest

/// Forward values and gradients against PyTorch (Reference/make_reference.py).
final class ReferenceTests: XCTestCase {
    /// Runs `forward`, back-propagates the case's `dy` and compares `y` and the gradient of every
    /// input; the reference must hold each (`d<name>`), or the case fails.
    private func check(_ c: ReferenceCase, inputs: [String: Tensor], rtol: Float = 1e-4, atol: Float = 1e-5,
                       _ label: String = "", file: StaticString = #filePath, line: UInt = #line,
                       _ forward: () -> Tensor) throws {
        let y = forward()
        assertClose(y, try c.tensor("y"), rtol: rtol, atol: atol, "\(c.op) \(c.name) \(label): y", file: file, line: line)
        y.backward(seed: try c.tensor("dy"))
        for (name, t) in inputs.sorted(by: { $0.key < $1.key }) {
            assertClose(t.grad, try c.tensor("d" + name), rtol: rtol, atol: atol, "\(c.op) \(c.name) \(label): d\(name)",
                        file: file, line: line)
        }
    }

    func testConv2d() throws {
        // Every kernel path: blocks of several images or one, NCHW-direct GEMMs, each patch copy.
        try forEachConvPath { path in
            for c in try ReferenceFile.load("conv2d.json").cases {
                let x = try c.tensor("x", requiresGrad: true), w = try c.tensor("weight", requiresGrad: true)
                let b = try c.flag("has_bias") ? try c.tensor("bias", requiresGrad: true) : nil
                var inputs = ["x": x, "weight": w]
                if let b { inputs["bias"] = b }
                let stride = try c.pair("stride"), padding = try c.pair("padding"), groups = try c.int("groups")
                try check(c, inputs: inputs, path) {
                    conv2d(x, weight: w, bias: b, stride: stride, padding: padding, groups: groups)
                }
            }
        }
    }

    func testBatchNorm() throws {
        for c in try ReferenceFile.load("batchnorm.json").cases {
            let x = try c.tensor("x", requiresGrad: true)
            let w = try c.tensor("weight", requiresGrad: true), b = try c.tensor("bias", requiresGrad: true)
            let rm = try c.tensor("running_mean"), rv = try c.tensor("running_var")
            let training = try c.flag("training"), momentum = try c.float("momentum"), eps = try c.float("eps")
            try check(c, inputs: ["x": x, "weight": w, "bias": b]) {
                batchNorm2d(x, weight: w, bias: b, runningMean: rm, runningVar: rv,
                            training: training, momentum: momentum, eps: eps)
            }
            assertClose(rm, try c.tensor("running_mean_out"), rtol: 1e-5, atol: 1e-6, "\(c.name): running_mean")
            assertClose(rv, try c.tensor("running_var_out"), rtol: 1e-5, atol: 1e-6, "\(c.name): running_var")
        }
    }

    func testGatedBatchNorm() throws {
        for c in try ReferenceFile.load("batchnorm_gated.json").cases {
            let x = try c.tensor("x", requiresGrad: true), gate = try c.tensor("gate", requiresGrad: true)
            let w = try c.tensor("weight", requiresGrad: true), b = try c.tensor("bias", requiresGrad: true)
            let rm = try c.tensor("running_mean"), rv = try c.tensor("running_var")
            let act = try XCTUnwrap(Activation(rawValue: try c.text("activation")), "\(c.name): activation")
            let training = try c.flag("training"), momentum = try c.float("momentum"), eps = try c.float("eps")
            try check(c, inputs: ["x": x, "weight": w, "bias": b, "gate": gate]) {
                batchNorm2d(x, weight: w, bias: b, runningMean: rm, runningVar: rv,
                            training: training, momentum: momentum, eps: eps, activation: act, gate: gate)
            }
        }
    }

    func testPooling() throws {
        for c in try ReferenceFile.load("pool.json").cases {
            let x = try c.tensor("x", requiresGrad: true)
            switch c.op {
            case "maxpool2d":
                let k = try c.pair("kernel"), s = try c.pair("stride"), p = try c.pair("padding")
                try check(c, inputs: ["x": x]) { maxPool2d(x, kernel: k, stride: s, padding: p) }
            case "avgpool2d":
                let k = try c.pair("kernel"), s = try c.pair("stride"), p = try c.pair("padding")
                try check(c, inputs: ["x": x]) { avgPool2d(x, kernel: k, stride: s, padding: p) }
            case "global_avgpool":
                try check(c, inputs: ["x": x]) { globalAvgPool(x) }
            default:
                XCTFail("pool.json: unknown op \(c.op)")
            }
        }
    }

    func testCrossEntropy() throws {
        for c in try ReferenceFile.load("loss.json").cases {
            let logits = try c.tensor("logits", requiresGrad: true)
            let labels = try c.tensor("labels").values.map { Int32($0) }
            let loss = crossEntropy(logits, labels: labels)
            assertClose(loss, try c.tensor("loss"), "\(c.name): loss")
            loss.backward()
            assertClose(logits.grad, try c.tensor("dlogits"), rtol: 1e-4, atol: 1e-6, "\(c.name): dlogits")
        }
    }

    func testLinearAndMatmul() throws {
        for c in try ReferenceFile.load("linear.json").cases {
            if c.op == "linear" {
                let x = try c.tensor("x", requiresGrad: true)
                let w = try c.tensor("weight", requiresGrad: true), b = try c.tensor("bias", requiresGrad: true)
                try check(c, inputs: ["x": x, "weight": w, "bias": b]) { linear(x, weight: w, bias: b) }
            } else {
                let a = try c.tensor("a", requiresGrad: true), b = try c.tensor("b", requiresGrad: true)
                try check(c, inputs: ["a": a, "b": b]) { matmul(a, b) }
            }
        }
    }

    func testSelectChannels() throws {
        for c in try ReferenceFile.load("channels.json").cases {
            guard case let .list(channels)? = c.attrs["channels"] else { return XCTFail("\(c.name): no channel list") }
            let x = try c.tensor("x", requiresGrad: true)
            try check(c, inputs: ["x": x]) { selectChannels(x, channels.map { Int($0) }) }
        }
    }

    func testActivations() throws {
        for c in try ReferenceFile.load("activation.json").cases {
            let x = try c.tensor("x", requiresGrad: true)
            try check(c, inputs: ["x": x]) { c.op == "relu" ? relu(x) : relu6(x) }
        }
    }
}
