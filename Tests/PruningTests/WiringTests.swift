import Autodiff
import Nets
import Pruning
import XCTest

/// The wiring traced from the nets' forward passes, held to the rules of each net written out
/// by hand: which group each tensor's axes run over, and what dies with a pruned channel.
final class WiringTests: XCTestCase {
    private func axes(_ net: Network) -> [String: ChannelAxes] { net.channelAxes }
    private func ax(_ rows: Int?, _ columns: Int?) -> ChannelAxes { ChannelAxes(rows: rows, columns: columns) }

    /// The dead tensors of each gate site, by name.
    private func dead(_ net: Network) -> [[String]] {
        var names: [ObjectIdentifier: String] = [:]
        for t in net.state { names[ObjectIdentifier(t.tensor)] = t.name }
        return net.gateSites.map { $0.dead.map { names[ObjectIdentifier($0)]! }.sorted() }
    }

    private func net(_ arch: Architecture, size: Int = 32, gated: Bool = false) throws -> Network {
        try makeNetwork(.uniform(arch, ratio: 0.125, inChannels: 3, imageSize: size, classes: 5), initialization: .none, gated: gated)
    }

    func testVGG11() throws {
        let a = axes(try net(.vgg11))
        XCTAssertEqual(a["features.0.weight"], ax(0, nil))
        XCTAssertEqual(a["features.4.weight"], ax(1, 0))
        XCTAssertEqual(a["features.5.running_var"], ax(1, nil))
        XCTAssertEqual(a["classifier.weight"], ax(nil, 7))
        XCTAssertEqual(a["classifier.bias"], ax(nil, nil))
        let d = dead(try net(.vgg11, gated: true))
        XCTAssertEqual(d.count, 8)
        XCTAssertEqual(d[1], ["features.4.bias", "features.4.weight", "features.5.bias", "features.5.weight"])
    }

    func testResNet50() throws {
        let a = axes(try net(.resnet50))
        // Block 0: stem group 0 in; groups 1, 2, 3; a projection shortcut.
        XCTAssertEqual(a["blocks.0.conv1.weight"], ax(1, 0))
        XCTAssertEqual(a["blocks.0.conv3.weight"], ax(3, 2))
        XCTAssertEqual(a["blocks.0.down.0.weight"], ax(3, 0))
        XCTAssertEqual(a["blocks.0.down.1.weight"], ax(3, nil))
        // Block 1 reads block 0's output group 3 (identity shortcut).
        XCTAssertEqual(a["blocks.1.conv1.weight"], ax(4, 3))
        XCTAssertEqual(a["fc.weight"], ax(nil, 48))
        let d = dead(try net(.resnet50, gated: true))
        XCTAssertEqual(d.count, 49)
        XCTAssertEqual(d[3], ["blocks.0.bn3.bias", "blocks.0.bn3.weight", "blocks.0.conv3.weight",
                              "blocks.0.down.0.weight", "blocks.0.down.1.bias", "blocks.0.down.1.weight"])
        XCTAssertEqual(d[6], ["blocks.1.bn3.bias", "blocks.1.bn3.weight", "blocks.1.conv3.weight"])
    }

    func testMobileNetV2() throws {
        let a = axes(try net(.mobilenetv2))
        // Expansion channels are never pruned: only the block's input and output groups cut it.
        XCTAssertEqual(a["blocks.1.residual.0.weight"], ax(nil, 1))
        XCTAssertEqual(a["blocks.1.residual.1.weight"], ax(nil, nil))
        XCTAssertEqual(a["blocks.1.residual.3.weight"], ax(nil, nil))
        XCTAssertEqual(a["blocks.1.residual.6.weight"], ax(2, nil))
        XCTAssertEqual(a["blocks.1.residual.7.weight"], ax(2, nil))
        XCTAssertEqual(a["blocks.1.shortcut.0.weight"], ax(2, 1))
        XCTAssertEqual(a["conv1.0.weight"], ax(18, 17))
        XCTAssertEqual(a["conv2.weight"], ax(nil, 18))
        let d = dead(try net(.mobilenetv2, gated: true))
        XCTAssertEqual(d.count, 19)
        XCTAssertEqual(d[0], ["pre.0.bias", "pre.0.weight", "pre.1.bias", "pre.1.weight"])
        XCTAssertEqual(d[18], ["conv1.0.bias", "conv1.0.weight", "conv1.1.bias", "conv1.1.weight"])
    }

    func testPreActResNet18() throws {
        let a = axes(try net(.preactResNet18))
        // A block's bn1 normalizes its input: the stem's or the previous block's output group.
        XCTAssertEqual(a["layers.0.bn1.weight"], ax(0, nil))
        XCTAssertEqual(a["layers.1.bn1.weight"], ax(2, nil))
        XCTAssertEqual(a["layers.2.conv1.weight"], ax(5, 4))
        // The projection reads the pre-activation of the block's input group.
        XCTAssertEqual(a["layers.2.shortcut.weight"], ax(6, 4))
        XCTAssertEqual(a["bn.weight"], ax(16, nil))
        XCTAssertEqual(a["linear.weight"], ax(nil, 16))
        let d = dead(try net(.preactResNet18, gated: true))
        XCTAssertEqual(d.count, 17)
        // A pruned output channel kills the rows that make it and the BN that consumes it.
        XCTAssertEqual(d[0], ["conv1.weight", "layers.0.bn1.bias", "layers.0.bn1.weight"])
        XCTAssertEqual(d[2], ["layers.0.conv2.weight", "layers.1.bn1.bias", "layers.1.bn1.weight"])
        XCTAssertEqual(d[6], ["layers.2.conv2.weight", "layers.2.shortcut.weight", "layers.3.bn1.bias", "layers.3.bn1.weight"])
        XCTAssertEqual(d[16], ["bn.bias", "bn.weight", "layers.7.conv2.weight"])
    }

    /// Every tensor of every net but the gates has axes, and an ungated net has no sites.
    func testEveryTensorIsWired() throws {
        for arch in Architecture.allCases {
            for size in [32, 64] {
                let plain = try net(arch, size: size), gated = try net(arch, size: size, gated: true)
                XCTAssertEqual(Set(axes(plain).keys), Set(plain.state.map(\.name)), "\(arch) \(size)")
                XCTAssertEqual(Set(axes(gated).keys), Set(gated.state.filter { $0.kind != .channelScale }.map(\.name)), "\(arch) \(size)")
                XCTAssertTrue(plain.gateSites.isEmpty)
                XCTAssertFalse(plain.isGated)
                XCTAssertTrue(gated.isGated)
                XCTAssertEqual(gated.gateSites.count, arch.originalWidths.count)
            }
        }
    }
}

final class GroupNameTests: XCTestCase {
    /// The names traced from the forward passes, as descent.json and the trajectory CSVs write
    /// them; also for gated and surgery nets at 32 and 64 pixels.
    func testGroupNames() throws {
        let expected: [Architecture: [String]] = [
            .vgg11: ["features.0", "features.4", "features.8", "features.11", "features.15", "features.18", "features.22", "features.25"],
            .mobilenetv2: ["pre.0"] + (0..<17).map { "blocks.\($0)" } + ["conv1.0"],
            .preactResNet18: ["conv1"] + (0..<8).flatMap { ["layers.\($0).conv1", "layers.\($0)"] },
            .resnet50: ["stem.0"] + (0..<16).flatMap { ["blocks.\($0).conv1", "blocks.\($0).conv2", "blocks.\($0)"] },
        ]
        for arch in Architecture.allCases {
            XCTAssertEqual(arch.groupNames, expected[arch], "\(arch)")
            for size in [32, 64] {
                let d = NetDescription.uniform(arch, ratio: 0.125, inChannels: 3, imageSize: size, classes: 5)
                let gated = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 2)), gated: true)
                let pruner = Pruner(gated, settings: PruningSettings())
                for (g, w) in d.widths.enumerated() {
                    for c in 0..<w where c % 3 == g % 3 && c > 0 { pruner.prune(group: g, channel: c, optimizer: nil) }
                }
                for net in [gated, try Surgery.prune(gated)] {
                    XCTAssertEqual(net.wiring.groupNames, expected[arch], "\(arch) \(size)")
                }
            }
        }
    }
}
