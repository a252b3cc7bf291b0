@testable import ArchDescent
import Autodiff
import Checkpoint
import Datasets
import Foundation
import Nets
import Pruning
import TestSupport
@testable import Training
import XCTest

/// What the commands used to decide themselves: search presets, the scaled net of `train` and
/// `stats`, and which checkpoints `eval`, `export` and `stats` take.
final class CommandLogicTests: XCTestCase {
    // MARK: presets

    /// Durations as the progress lines print them, including ones no run takes (a damaged record's):
    /// never a trap converting to Int.
    func testDurationsFormatWithoutTrapping() {
        XCTAssertEqual(formatDuration(42), "42s")
        XCTAssertEqual(formatDuration(125), "2m05s")
        XCTAssertEqual(formatDuration(7260), "2h01m")
        XCTAssertEqual(formatDuration(-1), "?")
        XCTAssertEqual(formatDuration(.nan), "?")
        XCTAssertEqual(formatDuration(1e20), "2.78e+16h")
        XCTAssertEqual(formatDuration(1e300), "2.78e+296h")
    }

    func testPapersSettingsAndTinyImageNetsPruningInterval() {
        let cifar = DescentConfig.preset(nil, model: .vgg11, dataset: .cifar10, seed: 3)
        XCTAssertEqual(cifar, DescentConfig(model: .vgg11, dataset: "cifar10", iterations: 15, warmupEpochs: 10, learningRate: 0.1,
                                            batchSize: 128, pruning: PruningSettings(frequency: 50, count: 10, maxFraction: 0.95),
                                            baseRatio: 1.0, seed: 3, subset: nil))
        XCTAssertEqual(DescentConfig.preset(nil, model: .resnet50, dataset: .tinyimagenet).pruning.frequency, 100)
        XCTAssertEqual(DescentConfig.defaultPruneEvery(.tinyimagenet), 100)
        for kind in [DatasetKind.cifar10, .cifar100, .fashionMNIST] { XCTAssertEqual(DescentConfig.defaultPruneEvery(kind), 50) }
        XCTAssertNoThrow(try cifar.validate())
    }

    func testQuickPreset() throws {
        for kind in [DatasetKind.fashionMNIST, .tinyimagenet] {
            let quick = DescentConfig.preset(.quick, model: .mobilenetv2, dataset: kind)
            XCTAssertEqual(quick.iterations, 3)
            XCTAssertEqual(quick.warmupEpochs, 1)
            XCTAssertEqual(quick.pruning.frequency, 10, "quick prunes every 10 minibatches on \(kind)")
            XCTAssertEqual(quick.pruning.count, 10)
            XCTAssertEqual(quick.pruning.maxFraction, 0.95)
            XCTAssertEqual(quick.baseRatio, 0.25)
            XCTAssertEqual(quick.subset, 5000)
            XCTAssertEqual(quick.learningRate, 0.1)
            XCTAssertEqual(quick.batchSize, 128)
            XCTAssertEqual(quick.dataset, kind.rawValue)
            XCTAssertNoThrow(try quick.validate())
        }
        XCTAssertEqual(DescentPreset(rawValue: "quick"), .quick)
    }

    // MARK: scaled nets

    private func descentFile(_ folder: URL, template: NetDescription) throws -> String {
        var rows: [TrajectoryRow] = []
        for k in 0..<12 {
            var d = template
            d.widths = template.widths.enumerated().map { g, w in max(1, Int(Double(w) * pow(0.85, Double(k) * (0.5 + 0.1 * Double(g))))) }
            rows.append(TrajectoryRow(widths: d.widths, params: d.parameterCount))
        }
        let it = DescentIteration(index: 0, startWidths: template.widths, startParams: template.parameterCount, trajectory: rows,
                                  fit: try PowerLawFit.fit(rows), stop: .reachedMaxFraction, epochs: 2)
        let result = DescentResult(config: DescentConfig(model: template.architecture, dataset: "fashion-mnist"), template: template,
                                   groupNames: template.architecture.groupNames, iterations: [it], ratios: [])
        let path = folder.appendingPathComponent("descent.json").path
        try JSONEncoder().encode(result).write(to: URL(fileURLWithPath: path))
        return path
    }

    func testUniformScaledNet() throws {
        let net = try ScaledNet.make(.vgg11, .cifar100, ratio: 0.5, descent: nil, iteration: nil)
        XCTAssertEqual(net.description, NetDescription.uniform(.vgg11, ratio: 0.5, inChannels: 3, imageSize: 32, classes: 100))
        XCTAssertNil(net.scaled)
        XCTAssertNil(net.summary)
        XCTAssertNil(net.clampWarning)
        XCTAssertThrowsError(try ScaledNet.make(.vgg11, .cifar10, ratio: 0.001, descent: nil, iteration: nil)) { error in
            guard case let TrainingError.invalidConfig(message)? = error as? TrainingError else { return XCTFail("\(error)") }
            XCTAssertTrue(message.hasPrefix("--ratio 0.001: ") && message.hasSuffix("(is --ratio too small?)"), message)
        }
    }

    func testNeuralScaleNetFromADescentFile() throws {
        let folder = try temporaryFolder("scaled")
        let template = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 1, imageSize: 32, classes: 10)
        let file = try descentFile(folder, template: template)
        let net = try ScaledNet.make(.vgg11, .fashionMNIST, ratio: 0.5, descent: file, iteration: nil)
        let expected = try DescentResult.load(file).scaled(ratio: 0.5)
        XCTAssertEqual(net.scaled, expected)
        XCTAssertEqual(net.description.widths, expected.neuralscaleWidths)
        XCTAssertNotEqual(net.description.widths, template.architecture.uniformWidths(ratio: 0.5))
        XCTAssertEqual(net.summary, "NeuralScale widths at ratio 0.5: \(expected.neuralscaleWidths), P \(expected.neuralscaleParams) (uniform: \(expected.uniformParams))")
        // Another input than the search's: a flag error naming the file.
        XCTAssertThrowsError(try ScaledNet.make(.vgg11, .cifar10, ratio: 0.5, descent: file, iteration: nil)) { error in
            guard case let TrainingError.invalidConfig(message)? = error as? TrainingError else { return XCTFail("\(error)") }
            XCTAssertEqual(message, "\(file) was searched for vgg11 on fashion-mnist, not vgg11 on cifar10")
        }
        // A missing iteration: FitError naming the file.
        XCTAssertThrowsError(try ScaledNet.make(.vgg11, .fashionMNIST, ratio: 0.5, descent: file, iteration: 4)) { error in
            XCTAssertTrue(error is FitError && "\(error)".hasPrefix("\(file): iteration 4 is not in the descent"), "\(error)")
        }
    }

    // MARK: checkpoints

    private func save(_ folder: URL, _ name: String, gated: Bool = false, training: String?) throws -> String {
        let description = NetDescription.uniform(.vgg11, ratio: 0.0625, inChannels: 1, imageSize: 32, classes: 10)
        let net = try makeNetwork(description, initialization: .random(RandomGenerator(seed: 1)), gated: gated)
        let path = folder.appendingPathComponent(name).path
        try Checkpoint.save(net, training: training, to: path)
        return path
    }

    private func json<T: Encodable>(_ value: T) throws -> String { String(decoding: try JSONEncoder().encode(value), as: UTF8.self) }

    private func trainingState(normalization: InputNormalization?) -> TrainingState {
        TrainingState(config: TrainConfig(model: .vgg11, dataset: "fashion-mnist", ratio: 0.0625, epochs: 2), widths: [],
                      completedEpochs: 1, history: [], bestValidationAccuracy: nil, bestEpoch: nil, elapsedSeconds: 1,
                      inputNormalization: normalization)
    }

    private func searchState(current: Bool) throws -> DescentState {
        let template = NetDescription.uniform(.vgg11, ratio: 0.0625, inChannels: 1, imageSize: 32, classes: 10)
        let progress = DescentProgress(iteration: 0, startWidths: template.widths, epoch: 1, batch: 2,
                                       pruner: Pruner(try makeNetwork(template, initialization: .none, gated: true),
                                                      settings: PruningSettings()).state,
                                       seconds: 1)
        return DescentState(config: DescentConfig(model: .vgg11, dataset: "fashion-mnist"), template: template, completed: [],
                            seconds: [], current: current ? progress : nil)
    }

    func testCheckpointKindsAndWhatExportAndStatsTake() throws {
        let folder = try temporaryFolder("netckpt")
        let normalization = InputNormalization(mean: [0.3], std: [0.2])
        let trained = try save(folder, "trained.h5", training: try json(trainingState(normalization: normalization)))
        let loaded = try NetCheckpoint.load(trained)
        XCTAssertEqual(loaded.dataset, .fashionMNIST)
        XCTAssertEqual(loaded.normalization, normalization)
        guard case .trained = CheckpointContents(try Checkpoint.load(trained)) else { return XCTFail("not a train checkpoint") }

        let bad = try save(folder, "bad.h5", training: try json(trainingState(normalization: InputNormalization(mean: [0.3], std: [0]))))
        XCTAssertThrowsError(try NetCheckpoint.load(bad)) { error in
            XCTAssertTrue(error is CheckpointUseError && "\(error)".hasPrefix("\(bad): ") && "\(error)".contains("std"), "\(error)")
        }

        let bare = try save(folder, "bare.h5", training: nil)
        guard case .none = CheckpointContents(try Checkpoint.load(bare)) else { return XCTFail("a state where there is none") }
        XCTAssertNil(try NetCheckpoint.load(bare).dataset)
        // A train checkpoint read as a search's state (a --resume into the wrong folder): which
        // state was expected, and the field, not Swift's DecodingError dump.
        XCTAssertThrowsError(try Checkpoint.load(trained).training(as: DescentState.self)) { error in
            XCTAssertTrue("\(error)".contains("expected a search's (`neuralscale descend`)") && "\(error)".contains("is missing")
                          && !"\(error)".contains("DecodingError"), "\(error)")
        }
        let other = try save(folder, "other.h5", training: "{\"something\": 1}")
        guard case .unreadable = CheckpointContents(try Checkpoint.load(other)) else { return XCTFail("an unknown state read") }
        XCTAssertNil(try NetCheckpoint.load(other).normalization)

        let during = try save(folder, "during.h5", gated: true, training: try json(searchState(current: true)))
        guard case .search = CheckpointContents(try Checkpoint.load(during)) else { return XCTFail("not a search state") }
        let search = try NetCheckpoint.load(during)
        XCTAssertEqual(search.dataset, .fashionMNIST)
        XCTAssertNil(search.normalization)
        XCTAssertTrue(search.network.isGated)
        XCTAssertFalse(try search.prunedNetwork().isGated, "stats measures a search state after surgery")

        let between = try save(folder, "between.h5", gated: true, training: try json(searchState(current: false)))
        XCTAssertThrowsError(try NetCheckpoint.load(between)) { error in
            XCTAssertTrue(error is CheckpointUseError && "\(error)".hasPrefix("\(between) is a search's state between iterations"), "\(error)")
        }
    }

    func testEvaluationOfCheckpoints() throws {
        let folder = try temporaryFolder("evaluation")
        let data = folder.appendingPathComponent("fashion").path
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try writeFashionMNIST(in: data, train: 20, test: 12)
        func evaluation(_ path: String, dataset: String? = nil) throws -> CheckpointEvaluation {
            try CheckpointEvaluation.run(checkpoint: path, dataset: dataset, directory: data, batchSize: 5, reporter: nil)
        }
        // A flag that does not fit the file is a usage error (invalidConfig); a file that cannot be
        // used whatever the flags, an input error (invalidInput).
        func refusal(_ path: String, dataset: String? = nil, _ expected: String, ofFile: Bool = false) {
            XCTAssertThrowsError(try evaluation(path, dataset: dataset)) { error in
                switch error as? TrainingError {
                case let .invalidConfig(message)? where !ofFile: XCTAssertTrue(message.contains(expected), message)
                case let .invalidInput(message)? where ofFile: XCTAssertTrue(message.contains(expected), message)
                default: XCTFail("\(error)")
                }
            }
        }
        let trained = try save(folder, "trained.h5", training: try json(trainingState(normalization: InputNormalization(mean: [0.3], std: [0.2]))))
        let result = try evaluation(trained)
        XCTAssertEqual(result.checkpoint, trained)
        XCTAssertEqual(result.dataset, "fashion-mnist")
        XCTAssertEqual(result.images, 12)
        XCTAssertTrue((0...1).contains(result.testAccuracy) && result.testLoss.isFinite && result.testLoss > 0, "\(result)")
        XCTAssertEqual(try evaluation(trained, dataset: "fashion-mnist"), result)

        refusal(trained, dataset: "cifar10", "takes 1x32x32 images and 10 classes; cifar10 does not fit")
        refusal(try save(folder, "bare.h5", training: nil), "does not say which dataset it was trained on; pass --dataset")
        refusal(try save(folder, "nonorm.h5", training: try json(trainingState(normalization: nil))), "holds no input normalization",
                ofFile: true)
        refusal(try save(folder, "search.h5", gated: true, training: try json(searchState(current: true))), "is the state of a search",
                ofFile: true)
        // The dataset the file records, not one given, that does not fit its net: the file's fault.
        var recorded = trainingState(normalization: InputNormalization(mean: [0.3], std: [0.2]))
        recorded.config.dataset = "cifar10"
        refusal(try save(folder, "recorded.h5", training: try json(recorded)), "cifar10 does not fit (the dataset it records)", ofFile: true)
        let bad = try save(folder, "bad.h5", training: try json(trainingState(normalization: InputNormalization(mean: [0.3, 0.3, 0.3], std: [1, 1, 1]))))
        XCTAssertThrowsError(try evaluation(bad)) { error in
            XCTAssertTrue(error is CheckpointUseError && "\(error)".hasPrefix("\(bad): "), "\(error)")
        }
        let other = try save(folder, "other.h5", training: "{\"something\": 1}")
        XCTAssertThrowsError(try evaluation(other)) { error in XCTAssertTrue(error is CheckpointError, "\(error)") }
    }
}
