import ArchDescent
import Autodiff
import Datasets
import Foundation
import Nets
import Pruning
import TestSupport
import Training
import XCTest

final class DescentTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder("descent", create: false) }

    /// 48 learnable 1x32x32 images of 4 classes, served with shuffling and augmentation.
    private func source() -> LoaderSource {
        var rng = RandomGenerator(seed: 3)
        var pixels: [UInt8] = []
        for i in 0..<48 {
            for y in 0..<32 { for x in 0..<32 {
                let inSquare = (y / 8 == i % 4) && x < 16
                pixels.append(UInt8(truncatingIfNeeded: (inSquare ? 200 : 30) + Int(rng.next() % 40)))
            } }
        }
        let set = ImageSet(pixels: pixels, labels: (0..<48).map { Int32($0 % 4) }, channels: 1, height: 32, width: 32, classes: 4)
        let all = Array(0..<48)
        return LoaderSource(set: set, indices: all, batchSize: 8, augmentation: .standard(imageSize: 32),
                            normalization: Normalization.fit(set, indices: all), shuffle: true, seed: 5)
    }

    private let config = DescentConfig(model: .vgg11, dataset: "memory", iterations: 2, warmupEpochs: 1, learningRate: 0.05,
                                       batchSize: 8, pruning: PruningSettings(frequency: 2, count: 4, maxFraction: 0.6),
                                       baseRatio: 0.125, seed: 7)
    private let template = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 1, imageSize: 32, classes: 4)

    private func descent(_ name: String) -> Descent {
        Descent(config: config, template: template, train: source(), outputDirectory: folder.appendingPathComponent(name).path,
                reporter: nil)
    }

    /// A pruning run that stops before every group has lost a channel (its cap reached after one
    /// step) records no trajectory row, and its fallback fit says so and why: 0 rows, the start
    /// widths scaled uniformly (it once said "only 1 trajectory rows ... the first row's widths",
    /// a row that was not there, and then "stopped before its first step", which it had not).
    func testEmptyTrajectoryFallsBackSayingSo() throws {
        let greedy = DescentConfig(model: .vgg11, dataset: "memory", iterations: 1, warmupEpochs: 1, learningRate: 0.05,
                                   batchSize: 8, pruning: PruningSettings(frequency: 2, count: 4, maxFraction: 0.005),
                                   baseRatio: 0.125, seed: 7)
        let search = Descent(config: greedy, template: template, train: source(), outputDirectory: folder.appendingPathComponent("empty").path,
                             reporter: nil)
        let result = try search.run(resume: false)
        let it = try XCTUnwrap(result.iterations.first)
        XCTAssertEqual(it.trajectory.count, 0)
        XCTAssertEqual(it.stop, .reachedMaxFraction)
        XCTAssertEqual(it.fit.rows, 0)
        let reason = try XCTUnwrap(it.fit.fallbackReason)
        XCTAssertTrue(reason.hasPrefix("no trajectory rows (a row is recorded once every group has lost a channel, and after 1 pruning step some had not when the most channels a run may prune are pruned)"), reason)
        XCTAssertEqual(it.fit.groups.map(\.alpha), it.startWidths.map(Double.init))
    }

    /// A search killed in the middle of its second iteration and resumed writes the same
    /// descent.json, byte for byte, as an uninterrupted one; the outputs are all there.
    func testResumedSearchEqualsStraightSearch() throws {
        let straight = descent("straight")
        // The charts' hook runs before descent.json, the file that marks the search done.
        var hooked = false
        straight.beforeResult = { _ in
            hooked = true
            XCTAssertFalse(FileManager.default.fileExists(atPath: straight.resultPath), "descent.json before the charts")
        }
        let result = try straight.run(resume: false)
        XCTAssertTrue(hooked)
        XCTAssertTrue(FileManager.default.fileExists(atPath: straight.resultPath))
        XCTAssertEqual(result.iterations.count, 2)
        for it in result.iterations {
            XCTAssertGreaterThanOrEqual(it.trajectory.count, PowerLawFit.minimumRows, "enough rows to fit")
            XCTAssertFalse(it.fit.isFallback)
            XCTAssertNotNil(it.stop)
        }
        XCTAssertEqual(result.iterations[0].startWidths, Architecture.vgg11.uniformWidths(ratio: 0.125))
        XCTAssertNotEqual(result.iterations[1].startWidths, result.iterations[0].startWidths, "iteration 1 starts from the fit")
        let target = template.architecture.uniformWidths(ratio: 0.125)
        var base = template
        base.widths = target
        XCTAssertLessThanOrEqual(abs(Double(result.iterations[1].startParams - base.parameterCount)) / Double(base.parameterCount), 0.005)
        XCTAssertEqual(result.ratios.map(\.ratio), [0.25, 0.5, 0.75, 1.0])
        for r in result.ratios {
            XCTAssertLessThanOrEqual(abs(Double(r.neuralscaleParams - r.uniformParams)) / Double(r.uniformParams), 0.005, "ratio \(r.ratio)")
        }
        for i in 0..<2 {
            let csv = try String(contentsOfFile: straight.path("iteration-\(i)-trajectory.csv"), encoding: .utf8)
            let lines = csv.split(separator: "\n")
            XCTAssertEqual(lines.first, "features.0,features.4,features.8,features.11,features.15,features.18,features.22,features.25,params")
            XCTAssertEqual(lines.count, result.iterations[i].trajectory.count + 1)
            XCTAssertTrue(FileManager.default.fileExists(atPath: straight.path("iteration-\(i)-fit.json")))
        }

        let killed = descent("killed")
        killed.dataChecksum = "0000000a-0000000b"
        var calls = 0
        killed.shouldStop = { iteration, epoch, batch in
            if iteration == 1 && epoch == 3 && batch == 3 { calls += 1; return true }
            return false
        }
        XCTAssertThrowsError(try killed.run(resume: false)) { error in
            guard case TrainingError.interrupted = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(calls, 1)
        // Resumed on other data: refused, naming the state and both checksums.
        let elsewhere = descent("killed")
        elsewhere.dataChecksum = "0000000a-0000000c"
        XCTAssertThrowsError(try elsewhere.run(resume: true)) { error in
            XCTAssertTrue("\(error)".contains(elsewhere.statePath) && "\(error)".contains("0000000a-0000000b")
                          && "\(error)".contains("0000000a-0000000c"), "\(error)")
        }
        killed.shouldStop = { _, _, _ in false }
        _ = try killed.run(resume: true)
        let a = try Data(contentsOf: URL(fileURLWithPath: straight.resultPath))
        let b = try Data(contentsOf: URL(fileURLWithPath: killed.resultPath))
        XCTAssertEqual(a, b, "descent.json after a kill and --resume differs from the uninterrupted run")
        // A kill after the last iteration's state was saved and before its timing was: a resume
        // of the finished search (it runs no iteration) rewrites timing.json from the state.
        let timingPath = straight.path(SearchTiming.fileName)
        let whole = try Data(contentsOf: URL(fileURLWithPath: timingPath))
        var short = try JSONDecoder().decode(SearchTiming.self, from: whole)
        short = SearchTiming(model: short.model, dataset: short.dataset, secondsPerIteration: Array(short.secondsPerIteration.prefix(1)),
                             epochsPerIteration: Array(short.epochsPerIteration.prefix(1)))
        try JSONEncoder().encode(short).write(to: URL(fileURLWithPath: timingPath))
        _ = try descent("straight").run(resume: true)
        XCTAssertEqual(try JSONDecoder().decode(SearchTiming.self, from: Data(contentsOf: URL(fileURLWithPath: timingPath))),
                       try JSONDecoder().decode(SearchTiming.self, from: whole))
        // The wall time of both iterations, the interrupted one counted across the kill.
        for run in [straight, killed] {
            let timing = try JSONDecoder().decode(SearchTiming.self, from: Data(contentsOf: URL(fileURLWithPath: run.path(SearchTiming.fileName))))
            XCTAssertEqual(timing.secondsPerIteration.count, 2)
            XCTAssertTrue(timing.secondsPerIteration.allSatisfy { $0 > 0 }, "\(timing.secondsPerIteration)")
            XCTAssertEqual(timing.totalSeconds, timing.secondsPerIteration.reduce(0, +))
            XCTAssertEqual(timing.epochsPerIteration, result.iterations.map(\.epochs))
        }
    }

    /// `--couple-residuals` on PreAct ResNet-18: every trajectory row, fit and solved config keeps
    /// each residual stream at one width (so its shortcuts stay identities); resuming it without
    /// the option is refused.
    func testCoupledSearchKeepsResidualStreams() throws {
        var coupled = config
        coupled.model = .preactResNet18
        coupled.coupleResiduals = true
        coupled.pruning = PruningSettings(frequency: 2, count: 16, maxFraction: 0.8)
        coupled.baseRatio = 0.25
        let template = NetDescription.uniform(.preactResNet18, ratio: 1, inChannels: 1, imageSize: 32, classes: 4)
        func run(_ name: String) -> Descent {
            Descent(config: coupled, template: template, train: source(), outputDirectory: folder.appendingPathComponent(name).path, reporter: nil)
        }
        let straight = run("coupled")
        let streams = straight.coupling
        XCTAssertEqual(streams, [[0, 2, 4], [6, 8], [10, 12], [14, 16]])
        let result = try straight.run(resume: false)
        func tied(_ w: [Int]) -> Bool { streams.allSatisfy { set in set.allSatisfy { w[$0] == w[set[0]] } } }
        for it in result.iterations {
            XCTAssertEqual(it.fit.coupling, streams)
            XCTAssertTrue(tied(it.startWidths), "iteration \(it.index) starts from \(it.startWidths)")
            XCTAssertGreaterThanOrEqual(it.trajectory.count, PowerLawFit.minimumRows)
            for row in it.trajectory { XCTAssertTrue(tied(row.widths), "iteration \(it.index): \(row.widths)") }
            XCTAssertTrue(it.trajectory.contains { row in streams.contains { row.widths[$0[0]] < it.startWidths[$0[0]] } },
                          "iteration \(it.index): no stream was pruned")
        }
        for r in result.ratios {
            var d = template
            d.widths = r.neuralscaleWidths
            XCTAssertTrue(tied(r.neuralscaleWidths), "ratio \(r.ratio): \(r.neuralscaleWidths)")
            XCTAssertEqual(d.resolvedShortcuts.filter { $0 == .identity }.count, 5, "ratio \(r.ratio): the five identity shortcuts")
            XCTAssertLessThanOrEqual(abs(Double(r.neuralscaleParams - r.uniformParams)) / Double(r.uniformParams), 0.005, "ratio \(r.ratio)")
        }

        // The file is read back as it was written; coupled sets other than the net's streams are refused.
        XCTAssertEqual(try DescentResult.load(straight.resultPath), result)
        var edited = result
        edited.iterations[0].fit.coupling = [[0, 2]]
        let path = folder.appendingPathComponent("edited.json").path
        try JSONEncoder().encode(edited).write(to: URL(fileURLWithPath: path))
        XCTAssertThrowsError(try DescentResult.load(path)) {
            XCTAssertTrue("\($0)".contains(path) && "\($0)".contains("not the net's residual streams"), "\($0)")
        }
        var plain = coupled
        plain.coupleResiduals = nil
        XCTAssertThrowsError(try Descent.preflight(config: plain, template: template, outputDirectory: straight.outputDirectory, resume: true)) {
            XCTAssertTrue("\($0)".contains("made with --couple-residuals"), "\($0)")
        }
    }

    func testPreflightAndWrongResume() throws {
        XCTAssertThrowsError(try Descent.preflight(config: config, template: template, outputDirectory: folder.path, resume: true)) {
            XCTAssertTrue("\($0)".contains("does not exist"), "\($0)")
        }
        var bad = config
        bad.pruning.maxFraction = 1
        XCTAssertThrowsError(try bad.validate()) { XCTAssertTrue("\($0)".contains("--prune-max"), "\($0)") }
    }
}
