import Autodiff
import Foundation
import Nets
import Pruning
import TestSupport
import XCTest

/// Surgery: the net of the alive channels computes what the gated net computes.
final class SurgeryTests: XCTestCase {
    /// For every net: random weights and BN statistics, random gates pruned the way the pruner
    /// prunes them, then the outputs of the gated net and of its surgery net, in eval and in
    /// training mode. The gates make every kind of shortcut appear: identity blocks whose ends
    /// lost the same channels stay identity, others become selections, projections stay.
    func testSurgeryPreservesOutputsOfEveryNet() throws {
        for arch in Architecture.allCases {
            // 32x32: PreAct ResNet-18's first two blocks chain identity shortcuts. 64x64: the
            // extra strides of large inputs, and VGG-11's classifier reads 2x2 maps, so a pruned
            // channel takes 4 of its columns.
            for size in [32, 64] {
                try checkSurgery(arch, size: size)
            }
        }
    }

    private func checkSurgery(_ arch: Architecture, size: Int) throws {
        let what = "\(arch) \(size)x\(size)"
        let d = NetDescription.uniform(arch, ratio: 0.125, inChannels: 3, imageSize: size, classes: 5)
        let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 11)), gated: true)
        var rng = RandomGenerator(seed: 12)
        randomizeNormalization(net, using: &rng)
        let alive = randomAlive(d, using: &rng)
        let pruner = Pruner(net, settings: PruningSettings())
        for (k, keep) in alive.enumerated() {
            for c in 0..<d.widths[k] where !keep.contains(c) { pruner.prune(group: k, channel: c, optimizer: nil) }
        }

        let small = try Surgery.prune(net)
        let e = small.netDescription
        XCTAssertEqual(e.widths, alive.map(\.count), "\(what): widths are the alive counts")
        XCTAssertEqual(small.gateSites.count, 0, "\(what): the pruned net is ungated")
        XCTAssertNoThrow(try e.validate())
        XCTAssertEqual(small.parameterCount, e.parameterCount, "\(what): analytic P of the surgery description")
        XCTAssertEqual(try JSONDecoder().decode(NetDescription.self, from: JSONEncoder().encode(e)), e, "\(what): description round trip")
        if arch == .mobilenetv2 {
            XCTAssertEqual(e.expansions, d.resolvedExpansions, "expansion channels are never pruned")
        } else {
            XCTAssertNil(e.expansions)
        }
        let kinds = e.resolvedShortcuts
        if arch != .vgg11 {
            XCTAssertTrue(kinds.contains(.identity), "\(what): an identity shortcut with equal ends survives")
            XCTAssertTrue(kinds.contains { if case .select = $0 { return true } else { return false } },
                          "\(what): an identity shortcut with different ends becomes a selection")
            XCTAssertTrue(kinds.contains(.projection), "\(what): projections stay")
        }

        // Training mode only at 64x64 with 8 images: at 32x32 ResNet-50's last maps are 1x1,
        // and training-mode BN over so few values amplifies float rounding past the tolerance
        // (3 images: 0.4% of scale).
        let x = Tensor.randn([8, 3, size, size], using: &rng)
        for training in size == 64 ? [false, true] : [false] {
            let a = Tape.withoutGradients { net.logits(x, training: training) }.values
            let b = Tape.withoutGradients { small.logits(x, training: training) }.values
            let scale = a.map(abs).max()!
            XCTAssertGreaterThan(scale, 1e-3, "\(what): the outputs are not trivially zero")
            let diff = zip(a, b).map { abs($0 - $1) }.max()!
            print("surgery \(what) training \(training): max |diff| / scale = \(diff / scale)")
            XCTAssertLessThanOrEqual(diff, 1e-4 * scale, "\(what) training \(training): max |diff| \(diff), scale \(scale)")
        }
    }

    /// A pruned net can be gated and pruned again: its selection shortcuts compose and
    /// projections stay, and the second surgery still computes what its gated net computes.
    func testSurgeryOfAPrunedNetPrunedAgain() throws {
        for arch in [Architecture.mobilenetv2, .preactResNet18, .resnet50] {
            let d = NetDescription.uniform(arch, ratio: 0.125, inChannels: 3, imageSize: 32, classes: 5)
            let first = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 31)), gated: true)
            var rng = RandomGenerator(seed: 32)
            let pruner = Pruner(first, settings: PruningSettings())
            for (k, keep) in randomAlive(d, using: &rng).enumerated() {
                for c in 0..<d.widths[k] where !keep.contains(c) { pruner.prune(group: k, channel: c, optimizer: nil) }
            }
            let e = try Surgery.prune(first).netDescription
            XCTAssertTrue(e.resolvedShortcuts.contains { if case .select = $0 { return true } else { return false } }, "\(arch)")
            let second = try makeNetwork(e, initialization: .random(RandomGenerator(seed: 33)), gated: true)
            randomizeNormalization(second, using: &rng)
            let again = Pruner(second, settings: PruningSettings())
            for (k, w) in e.widths.enumerated() where w > 1 {
                for c in 0..<w where rng.uniform() < 0.3 && c != w - 1 { again.prune(group: k, channel: c, optimizer: nil) }
            }
            let small = try Surgery.prune(second)
            XCTAssertNoThrow(try small.netDescription.validate())
            let x = Tensor.randn([4, 3, 32, 32], using: &rng)
            let a = Tape.withoutGradients { second.logits(x, training: false) }.values
            let b = Tape.withoutGradients { small.logits(x, training: false) }.values
            let scale = a.map(abs).max()!, diff = zip(a, b).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(diff, 1e-4 * scale, "\(arch): max |diff| \(diff), scale \(scale)")
        }
    }

    /// Only the alive channels' values survive: a pruned net rebuilt from the gated one twice
    /// is identical, and pruning no channel at all gives back the plain net of the same widths.
    func testSurgeryWithoutPruningIsThePlainNet() throws {
        for arch in Architecture.allCases {
            let d = NetDescription.uniform(arch, ratio: 0.125, inChannels: 1, imageSize: 32, classes: 3)
            let gated = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 5)), gated: true)
            let plain = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 5)))
            let small = try Surgery.prune(gated)
            XCTAssertEqual(small.netDescription, d, "\(arch): nothing pruned, the same description")
            XCTAssertEqual(small.state.map(\.name), plain.state.map(\.name))
            for (s, p) in zip(small.state, plain.state) {
                XCTAssertEqual(s.tensor.values, p.tensor.values, "\(arch): \(s.name) copied exactly")
            }
        }
    }

    func testSurgeryErrors() throws {
        let d = NetDescription.uniform(.vgg11, ratio: 0.125, inChannels: 3, imageSize: 32, classes: 3)
        let plain = try makeNetwork(d, initialization: .none)
        XCTAssertThrowsError(try Surgery.prune(plain)) { XCTAssertEqual($0 as? SurgeryError, .notGated) }
        let gated = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 1)), gated: true)
        let pruner = Pruner(gated, settings: PruningSettings())
        for c in 0..<d.widths[2] { pruner.prune(group: 2, channel: c, optimizer: nil) }
        XCTAssertThrowsError(try Surgery.prune(gated)) { XCTAssertEqual($0 as? SurgeryError, .emptyGroup(2)) }
        gated.gateSites[2].gate.data[0] = 0.5
        XCTAssertThrowsError(try Surgery.prune(gated)) {
            XCTAssertEqual($0 as? SurgeryError, .gateNotBinary(group: 2, channel: 0, value: 0.5))
        }
    }

    /// Descriptions of pruned nets are checked like any other.
    func testInvalidSurgeryDescriptionsAreRejected() {
        var d = NetDescription.uniform(.resnet50, ratio: 0.125, inChannels: 3, imageSize: 32, classes: 3)
        d.shortcuts = Array(repeating: .identity, count: 16)
        XCTAssertThrowsError(try d.validate(), "block 0 changes width: identity is impossible")
        d.shortcuts = [.projection] + Array(repeating: .select([0, 7, -1]), count: 15)
        XCTAssertThrowsError(try d.validate(), "a selection of the wrong length")
        d.shortcuts = nil
        d.expansions = [4]
        XCTAssertThrowsError(try d.validate(), "resnet50 has no expansions")
    }

    /// Random alive channels per group (at least one each), with the leak pattern below. The
    /// last identity block's output keeps exactly its input's channels, so an identity shortcut
    /// survives surgery.
    private func randomAlive(_ d: NetDescription, using rng: inout RandomGenerator) -> [[Int]] {
        var alive = d.widths.map { w -> [Int] in
            let keep = (0..<w).filter { _ in rng.uniform() < 0.6 }
            return keep.isEmpty ? [w - 1] : keep
        }
        // Where two identity blocks follow each other (i -> j -> k), channel 0 is alive in i,
        // pruned in j and alive in k: it must not leak from i into k through the shortcuts.
        let blocks = d.residualBlocks, kinds = d.resolvedShortcuts
        for b in blocks.indices.dropFirst() where kinds[b] == .identity && kinds[b - 1] == .identity {
            let (i, j, k) = (blocks[b - 1].input, blocks[b].input, blocks[b].output)
            if !alive[i].contains(0) { alive[i].insert(0, at: 0) }
            if alive[j].count > 1 { alive[j].removeAll { $0 == 0 } }
            if !alive[k].contains(0) { alive[k].insert(0, at: 0) }
        }
        if let k = d.resolvedShortcuts.lastIndex(of: .identity) {
            let b = d.residualBlocks[k]
            alive[b.output] = alive[b.input]
        }
        return alive
    }
}
