import Autodiff
import Checkpoint
import Datasets
import Foundation
import Nets
import TestSupport
import Training
import XCTest

/// Learnable in-memory data: class c has a bright square at a class-specific place plus noise.
/// Batches are shuffled with a generator seeded by the epoch, like the real loaders.
final class SyntheticSource: BatchSource {
    let images: [[Float]], labels: [Int32], batchSize: Int, shuffle: Bool
    /// Epochs whose first batch is poisoned with a NaN (to test the NaN stop).
    var poisonEpochs: Set<Int> = []
    /// Epochs whose first batch is scaled by 1e20: batch norm still normalizes it to finite
    /// values, but its running variance overflows to infinity.
    var hugeEpochs: Set<Int> = []

    init(count: Int, classes: Int, batchSize: Int, shuffle: Bool, seed: UInt64) {
        var rng = RandomGenerator(seed: seed)
        var images: [[Float]] = [], labels: [Int32] = []
        for i in 0..<count {
            let c = i % classes
            var img = (0..<(3 * 32 * 32)).map { _ in rng.normal() * 0.3 }
            for ch in 0..<3 { for y in 0..<8 { for x in 0..<8 { img[ch * 1024 + (8 * c + y) * 32 + 4 + x] += 2 } } }
            images.append(img)
            labels.append(Int32(c))
        }
        self.images = images
        self.labels = labels
        self.batchSize = batchSize
        self.shuffle = shuffle
    }

    var sampleCount: Int { images.count }
    var batchCount: Int { (images.count + batchSize - 1) / batchSize }

    func batches(epoch: Int) -> AnyIterator<Batch> {
        var order = Array(images.indices)
        if shuffle {
            var rng = RandomGenerator(seed: 1000 + UInt64(epoch))
            order.shuffle(using: &rng)
        }
        var start = 0
        let poison = poisonEpochs.contains(epoch), huge = hugeEpochs.contains(epoch)
        return AnyIterator {
            guard start < order.count else { return nil }
            let idx = order[start..<min(start + self.batchSize, order.count)]
            let t = Tensor(uninitialized: [idx.count, 3, 32, 32])
            for (k, i) in idx.enumerated() { for j in 0..<3072 { t.data[k * 3072 + j] = self.images[i][j] } }
            if poison && start == 0 { t.data[0] = .nan }
            if huge && start == 0 { for j in 0..<t.count { t.data[j] *= 1e20 } }
            start += self.batchSize
            return Batch(images: t, labels: idx.map { self.labels[$0] })
        }
    }
}

final class TrainerTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder("train", create: false) }

    private let config = TrainConfig(model: .vgg11, dataset: "synthetic", ratio: 0.0625, epochs: 2, batchSize: 8,
                                     learningRate: 0.05, milestones: [1], validationSplit: 0.25, seed: 3)
    private var description: NetDescription {
        .uniform(.vgg11, ratio: 0.0625, inChannels: 3, imageSize: 32, classes: 4)
    }

    private func trainer(_ out: String, train: SyntheticSource? = nil) -> Trainer {
        Trainer(config: config, netDescription: description,
                train: train ?? SyntheticSource(count: 24, classes: 4, batchSize: 8, shuffle: true, seed: 1),
                validation: SyntheticSource(count: 8, classes: 4, batchSize: 8, shuffle: false, seed: 2),
                test: SyntheticSource(count: 8, classes: 4, batchSize: 8, shuffle: false, seed: 3),
                outputDirectory: out, reporter: nil)
    }

    private func weights(_ path: String) throws -> [[UInt32]] {
        try Checkpoint.load(path).network.state.map { $0.tensor.values.map(\.bitPattern) }
    }

    /// Two epochs straight, and one epoch, a kill in the middle of the second, then --resume,
    /// give bit-identical weights, momentum and BN statistics.
    func testResumeAfterAKillEqualsAStraightRun() throws {
        let straight = folder.appendingPathComponent("straight").path
        let straightResult = try trainer(straight).run(resume: false)

        let killed = folder.appendingPathComponent("killed").path
        let first = trainer(killed)
        first.shouldStop = { epoch, step in epoch == 2 && step == 2 }
        XCTAssertThrowsError(try first.run(resume: false)) { error in
            guard case TrainingError.interrupted(2, 2) = error else { return XCTFail("\(error)") }
        }
        XCTAssertEqual(try Checkpoint.load(first.lastPath).optimizer?.epoch, 0, "last.h5 is the end of epoch 1")
        // Stopped in the first epoch there is no last.h5: the message says to run again, not to resume.
        let early = trainer(folder.appendingPathComponent("early").path)
        early.shouldStop = { epoch, step in epoch == 1 && step == 1 }
        XCTAssertThrowsError(try early.run(resume: false)) { error in
            guard case TrainingError.interruptedBeforeCheckpoint(1, 1, _) = error else { return XCTFail("\(error)") }
            XCTAssertTrue("\(error)".contains("without --resume"), "\(error)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: early.lastPath))
        let before = trainer(folder.appendingPathComponent("before").path)
        before.shouldStop = { _, _ in true }  // before the first step
        XCTAssertThrowsError(try before.run(resume: false)) { error in
            guard case TrainingError.interruptedBeforeCheckpoint(1, 0, _) = error else { return XCTFail("\(error)") }
        }
        let resumedResult = try trainer(killed).run(resume: true)

        XCTAssertEqual(try weights(first.lastPath), try weights(trainer(straight).lastPath))
        XCTAssertEqual(try Checkpoint.load(first.lastPath).optimizer, try Checkpoint.load(trainer(straight).lastPath).optimizer)
        XCTAssertEqual(resumedResult.testAccuracy, straightResult.testAccuracy)
        let lines = try String(contentsOfFile: first.metricsPath, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 2, "one metrics line per finished epoch")
        let m = try JSONDecoder().decode(EpochMetrics.self, from: Data(lines[1].utf8))
        XCTAssertEqual(m.epoch, 2)
        XCTAssertEqual(m.learningRate, 0.005, accuracy: 1e-9, "milestone at epoch 1 divides the lr by 10")
        let result = try JSONDecoder().decode(TrainResult.self, from: Data(contentsOf: URL(fileURLWithPath: first.resultPath)))
        XCTAssertEqual(result, resumedResult)
        XCTAssertEqual(result.widths, description.widths)
        XCTAssertNotNil(result.testAccuracy)
    }

    func testLearnsTheSyntheticTask() throws {
        var c = config
        c.epochs = 4
        c.milestones = [3]
        let t = Trainer(config: c, netDescription: description,
                        train: SyntheticSource(count: 48, classes: 4, batchSize: 8, shuffle: true, seed: 1),
                        validation: SyntheticSource(count: 16, classes: 4, batchSize: 8, shuffle: false, seed: 2),
                        test: SyntheticSource(count: 16, classes: 4, batchSize: 8, shuffle: false, seed: 3),
                        outputDirectory: folder.path, reporter: nil)
        let result = try t.run(resume: false)
        XCTAssertGreaterThan(result.testAccuracy ?? 0, 0.9, "four well-separated classes")
        XCTAssertTrue(FileManager.default.fileExists(atPath: t.bestPath))
    }

    /// A NaN loss stops the run with a message naming the last good checkpoint, which stays intact.
    func testNaNLossStopsAndKeepsTheLastGoodCheckpoint() throws {
        let source = SyntheticSource(count: 24, classes: 4, batchSize: 8, shuffle: true, seed: 1)
        source.poisonEpochs = [1]
        let t = trainer(folder.path, train: source)
        XCTAssertThrowsError(try t.run(resume: false)) { error in
            guard case TrainingError.nonFiniteLoss(2, 1, let lastGood, _) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(lastGood, t.lastPath)
            XCTAssertTrue("\(error)".contains("NaN"), "\(error)")
            // Not advice --resume refuses (it keeps the run's learning rate).
            XCTAssertTrue("\(error)".contains("lower --lr in a new run"), "\(error)")
        }
        let state = try XCTUnwrap(try Checkpoint.load(t.lastPath).training)
        XCTAssertTrue(state.contains("\"completedEpochs\":1"), state)
        XCTAssertFalse(FileManager.default.fileExists(atPath: t.resultPath))
    }

    /// Running statistics that overflow while the loss stays finite: the run stops before a
    /// checkpoint holds them, names the tensor, and the checkpoint it names as good is finite.
    func testInfiniteRunningVarianceIsNeverCheckpointed() throws {
        let source = SyntheticSource(count: 24, classes: 4, batchSize: 8, shuffle: true, seed: 1)
        source.hugeEpochs = [1]
        let t = trainer(folder.path, train: source)
        XCTAssertThrowsError(try t.run(resume: false)) { error in
            guard case TrainingError.nonFiniteLoss(_, _, let lastGood, let tensor) = error else { return XCTFail("\(error)") }
            XCTAssertEqual(lastGood, t.lastPath)
            XCTAssertTrue(tensor?.hasSuffix("running_var") ?? false, "\(error)")
            XCTAssertTrue("\(error)".contains("running_var"), "\(error)")
        }
        let saved = try Checkpoint.load(t.lastPath)
        XCTAssertNil(Checkpoint.nonFiniteTensor(in: saved.network), "last.h5 holds only finite tensors")
        XCTAssertTrue(try XCTUnwrap(saved.training).contains("\"completedEpochs\":1"))
    }

    /// A run resumed on other data (another --data-dir, relabeled files) is refused: the run
    /// records the data's checksum and the resumption compares it; the same data resumes.
    func testResumeOnOtherDataIsRefused() throws {
        let first = trainer(folder.path)
        first.dataChecksum = "00000001-00000002"
        first.shouldStop = { epoch, step in epoch == 2 && step == 1 }
        XCTAssertThrowsError(try first.run(resume: false))
        let other = trainer(folder.path)
        other.dataChecksum = "00000001-00000003"
        XCTAssertThrowsError(try other.run(resume: true)) { error in
            XCTAssertTrue("\(error)".contains(other.lastPath) && "\(error)".contains("trained on other data"), "\(error)")
        }
        let same = trainer(folder.path)
        same.dataChecksum = "00000001-00000002"
        XCTAssertNoThrow(try same.run(resume: true))
        // A run from before checksums were recorded resumes with any data, and records it.
        let old = folder.appendingPathComponent("old").path
        let before = trainer(old)
        before.shouldStop = { epoch, step in epoch == 2 && step == 1 }
        XCTAssertThrowsError(try before.run(resume: false))
        let resumed = trainer(old)
        resumed.dataChecksum = "00000003-00000004"
        XCTAssertNoThrow(try resumed.run(resume: true))
        XCTAssertTrue(try XCTUnwrap(try Checkpoint.load(resumed.lastPath).training).contains("00000003-00000004"))
    }

    /// A last.h5 whose training state cannot be where the run goes on from (edited or damaged):
    /// refused naming the file and the field, not a silent restart from trained weights nor a
    /// run that trains nothing and writes a result.
    func testResumeRefusesAnImpossibleTrainingState() throws {
        let t = trainer(folder.path)
        _ = try t.run(resume: false)
        let loaded = try Checkpoint.load(t.lastPath)
        let opt = SGD(parameters: loaded.network.parameters, schedule: config.schedule, momentum: config.momentum,
                      weightDecay: config.weightDecay)
        try opt.load(try XCTUnwrap(loaded.optimizer))
        let state = try JSONDecoder().decode(TrainingState.self, from: Data(try XCTUnwrap(loaded.training).utf8))
        let cases: [(String, (inout TrainingState) -> Void)] = [
            ("completedEpochs", { $0.completedEpochs = 1000 }),
            ("completedEpochs", { $0.completedEpochs = -3 }),
            ("completedEpochs", { $0.completedEpochs = 0 }),
            ("bestEpoch", { $0.bestEpoch = 5 }),
            ("bestEpoch", { $0.completedEpochs = 0; $0.history = []; $0.bestEpoch = 1 }),
        ]
        for (field, change) in cases {
            var edited = state
            change(&edited)
            try Checkpoint.save(loaded.network, optimizer: opt, training: String(decoding: try JSONEncoder().encode(edited), as: UTF8.self),
                                to: t.lastPath)
            XCTAssertThrowsError(try trainer(folder.path).run(resume: true), field) { error in
                XCTAssertTrue("\(error)".contains(t.lastPath) && "\(error)".contains(field), "\(error)")
            }
        }
    }

    func testRefusesToOverwriteOrToResumeSomethingElse() throws {
        let t = trainer(folder.path)
        _ = try t.run(resume: false)
        XCTAssertThrowsError(try trainer(folder.path).run(resume: false)) { error in
            XCTAssertTrue("\(error)".contains("already exists") && "\(error)".contains("--resume"), "\(error)")
        }
        var other = config
        other.learningRate = 0.2
        let changed = Trainer(config: other, netDescription: description, train: SyntheticSource(count: 8, classes: 4, batchSize: 8, shuffle: true, seed: 1),
                              validation: nil, test: nil, outputDirectory: folder.path, reporter: nil)
        XCTAssertThrowsError(try changed.run(resume: true)) { error in
            XCTAssertTrue("\(error)".contains("learningRate"), "\(error)")
        }
        let empty = folder.appendingPathComponent("empty").path
        XCTAssertThrowsError(try trainer(empty).run(resume: true)) { error in
            XCTAssertTrue("\(error)".contains("does not exist"), "\(error)")
        }
    }

    /// 9 images in batches of 8 leave a final batch of one, which batch norm cannot train on:
    /// it is skipped instead of stopping the run.
    func testFinalBatchOfOneImageIsSkipped() throws {
        let t = Trainer(config: config, netDescription: description,
                        train: SyntheticSource(count: 9, classes: 4, batchSize: 8, shuffle: true, seed: 1),
                        validation: SyntheticSource(count: 5, classes: 4, batchSize: 4, shuffle: false, seed: 2),
                        test: nil, outputDirectory: folder.path, reporter: nil)
        let result = try t.run(resume: false)
        XCTAssertEqual(result.epochs, 2)
        XCTAssertTrue(FileManager.default.fileExists(atPath: t.lastPath))
    }

    /// Problems that need no data are found before any is loaded.
    func testPreflightRejectsBadNetsAndFoldersEarly() throws {
        let tiny = NetDescription.uniform(.vgg11, ratio: 0.01, inChannels: 3, imageSize: 32, classes: 4)
        XCTAssertThrowsError(try Trainer.preflight(config: config, netDescription: tiny, outputDirectory: folder.path, resume: false)) {
            XCTAssertTrue("\($0)".contains("width 0") && "\($0)".contains("--ratio"), "\($0)")
        }
        XCTAssertThrowsError(try Trainer.preflight(config: config, netDescription: description, outputDirectory: folder.path, resume: true)) {
            XCTAssertTrue("\($0)".contains("does not exist"), "\($0)")
        }
        XCTAssertNoThrow(try Trainer.preflight(config: config, netDescription: description, outputDirectory: folder.path, resume: false))
        var c = config
        c.milestones = [1, 5]
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("--milestones"), "\($0)") }
    }

    func testDefaultMilestonesAndConfigErrors() {
        XCTAssertEqual(TrainConfig.defaultMilestones(epochs: 150), [50, 100, 125])
        XCTAssertEqual(TrainConfig.defaultMilestones(epochs: 3), [1, 2])
        var c = config
        c.batchSize = 1
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("--batch-size"), "\($0)") }
        c = config
        c.validationSplit = 1
        XCTAssertThrowsError(try c.validate()) { XCTAssertTrue("\($0)".contains("--val-split"), "\($0)") }
    }
}

/// The same exact-resume guarantee through the real data path: `LoaderSource` over an in-memory
/// `ImageSet`, with shuffling, crop, flip and random erasing.
final class LoaderResumeTests: XCTestCase {
    func testResumeIsExactWithAugmentedLoaderBatches() throws {
        var rng = RandomGenerator(seed: 9)
        let count = 40
        let pixels = (0..<(count * 3 * 32 * 32)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        let set = ImageSet(pixels: pixels, labels: (0..<count).map { Int32($0 % 4) }, channels: 3, height: 32, width: 32, classes: 4)
        let (trainIdx, valIdx) = trainValidationSplit(count: count, validationFraction: 0.2, seed: 5)
        let norm = Normalization.fit(set, indices: trainIdx)
        func sources() -> (LoaderSource, LoaderSource) {
            (LoaderSource(set: set, indices: trainIdx, batchSize: 8, augmentation: .standard(imageSize: 32),
                          normalization: norm, shuffle: true, seed: 5),
             LoaderSource(set: set, indices: valIdx, batchSize: 8, augmentation: nil, normalization: norm, shuffle: false, seed: 5))
        }
        let config = TrainConfig(model: .preactResNet18, dataset: "memory", ratio: 0.0625, epochs: 2, batchSize: 8,
                                 learningRate: 0.05, milestones: [1], seed: 5)
        let d = NetDescription.uniform(.preactResNet18, ratio: 0.0625, inChannels: 3, imageSize: 32, classes: 4)
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("ns-loader-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        func trainer(_ name: String) -> Trainer {
            let (train, val) = sources()
            return Trainer(config: config, netDescription: d, train: train, validation: val, test: val,
                           outputDirectory: root.appendingPathComponent(name).path, reporter: nil)
        }
        _ = try trainer("straight").run(resume: false)
        let killed = trainer("killed")
        killed.shouldStop = { epoch, step in epoch == 2 && step == 3 }
        XCTAssertThrowsError(try killed.run(resume: false))
        _ = try trainer("killed").run(resume: true)
        let a = try Checkpoint.load(trainer("straight").lastPath), b = try Checkpoint.load(killed.lastPath)
        XCTAssertEqual(a.network.state.map { $0.tensor.values.map(\.bitPattern) },
                       b.network.state.map { $0.tensor.values.map(\.bitPattern) })
        XCTAssertEqual(a.optimizer, b.optimizer)
    }
}
