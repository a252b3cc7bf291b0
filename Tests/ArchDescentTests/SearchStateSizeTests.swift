@testable import ArchDescent
import Autodiff
import Checkpoint
import Foundation
import Nets
import Pruning
import TestSupport
import XCTest

/// The search's `state.h5` at its largest: every net at ratio 1.0 with per-channel pruner scores,
/// a long trajectory and finished iterations. Its JSON is far over the 64 KB of attributes an HDF5
/// object header holds, which once failed with "cannot create attribute training".
final class SearchStateSizeTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder("state-size") }

    /// `rows` trajectory rows shrinking `widths` step by step, with made-up P.
    private func trajectory(_ widths: [Int], rows: Int, seed: Int) -> [TrajectoryRow] {
        (0..<rows).map { r in
            let w = widths.enumerated().map { g, width in max(1, width - (r * (g % 7 + 1) + seed) % max(width, 1)) }
            return TrajectoryRow(widths: w, params: 1_000_000 + 37 * r + seed)
        }
    }

    func testLargestSearchStatesRoundTrip() throws {
        for arch in Architecture.allCases {
            let description = NetDescription.uniform(arch, ratio: 1.0, inChannels: 3, imageSize: 32, classes: 10)
            let net = try makeNetwork(description, initialization: .none, gated: true)
            // Cheap distinct values (no random init, no forward pass: ResNet-50 has 23M weights).
            for (k, entry) in net.state.enumerated() {
                let t = entry.tensor
                let variance = entry.name.hasSuffix("running_var")
                for i in 0..<t.count {
                    let v = Float((i &* 2_654_435_761 &+ k) % 20_011) / 20_011 - 0.5
                    t.data[i] = variance ? abs(v) + 0.01 : v
                }
            }
            let sgd = SGD(parameters: net.parameters, schedule: .constant(0.01), momentum: 0.9, weightDecay: 5e-4)
            let parameters = net.parameters
            try sgd.load(SGDState(epoch: 12, stepCount: 4_321, learningRate: 0.01,
                                  momentumBuffers: parameters.indices.map { i in
                                      i < 3 ? (0..<parameters[i].count).map { Float($0 % 97) * 1e-3 } : nil
                                  }))

            let pruner = Pruner(net, settings: PruningSettings())
            var prunerState = pruner.state
            prunerState.scores = prunerState.scores.enumerated().map { g, group in
                group.indices.map { c in Double(g * 7_919 + c) * 1.000_000_1e-7 + 1.0 / 3.0 }
            }
            prunerState.trajectory = trajectory(description.widths, rows: 3_000, seed: 1)
            prunerState.steps = 3_000
            prunerState.batchesSinceStep = 17
            let widths = description.widths
            let fit = PowerLawFit(groups: widths.indices.map { GroupFit(alpha: 0.1 + Double($0), beta: 0.5, rSquared: 0.99) },
                                  rows: 3_000, fallbackReason: nil)
            let completed = (0..<2).map { i in
                DescentIteration(index: i, startWidths: widths, startParams: description.parameterCount,
                                 trajectory: trajectory(widths, rows: 2_000, seed: 10 + i), fit: fit,
                                 stop: .reachedMaxFraction, epochs: 40 + i)
            }
            let state = DescentState(config: DescentConfig(model: arch, dataset: "cifar10"), template: description,
                                     completed: completed, seconds: [1234.5, 2345.25],
                                     current: DescentProgress(iteration: 2, startWidths: widths, epoch: 7, batch: 13,
                                                              pruner: prunerState, seconds: 99.75))
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            let json = String(decoding: try encoder.encode(state), as: UTF8.self)
            XCTAssertGreaterThan(json.utf8.count, 64 * 1024, "\(arch): the state must outgrow an attribute")

            let path = folder.appendingPathComponent("\(arch.rawValue)-state.h5").path
            try Checkpoint.save(net, optimizer: sgd, training: json, to: path)
            let loaded = try Checkpoint.load(path)
            XCTAssertEqual(loaded.training, json, "\(arch)")
            XCTAssertEqual(try loaded.training(as: DescentState.self), state, "\(arch): decoded state")
            XCTAssertEqual(loaded.optimizer, sgd.state, "\(arch): optimizer")
            XCTAssertEqual(loaded.network.netDescription, description)
            let before = net.state, after = loaded.network.state
            XCTAssertEqual(before.map(\.name), after.map(\.name), "\(arch)")
            XCTAssertTrue(after.contains { $0.kind == .channelScale }, "\(arch): a search state rebuilds a gated net")
            for (a, b) in zip(before, after) {
                XCTAssertEqual(a.tensor.shape, b.tensor.shape, "\(arch) \(a.name)")
                XCTAssertEqual(memcmp(a.tensor.data, b.tensor.data, a.tensor.count * MemoryLayout<Float>.size), 0, "\(arch) \(a.name)")
            }
            try FileManager.default.removeItem(atPath: path)
        }
    }
}
