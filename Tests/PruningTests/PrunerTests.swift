import Autodiff
import Foundation
import Nets
import Pruning
import XCTest

final class PrunerTests: XCTestCase {
    /// `y = channelScale(x, g)` with x = 1 and the upstream gradient s: dL/dg_c = s_c, so the Taylor score
    /// of channel c is (1 * s_c)^2 and the channels go in order of |s_c|.
    func testTaylorScoresAndGlobalRankingOnAHandBuiltNet() {
        let g1 = Tensor.filled([4], with: 1, requiresGrad: true), g2 = Tensor.filled([3], with: 1, requiresGrad: true)
        let x1 = Tensor.filled([2, 4, 1, 1], with: 1), x2 = Tensor.filled([2, 3, 1, 1], with: 1)
        // Per image: group 1 s = [0.5, -3, 0.1, 2], group 2 s = [-0.2, 4, 1]; two images add up.
        let s1: [Float] = [0.5, -3, 0.1, 2, 0.5, -3, 0.1, 2], s2: [Float] = [-0.2, 4, 1, -0.2, 4, 1]
        let pruner = Pruner(sites: [GateSite(gate: g1, dead: []), GateSite(gate: g2, dead: [])],
                            settings: PruningSettings(frequency: 2, count: 3, maxFraction: 0.95)) { $0.reduce(0, +) * 10 }
        for _ in 0..<2 {
            channelScale(x1, g1).backward(seed: Tensor(shape: [2, 4, 1, 1], values: s1))
            channelScale(x2, g2).backward(seed: Tensor(shape: [2, 3, 1, 1], values: s2))
            pruner.accumulate()
        }
        // (2 * s)^2 per minibatch, two minibatches, averaged: 4 s^2.
        for (got, want) in zip(pruner.scores[0].map { $0 / 2 }, [1, 36, 0.04, 16]) {
            XCTAssertEqual(got, want, accuracy: 1e-6, "mean score = (g * dL/dg)^2")
        }
        XCTAssertNil(g1.grad, "accumulate clears the gate gradients")
        let pruned = pruner.step(optimizer: nil)
        // Lowest mean scores overall: group 1 ch 2 (0.04), group 2 ch 0 (0.16), group 1 ch 0 (1).
        XCTAssertEqual(pruned.map { [$0.group, $0.channel] }, [[0, 2], [1, 0], [0, 0]])
        XCTAssertEqual(g1.values, [0, 1, 0, 1])
        XCTAssertEqual(g2.values, [0, 1, 1])
        XCTAssertEqual(pruner.widths, [2, 2])
        XCTAssertEqual(pruner.trajectory, [TrajectoryRow(widths: [2, 2], params: 40)], "every group lost a channel: a row")
        XCTAssertEqual(pruner.scores[0], [0, 0, 0, 0], "scores restart after a step")
        XCTAssertTrue(pruner.step(optimizer: nil).isEmpty, "nothing accumulated since: no step")
    }

    /// No trajectory row until every group has lost a channel; stop before a group would empty.
    func testStopRulesAndTrajectoryStart() {
        let big = Tensor.filled([10], with: 1, requiresGrad: true), small = Tensor.filled([2], with: 1, requiresGrad: true)
        let pruner = Pruner(sites: [GateSite(gate: big, dead: []), GateSite(gate: small, dead: [])],
                            settings: PruningSettings(frequency: 1, count: 1, maxFraction: 0.95)) { $0.reduce(0, +) }
        // The small group's channels matter least, then the big group's in index order.
        func minibatch() {
            channelScale(Tensor.filled([1, 10, 1, 1], with: 1), big).backward(seed: Tensor(shape: [1, 10, 1, 1], values: (1...10).map { Float($0) }))
            channelScale(Tensor.filled([1, 2, 1, 1], with: 1), small).backward(seed: Tensor(shape: [1, 2, 1, 1], values: [0.1, 0.2]))
            pruner.accumulate()
        }
        minibatch()
        XCTAssertEqual(pruner.step(optimizer: nil).map(\.group), [1])
        XCTAssertTrue(pruner.trajectory.isEmpty, "the big group has lost nothing yet")
        minibatch()
        // Next lowest alive: the small group's last channel; removing it would empty the group.
        XCTAssertTrue(pruner.step(optimizer: nil).isEmpty)
        XCTAssertEqual(pruner.stop, .wouldEmptyGroup)
        XCTAssertEqual(pruner.widths, [10, 1])

        // maxFraction: 12 channels, 0.5 -> stop once 6 are pruned.
        let a = Tensor.filled([6], with: 1, requiresGrad: true), b = Tensor.filled([6], with: 1, requiresGrad: true)
        let p2 = Pruner(sites: [GateSite(gate: a, dead: []), GateSite(gate: b, dead: [])],
                        settings: PruningSettings(frequency: 1, count: 4, maxFraction: 0.5)) { $0.reduce(0, +) }
        var rows = 0
        while p2.stop == nil {
            channelScale(Tensor.filled([1, 6, 1, 1], with: 1), a).backward(seed: Tensor(shape: [1, 6, 1, 1], values: [1, 2, 3, 4, 5, 6]))
            channelScale(Tensor.filled([1, 6, 1, 1], with: 1), b).backward(seed: Tensor(shape: [1, 6, 1, 1], values: [1.5, 2.5, 3.5, 4.5, 5.5, 6.5]))
            p2.accumulate()
            if !p2.step(optimizer: nil).isEmpty { rows += 1 }
        }
        XCTAssertEqual(p2.stop, .reachedMaxFraction)
        XCTAssertEqual(p2.prunedChannels, 8, "two steps of 4; the stop is checked before each step")
        XCTAssertEqual(p2.trajectory.count, 2)
    }

    /// Pruned channels stay exactly zero through further SGD steps, in all four nets: their gates,
    /// the slices that produce them and the momentum of those slices.
    func testPrunedChannelsStayDeadThroughSGD() throws {
        for arch in Architecture.allCases {
            // Ratio 0.25 keeps every group at 4 or more channels, so no step would empty one.
            let d = NetDescription.uniform(arch, ratio: 0.25, inChannels: 3, imageSize: 32, classes: 4)
            let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 1)), gated: true)
            let opt = SGD(parameters: net.parameters, schedule: .constant(0.05), momentum: 0.9, weightDecay: 5e-4)
            let pruner = Pruner(net, settings: PruningSettings(frequency: 1, count: 3))
            var rng = RandomGenerator(seed: 2)
            let x = Tensor.randn([4, 3, 32, 32], using: &rng)
            var killed: [(group: Int, channel: Int)] = []
            for step in 0..<6 {
                opt.zeroGrad()
                crossEntropy(net.logits(x, training: true), labels: [0, 1, 2, 3]).backward()
                pruner.accumulate()
                opt.step()
                if step < 2 { killed += pruner.step(optimizer: opt) }
                if step == 2 {
                    // Also the last channel of every third group: every kind of gate site is
                    // covered, and neighbours stay alive (a dead neighbour could hide a leak).
                    for (k, w) in d.widths.enumerated() where k % 3 == 0 {
                        pruner.prune(group: k, channel: w - 1, optimizer: opt)
                        killed.append((k, w - 1))
                    }
                }
            }
            XCTAssertEqual(killed.count, 6 + (d.widths.count + 2) / 3, "\(arch)")
            let sites = net.gateSites
            for (k, c) in killed {
                XCTAssertEqual(sites[k].gate.data[c], 0, "\(arch) group \(k) gate \(c)")
                for t in sites[k].dead {
                    let row = t.count / t.shape[0]
                    XCTAssertTrue((0..<row).allSatisfy { t.data[c * row + $0] == 0 }, "\(arch) group \(k) channel \(c): a dead slice moved")
                    if let i = opt.parameters.firstIndex(where: { $0 === t }), let m = opt.momentumBuffer(i) {
                        XCTAssertTrue((0..<row).allSatisfy { m.data[c * row + $0] == 0 }, "\(arch): momentum of a dead slice")
                    }
                }
            }
            XCTAssertEqual(pruner.params, {
                var e = d
                e.widths = pruner.widths
                return e.parameterCount
            }())
        }
    }
}
