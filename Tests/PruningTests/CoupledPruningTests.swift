import Autodiff
import Foundation
import Nets
import Pruning
import TestSupport
import XCTest

/// `descend --couple-residuals`: the groups joined by identity shortcuts, pruned as one.
final class CoupledPruningTests: XCTestCase {
    /// The residual streams of each net, from the spec's block plans: a block joins its input and
    /// output groups when its stride is 1 and both widths are equal.
    func testIdentityCouplingOfEveryNet() {
        func coupling(_ arch: Architecture, _ size: Int) -> [[Int]] {
            NetDescription.uniform(arch, ratio: 0.5, inChannels: 3, imageSize: size, classes: 10).identityCoupling
        }
        XCTAssertEqual(coupling(.vgg11, 32), [])
        // Groups: stem 0, block b's inner 1+2b and output 2+2b; stride 2 at blocks 2, 4, 6 (and 0 at 64 px).
        XCTAssertEqual(coupling(.preactResNet18, 32), [[0, 2, 4], [6, 8], [10, 12], [14, 16]])
        XCTAssertEqual(coupling(.preactResNet18, 64), [[2, 4], [6, 8], [10, 12], [14, 16]])
        // Groups: stem 0, bottleneck b's output b+1 (16, 24x2, 32x3, 64x4, 96x3, 160x3, 320), head 18.
        let mobile = [[2, 3], [4, 5, 6], [7, 8, 9, 10], [11, 12, 13], [14, 15, 16]]
        XCTAssertEqual(coupling(.mobilenetv2, 32), mobile)
        XCTAssertEqual(coupling(.mobilenetv2, 64), mobile)
        // Groups: stem 0, bottleneck b's widths 1+3b, 2+3b and output 3+3b; stages of 3, 4, 6, 3,
        // each opened by a projection.
        XCTAssertEqual(coupling(.resnet50, 32), [[3, 6, 9], [12, 15, 18, 21], [24, 27, 30, 33, 36, 39], [42, 45, 48]])
        // A net whose ends differ keeps only the identity blocks it has.
        var d = NetDescription.uniform(.preactResNet18, ratio: 0.5, inChannels: 3, imageSize: 32, classes: 10)
        d.widths[2] += 1
        XCTAssertEqual(d.identityCoupling, [[6, 8], [10, 12], [14, 16]])
    }

    /// A unit's score is the Taylor term of one gate shared by its groups: per minibatch the square
    /// of the summed `g * dL/dg`; its channel goes from every group at once.
    func testCoupledScoresAndPruning() throws {
        let a = Tensor.filled([3], with: 1, requiresGrad: true), b = Tensor.filled([3], with: 1, requiresGrad: true)
        let c = Tensor.filled([2], with: 1, requiresGrad: true)
        let sites = [a, c, b].map { GateSite(gate: $0, dead: []) }  // groups 0 and 2 coupled
        let pruner = try Pruner(sites: sites, settings: PruningSettings(frequency: 1, count: 1, maxFraction: 0.95),
                                coupling: [[2, 0]]) { $0.reduce(0, +) }
        XCTAssertEqual(pruner.units, [[0, 2], [1]])
        // dL/dg: group 0 [1, -2, 3], group 2 [1, 2, 0.5], group 1 [1.5, 4].
        channelScale(Tensor.filled([1, 3, 1, 1], with: 1), a).backward(seed: Tensor(shape: [1, 3, 1, 1], values: [1, -2, 3]))
        channelScale(Tensor.filled([1, 3, 1, 1], with: 1), b).backward(seed: Tensor(shape: [1, 3, 1, 1], values: [1, 2, 0.5]))
        channelScale(Tensor.filled([1, 2, 1, 1], with: 1), c).backward(seed: Tensor(shape: [1, 2, 1, 1], values: [1.5, 4]))
        pruner.accumulate()
        // (1 + 1)^2, (-2 + 2)^2, (3 + 0.5)^2: the opposite terms of channel 1 cancel (removing it
        // from both changes the loss by nothing to first order), while alone each would score 4.
        XCTAssertEqual(pruner.scores[0], [4, 0, 12.25])
        XCTAssertEqual(pruner.scores[1], [2.25, 16])
        XCTAssertNil(a.grad)
        XCTAssertNil(b.grad)
        let pruned = pruner.step(optimizer: nil)
        XCTAssertEqual(pruned.map { [$0.group, $0.channel] }, [[0, 1], [2, 1]])
        XCTAssertEqual(a.values, [1, 0, 1])
        XCTAssertEqual(b.values, [1, 0, 1])
        XCTAssertEqual(c.values, [1, 1])
        XCTAssertEqual(pruner.widths, [2, 2, 2])
        // The same gradients again: unit channel 0 scores 4 against group 1's channel 0 at 2.25,
        // but it removes two filters, 2 per filter: it goes first.
        channelScale(Tensor.filled([1, 3, 1, 1], with: 1), a).backward(seed: Tensor(shape: [1, 3, 1, 1], values: [1, -2, 3]))
        channelScale(Tensor.filled([1, 3, 1, 1], with: 1), b).backward(seed: Tensor(shape: [1, 3, 1, 1], values: [1, 2, 0.5]))
        channelScale(Tensor.filled([1, 2, 1, 1], with: 1), c).backward(seed: Tensor(shape: [1, 2, 1, 1], values: [1.5, 4]))
        pruner.accumulate()
        XCTAssertEqual(pruner.scores[0], [4, 0, 12.25], "a pruned channel's gates are 0: no score")
        XCTAssertEqual(pruner.step(optimizer: nil).map { [$0.group, $0.channel] }, [[0, 0], [2, 0]])

        // The state round trip keeps the unit scores.
        let again = try Pruner(sites: sites, settings: pruner.settings, coupling: [[0, 2]]) { $0.reduce(0, +) }
        XCTAssertNoThrow(try again.restore(pruner.state))
        let alone = Pruner(sites: sites, settings: pruner.settings) { $0.reduce(0, +) }
        XCTAssertThrowsError(try alone.restore(pruner.state), "a coupled state into an uncoupled pruner")

        // Sets must be disjoint groups of one width with the same alive channels.
        XCTAssertThrowsError(try Pruner(sites: sites, settings: pruner.settings, coupling: [[0, 1]]) { _ in 0 }) {
            XCTAssertTrue("\($0)".contains("differ in width"), "\($0)")
        }
        XCTAssertThrowsError(try Pruner(sites: sites, settings: pruner.settings, coupling: [[0, 2], [2, 1]]) { _ in 0 })
        XCTAssertThrowsError(try Pruner(sites: sites, settings: pruner.settings, coupling: [[0, 3]]) { _ in 0 })
        b.data[2] = 0
        XCTAssertThrowsError(try Pruner(sites: sites, settings: pruner.settings, coupling: [[0, 2]]) { _ in 0 }) {
            XCTAssertTrue("\($0)".contains("which channels are alive"), "\($0)")
        }
        XCTAssertThrowsError(try Pruner(sites: sites, settings: pruner.settings, coupling: [[1, 1]]) { _ in 0 }, "a group twice")
    }

    /// Pruning the three residual nets by their Taylor scores with their streams coupled keeps every stream
    /// at one width; surgery then keeps every identity shortcut an identity (no selections, so
    /// the exported graph has no gathers) and computes what the gated net computes.
    func testCoupledPruningKeepsIdentityShortcuts() throws {
        for arch in [Architecture.preactResNet18, .mobilenetv2, .resnet50] {
            let d = NetDescription.uniform(arch, ratio: 0.25, inChannels: 3, imageSize: 32, classes: 4)
            let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 1)), gated: true)
            let coupling = d.identityCoupling
            // A stream's summed score is larger than a single group's, so its channels go later:
            // steps until one has gone.
            let pruner = try Pruner(net, settings: PruningSettings(frequency: 1, count: d.widths.reduce(0, +) / 40), coupling: coupling)
            var rng = RandomGenerator(seed: 2)
            let x = Tensor.randn([4, 3, 32, 32], using: &rng)
            var coupledCuts = 0
            var steps = 0
            while coupledCuts == 0 && steps < 15 {
                steps += 1
                crossEntropy(net.logits(x, training: true), labels: [0, 1, 2, 3]).backward()
                pruner.accumulate()
                let cut = pruner.step(optimizer: nil)
                XCTAssertNil(pruner.stop, "\(arch)")
                coupledCuts += cut.filter { v in coupling.contains { $0.contains(v.group) } }.count
                for set in coupling {
                    let gates = set.map { net.gateSites[$0].gate.values }
                    XCTAssertTrue(gates.allSatisfy { $0 == gates[0] }, "\(arch) \(set): the stream's gates differ")
                }
            }
            XCTAssertGreaterThan(coupledCuts, 0, "\(arch): the test prunes no stream")
            // Eval mode with BN statistics that are not the identity.
            randomizeNormalization(net, using: &rng)
            print("\(arch): a stream pruned after \(steps) steps of \(pruner.settings.count) channels")
            let small = try Surgery.prune(net)
            let e = small.netDescription
            XCTAssertNil(e.shortcuts, "\(arch): the pruned net needs no listed shortcuts")
            XCTAssertEqual(e.identityCoupling, coupling, "\(arch): every identity shortcut survives")
            XCTAssertEqual(e.resolvedShortcuts.filter { $0 == .identity }.count, d.resolvedShortcuts.filter { $0 == .identity }.count)
            let a = Tape.withoutGradients { net.logits(x, training: false) }.values
            let b = Tape.withoutGradients { small.logits(x, training: false) }.values
            let scale = a.map(abs).max()!, diff = zip(a, b).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(diff, 1e-4 * scale, "\(arch): max |diff| \(diff), scale \(scale)")
        }
    }
}
