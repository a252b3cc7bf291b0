import Autodiff
import Checkpoint
import Foundation
import Nets
import PythonBridge
import TestSupport
import XCTest

/// `scripts/load_in_pytorch.py` (what the README shows): our checkpoints loaded into the
/// PyTorch reference nets (`../shared/reference/models.py`) give our eval logits.
final class PyTorchLoadTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder("torch") }

    private let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    /// All four nets, uniform and with skewed (NeuralScale-like) widths that turn identity
    /// shortcuts into projections, at 32x32 and 64x64 (the extra strides), after one SGD step so
    /// the BN running statistics are not the identity.
    func testReferenceNetsGiveOurLogits() throws {
        let models = root.deletingLastPathComponent().appendingPathComponent("shared/reference/models.py").path
        // A skip even under CI: neither ../shared/reference nor torch comes with a checkout and
        // scripts/install-deps.sh (see TestSupport's `pythonModulesInstalledByScripts`).
        guard FileManager.default.fileExists(atPath: models) else { throw XCTSkip("no reference nets at \(models)") }
        try requirePython(modules: ["torch", "h5py", "numpy"])

        let cases: [(Architecture, skewed: Bool, size: Int, channels: Int)] = [
            (.vgg11, false, 32, 1), (.vgg11, true, 32, 3), (.mobilenetv2, true, 64, 3), (.mobilenetv2, false, 32, 3),
            (.preactResNet18, true, 64, 3), (.resnet50, true, 32, 3),
        ]
        var arguments = [root.appendingPathComponent("scripts/load_in_pytorch.py").path]
        for (k, c) in cases.enumerated() {
            var d = NetDescription.uniform(c.0, ratio: 0.125, inChannels: c.channels, imageSize: c.size, classes: 10)
            if c.skewed { d.widths = d.widths.enumerated().map { max(1, Int(Double($1) * [1.0, 1.5, 0.75][$0 % 3])) } }
            let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: UInt64(20 + k))))
            let opt = SGD(parameters: net.parameters, schedule: .constant(0.05), momentum: 0.9)
            var rng = RandomGenerator(seed: UInt64(40 + k))
            crossEntropy(net.logits(Tensor.randn([4, c.channels, c.size, c.size], using: &rng), training: true), labels: [1, 2, 3, 4]).backward()
            opt.step()
            let x = Tensor.randn([3, c.channels, c.size, c.size], using: &rng)
            let logits = Tape.withoutGradients { net.logits(x, training: false) }
            let base = folder.appendingPathComponent("\(k)-\(c.0.rawValue)").path
            try Checkpoint.save(net, optimizer: opt, to: base + ".h5")
            try NPY.write(x, to: base + "-x.npy")
            try NPY.write(logits, to: base + "-logits.npy")
            arguments += ["--compare", base + ".h5", base + "-x.npy", base + "-logits.npy"]
        }
        let (status, output, errors) = try Python.run(arguments + ["--tolerance", "1e-5"])
        XCTAssertEqual(status, 0, output + errors)
        XCTAssertEqual(output.split(separator: "\n").filter { $0.hasPrefix("ok ") }.count, cases.count, output + errors)
    }
}
