import Autodiff
import Foundation
import Nets
import XCTest

final class NetTests: XCTestCase {
    /// Every (model, in-channels, classes, ratio) of the PyTorch reference, exactly.
    func testParameterCountsMatchTheReference() throws {
        struct Counts: Decodable { let counts: [String: Int] }
        let url = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("Reference/param_counts.json")
        let counts = try JSONDecoder().decode(Counts.self, from: Data(contentsOf: url)).counts
        XCTAssertEqual(counts.count, 88)
        for (key, expected) in counts.sorted(by: { $0.key < $1.key }) {
            let parts = key.split(separator: "/").map(String.init)
            let arch = try XCTUnwrap(Architecture(rawValue: parts[0]), key)
            let d = NetDescription.uniform(arch, ratio: try XCTUnwrap(Double(parts[3])), inChannels: Int(parts[1])!,
                                           imageSize: 32, classes: Int(parts[2])!)
            let net = try makeNetwork(d, initialization: .none)
            XCTAssertEqual(net.parameterCount, expected, key)
            XCTAssertEqual(d.parameterCount, expected, "\(key) (analytic)")
        }
    }

    /// The analytic P(config) equals the built net's count for random width configs, both
    /// image sizes (64x64 changes PreAct's and MobileNetV2's shortcuts).
    func testAnalyticCountsMatchBuiltNets() throws {
        var rng = RandomGenerator(seed: 21)
        for arch in Architecture.allCases {
            for size in [32, 64] {
                for _ in 0..<6 {
                    let widths = arch.originalWidths.map { 1 + Int(rng.next() % UInt64(max(1, $0 / 8))) }
                    let d = NetDescription(architecture: arch, inChannels: 1 + Int(rng.next() % 3), imageSize: size,
                                           classes: 2 + Int(rng.next() % 20), widths: widths)
                    XCTAssertEqual(d.parameterCount, try makeNetwork(d, initialization: .none).parameterCount, "\(arch) \(size) \(widths)")
                }
                let uniform = NetDescription.uniform(arch, ratio: 0.25, inChannels: 3, imageSize: size, classes: 10)
                XCTAssertEqual(uniform.parameterCount, try makeNetwork(uniform, initialization: .none).parameterCount)
            }
        }
    }

    func testWidthGroupsAndUniformScaling() {
        XCTAssertEqual(Architecture.vgg11.originalWidths.count, 8)
        XCTAssertEqual(Architecture.mobilenetv2.originalWidths.count, 19)
        XCTAssertEqual(Architecture.preactResNet18.originalWidths.count, 17)
        XCTAssertEqual(Architecture.resnet50.originalWidths.count, 49)
        // Int(width * ratio) truncates: 96 * 0.75 = 72, 160 * 0.3 = 48, 1280 * 0.33 = 422.4 -> 422.
        XCTAssertEqual(Architecture.mobilenetv2.uniformWidths(ratio: 0.75)[11], 72)
        XCTAssertEqual(Architecture.mobilenetv2.uniformWidths(ratio: 0.33)[18], 422)
        XCTAssertEqual(Architecture.vgg11.uniformWidths(ratio: 0.25), [16, 32, 64, 64, 128, 128, 128, 128])
    }

    func testPyTorchStyleNames() throws {
        func names(_ a: Architecture) throws -> [String] {
            try makeNetwork(.uniform(a, ratio: 0.25, inChannels: 3, imageSize: 32, classes: 10), initialization: .none)
                .state.map(\.name)
        }
        let vgg = try names(.vgg11)
        XCTAssertEqual(Array(vgg.prefix(6)), ["features.0.weight", "features.0.bias", "features.1.weight",
                                              "features.1.bias", "features.1.running_mean", "features.1.running_var"])
        XCTAssertTrue(vgg.contains("features.4.weight") && vgg.contains("features.25.weight"), "conv2 at 4, conv8 at 25")
        XCTAssertEqual(Array(vgg.suffix(2)), ["classifier.weight", "classifier.bias"])
        let mobile = try names(.mobilenetv2)
        for n in ["pre.0.weight", "blocks.0.residual.3.weight", "blocks.0.residual.7.running_var",
                  "blocks.1.shortcut.0.weight", "conv1.1.bias", "conv2.weight"] {
            XCTAssertTrue(mobile.contains(n), n)
        }
        XCTAssertFalse(mobile.contains("blocks.2.shortcut.0.weight"), "24 -> 24 stride 1 is an identity shortcut")
        let preact = try names(.preactResNet18)
        for n in ["conv1.weight", "layers.0.bn1.weight", "layers.2.shortcut.weight", "bn.running_mean", "linear.bias"] {
            XCTAssertTrue(preact.contains(n), n)
        }
        XCTAssertFalse(preact.contains("layers.1.shortcut.weight"))
        XCTAssertFalse(preact.contains("layers.0.shortcut.weight"), "32x32: stage 1 keeps stride 1, identity shortcut")
        let preact64 = try makeNetwork(.uniform(.preactResNet18, ratio: 0.25, inChannels: 3, imageSize: 64, classes: 10),
                                       initialization: .none).state.map(\.name)
        XCTAssertTrue(preact64.contains("layers.0.shortcut.weight"), "64x64: stage 1 strides 2, so its first block projects")
        let resnet = try names(.resnet50)
        for n in ["stem.0.weight", "stem.1.running_var", "blocks.0.down.0.weight", "blocks.15.conv3.weight", "fc.weight"] {
            XCTAssertTrue(resnet.contains(n), n)
        }
        XCTAssertFalse(resnet.contains("blocks.1.down.0.weight"))
        for list in [vgg, mobile, preact, resnet] { XCTAssertEqual(Set(list).count, list.count, "names are unique") }
    }

    /// Every net runs forward and backward at 32x32 and 64x64 and gives [N, classes] logits;
    /// every parameter receives a gradient.
    func testForwardBackwardShapes() throws {
        for arch in Architecture.allCases {
            for size in [32, 64] {
                let d = NetDescription.uniform(arch, ratio: 0.0625, inChannels: 3, imageSize: size, classes: 7)
                let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 1)))
                var rng = RandomGenerator(seed: 2)
                let x = Tensor.randn([2, 3, size, size], using: &rng)
                let logits = net.logits(x, training: true)
                XCTAssertEqual(logits.shape, [2, 7], "\(arch) \(size)")
                crossEntropy(logits, labels: [1, 6]).backward()
                for p in net.state where p.kind == .parameter {
                    XCTAssertNotNil(p.tensor.grad, "\(arch) \(size): \(p.name) got no gradient")
                }
                let eval = Tape.withoutGradients { net.logits(x, training: false) }
                XCTAssertFalse(eval.values.contains { !$0.isFinite }, "\(arch) \(size): eval logits finite")
            }
        }
    }

    func testInitializationIsSeededAndDocumented() throws {
        let d = NetDescription.uniform(.vgg11, ratio: 0.25, inChannels: 3, imageSize: 32, classes: 10)
        let a = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 4)))
        let b = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 4)))
        XCTAssertEqual(a.state.map(\.tensor.values), b.state.map(\.tensor.values))
        let byName = Dictionary(uniqueKeysWithValues: a.state.map { ($0.name, $0.tensor) })
        // Kaiming fan-out: conv2 (32 filters of 3x3) has std sqrt(2 / 288) = 0.0833.
        let w = try XCTUnwrap(byName["features.4.weight"]).values
        let std = (w.map { $0 * $0 }.reduce(0, +) / Float(w.count)).squareRoot()
        XCTAssertEqual(std, (2 / Float(32 * 9)).squareRoot(), accuracy: 0.005)
        XCTAssertEqual(byName["features.1.weight"]?.values, [Float](repeating: 1, count: 16))
        XCTAssertEqual(byName["features.1.running_var"]?.values, [Float](repeating: 1, count: 16))
        XCTAssertEqual(byName["classifier.bias"]?.values, [Float](repeating: 0, count: 10))
    }

    func testInvalidDescriptionsNameTheProblem() {
        let bad: [(NetDescription, String)] = [
            (NetDescription(architecture: .vgg11, inChannels: 3, imageSize: 32, classes: 10, widths: [1, 2]), "8 width groups"),
            (NetDescription(architecture: .vgg11, inChannels: 3, imageSize: 32, classes: 10, widths: [4, 4, 4, 0, 4, 4, 4, 4]), "width 3"),
            (NetDescription.uniform(.resnet50, ratio: 1, inChannels: 3, imageSize: 28, classes: 10), "image size 28"),
        ]
        for (d, expected) in bad {
            XCTAssertThrowsError(try makeNetwork(d, initialization: .none)) { error in
                XCTAssertTrue("\(error)".contains(expected), "'\(error)' lacks '\(expected)'")
            }
        }
    }
}

final class GateTests: XCTestCase {
    /// A net with channel scales (the search's gates) has one per width group, of that group's
    /// width; with every scale at 1 it computes exactly what the plain net with the same weights
    /// computes; scales are not parameters (not in P, not trained).
    func testChannelScalesAreTransparentAtOneAndOnePerGroup() throws {
        for arch in Architecture.allCases {
            let d = NetDescription.uniform(arch, ratio: 0.0625, inChannels: 3, imageSize: 32, classes: 5)
            let plain = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 3)))
            let gatedNet = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 3)), channelScales: true)
            XCTAssertEqual(plain.wiring.sites.count, 0)
            XCTAssertFalse(plain.hasChannelScales)
            XCTAssertTrue(gatedNet.hasChannelScales)
            let sites = gatedNet.wiring.sites
            XCTAssertEqual(sites.map(\.scale.count), d.widths, "\(arch): one scale per group, in group order")
            XCTAssertEqual(gatedNet.parameterCount, plain.parameterCount, "\(arch): scales are not parameters")
            XCTAssertEqual(gatedNet.state.filter { $0.kind == .channelScale }.count, d.widths.count)
            for site in sites {
                for t in site.slices { XCTAssertEqual(t.shape[0], site.scale.count, "\(arch): slices match the scale") }
            }
            var rng = RandomGenerator(seed: 4)
            let x = Tensor.randn([2, 3, 32, 32], using: &rng)
            let a = Tape.withoutGradients { plain.logits(x, training: false) }
            let b = Tape.withoutGradients { gatedNet.logits(x, training: false) }
            XCTAssertEqual(a.values, b.values, "\(arch): scales of 1 change nothing")
            crossEntropy(gatedNet.logits(x, training: true), labels: [0, 1]).backward()
            for site in sites { XCTAssertNotNil(site.scale.grad, "\(arch): every scale gets its gradient") }
        }
    }
}
