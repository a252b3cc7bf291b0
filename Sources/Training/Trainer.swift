import Autodiff
import Checkpoint
import Foundation
import Nets

/// Trains one net from scratch (or from its last checkpoint) with SGD and the multi-step
/// schedule, keeping `last.h5`, `best.h5` (best validation accuracy), `metrics.jsonl` and, at the
/// end, `result.json` in the output folder.
///
/// Exact resumption: every random draw of an epoch (shuffle, augmentation) is derived from the
/// seed and the epoch number by the batch sources, and checkpoints hold the weights, BN
/// statistics, momentum buffers and schedule position at an epoch boundary. A run killed at any
/// point and resumed therefore repeats the interrupted epoch exactly as the uninterrupted run did.
///
/// Data-parallel (`group`): every process trains on its part of every batch (the sources serve
/// their parts, `LoaderSource.part`) with `TrainingStep`'s sums, so all hold the same weights;
/// process 0 alone takes the folder's lock and writes checkpoints, metrics and results (the
/// others wait for it where they read them back); metrics and evaluations are summed over the
/// processes, and a stop request on any process stops all at the same step.
public final class Trainer {
    public let config: TrainConfig
    public let netDescription: NetDescription
    public let outputDirectory: String
    let train: BatchSource, validation: BatchSource?, test: BatchSource?
    let reporter: TrainingReporter?
    let inputNormalization: InputNormalization?
    /// `DatasetSources.checksum` of the data given: recorded by a new run, compared on resume.
    public var dataChecksum: String?
    let group: ProcessGroup?
    /// Whether this process writes the run's files: the only one, or rank 0.
    var writes: Bool { (group?.rank ?? 0) == 0 }
    /// Checked before every step; returning true stops the run with `TrainingError.interrupted`
    /// (the CLI sets it from SIGINT, tests use it to simulate a kill).
    public var shouldStop: (_ epoch: Int, _ step: Int) -> Bool = { _, _ in false }

    public var lastPath: String { path("last.h5") }
    public var bestPath: String { path("best.h5") }
    public var metricsPath: String { path("metrics.jsonl") }
    public var resultPath: String { path("result.json") }

    public init(config: TrainConfig, netDescription: NetDescription, train: BatchSource, validation: BatchSource?,
                test: BatchSource?, outputDirectory: String, inputNormalization: InputNormalization? = nil,
                reporter: TrainingReporter? = ConsoleReporter(), group: ProcessGroup? = nil) {
        self.inputNormalization = inputNormalization
        self.group = group
        self.config = config
        self.netDescription = netDescription
        self.train = train
        self.validation = validation
        self.test = test
        self.outputDirectory = outputDirectory
        self.reporter = reporter
    }

    private func path(_ name: String) -> String { URL(fileURLWithPath: outputDirectory).appendingPathComponent(name).path }

    /// Trains to `config.epochs`, then evaluates the best weights on the test source.
    public func run(resume: Bool) throws -> TrainResult {
        try config.validate()
        // The lock first: a second run into this folder stops here, before it reads or writes.
        let folder = writes ? try RunFolder.acquire(outputDirectory) : nil
        defer { folder?.release() }
        try Trainer.preflight(config: config, netDescription: netDescription, outputDirectory: outputDirectory, resume: resume)
        // Every process past its checks before process 0 writes anything (as in `Descent.run`).
        group?.barrier()
        let (net, opt, state) = try start(resume: resume)
        var s = state
        reporter?.runStarted(config: config, params: net.parameterCount, resumedAt: s.completedEpochs)
        while s.completedEpochs < config.epochs {
            if stopRequested(s.completedEpochs + 1, 0) { throw Trainer.interruption(epoch: s.completedEpochs + 1, step: 0) }
            let metrics = try trainEpoch(net, opt, epoch: s.completedEpochs, state: s)
            // A finite loss before the last update does not make the updated weights (or the BN
            // running statistics) finite: a checkpoint is only written when every tensor is.
            if let bad = Checkpoint.nonFiniteTensor(in: net) {
                throw TrainingError.nonFiniteLoss(epoch: metrics.epoch, step: train.batchCount, lastGood: lastGoodCheckpoint(s),
                                                  tensor: bad)
            }
            guard metrics.validationLoss?.isFinite ?? true else {
                throw TrainingError.nonFiniteLoss(epoch: metrics.epoch, step: train.batchCount, lastGood: lastGoodCheckpoint(s))
            }
            s.completedEpochs += 1
            s.history.append(metrics)
            s.elapsedSeconds += metrics.seconds
            // Without a validation split the latest weights count as the best.
            let isBest = metrics.validationAccuracy.map { $0 > (s.bestValidationAccuracy ?? -1) } ?? true
            if isBest {
                s.bestValidationAccuracy = metrics.validationAccuracy
                s.bestEpoch = metrics.epoch
            }
            try checkAgreement(group, on: net.parameters, what: "weights")
            let json = try encode(s)
            // best.h5 before last.h5: a kill between the two leaves last.h5 at the previous epoch,
            // and the resumed run, which repeats this epoch exactly, writes the same best.h5 again.
            if writes {
                if isBest { try Checkpoint.save(net, optimizer: opt, training: json, to: bestPath) }
                try Checkpoint.save(net, optimizer: opt, training: json, to: lastPath)
                try writeMetrics(s.history)
            }
            let perEpoch = s.elapsedSeconds / Double(s.history.count)
            reporter?.epochFinished(metrics, of: config.epochs,
                                    etaSeconds: perEpoch * Double(config.epochs - s.completedEpochs), isBest: isBest)
        }
        if stopRequested(config.epochs, train.batchCount) { throw TrainingError.interrupted(epoch: config.epochs, step: train.batchCount) }
        if writes { try writeMetrics(s.history) }  // a run killed right after its final checkpoint lacks the last line
        return try finish(state: s)
    }

    /// The checks that need no data: settings, the net description, and the output folder
    /// against `resume` (and a resumed run's stored settings). Call it before loading a dataset.
    public static func preflight(config: TrainConfig, netDescription: NetDescription, outputDirectory: String,
                                 resume: Bool) throws {
        try config.validate()
        do {
            try netDescription.validate()
        } catch {
            throw TrainingError.invalidConfig("\(error) (is --ratio too small?)")
        }
        try RunFolder.checkResume(outputDirectory, file: "last.h5", resume: resume, what: "run", state: TrainingState.self) { state, last in
            let diff = config.differences(from: state.config)
            guard diff.isEmpty else { throw TrainingError.resume("\(last) was made with other settings: \(diff.joined(separator: "; "))") }
            guard state.widths == netDescription.widths else {
                throw TrainingError.resume("\(last) holds widths \(state.widths), this run \(netDescription.widths)")
            }
        }
    }

    /// A stop at `step` of 1-based `epoch`: last.h5 is written at the end of an epoch, so in the
    /// first there is nothing to resume.
    static func interruption(epoch: Int, step: Int) -> TrainingError {
        epoch == 1 ? .interruptedBeforeCheckpoint(epoch: 1, step: step, rerun: "run the same command again, without --resume")
            : .interrupted(epoch: epoch, step: step)
    }

    static func storedState(_ loaded: LoadedCheckpoint, path: String) throws -> TrainingState {
        guard let state = try loaded.training(as: TrainingState.self) else {
            throw TrainingError.resume("\(path) holds no training state")
        }
        // The run's own records: the wall time goes into every later ETA and result.
        guard state.elapsedSeconds.isFinite, (0...1e12).contains(state.elapsedSeconds) else {
            throw TrainingError.resume("\(path): its training state's elapsedSeconds is \(state.elapsedSeconds), expected 0...1e12 seconds")
        }
        // Where to go on from: past the run's epochs it would train nothing, before 0 again.
        guard (0...state.config.epochs).contains(state.completedEpochs) else {
            throw TrainingError.resume("\(path): its training state's completedEpochs is \(state.completedEpochs), "
                                       + "expected 0...\(state.config.epochs) (the run's epochs)")
        }
        guard state.history.count == state.completedEpochs else {
            throw TrainingError.resume("\(path): its training state records \(state.history.count) epochs' metrics "
                                       + "but completedEpochs \(state.completedEpochs)")
        }
        if let best = state.bestEpoch, !(best >= 1 && best <= state.completedEpochs) {
            throw TrainingError.resume("\(path): its training state's bestEpoch is \(best), expected 1...\(state.completedEpochs)")
        }
        return state
    }

    /// `last.h5` when an epoch has finished and the file loads with every tensor finite (it is
    /// named to the user as the checkpoint to go back to), else nil.
    private func lastGoodCheckpoint(_ state: TrainingState) -> String? {
        guard state.completedEpochs > 0, let loaded = try? Checkpoint.load(lastPath), Checkpoint.nonFiniteTensor(in: loaded.network) == nil else {
            return nil
        }
        return lastPath
    }

    /// A fresh net, or the one in `last.h5` with its optimizer and trainer state
    /// (`preflight` has checked that it belongs to this run).
    private func start(resume: Bool) throws -> (Network, SGD, TrainingState) {
        try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true)
        if !resume {
            let net = try makeNetwork(netDescription, initialization: .random(RandomGenerator(seed: config.seed)))
            let opt = SGD(parameters: net.parameters, schedule: config.schedule, momentum: config.momentum,
                          weightDecay: config.weightDecay)
            let state = TrainingState(config: config, widths: netDescription.widths, completedEpochs: 0, history: [],
                                      bestValidationAccuracy: nil, bestEpoch: nil, elapsedSeconds: 0,
                                      inputNormalization: inputNormalization, dataChecksum: dataChecksum)
            return (net, opt, state)
        }
        let loaded = try Checkpoint.load(lastPath)
        var state = try Trainer.storedState(loaded, path: lastPath)
        state.dataChecksum = try DatasetSources.sameData(stored: state.dataChecksum, given: dataChecksum, path: lastPath, made: "trained")
        if let normalization = state.inputNormalization {
            do { try normalization.validate(channels: netDescription.inChannels) } catch {
                throw TrainingError.resume("\(lastPath): \(error)")
            }
        }
        guard let saved = loaded.optimizer else { throw TrainingError.resume("\(lastPath) holds no optimizer state") }
        let opt = SGD(parameters: loaded.network.parameters, schedule: config.schedule, momentum: config.momentum,
                      weightDecay: config.weightDecay)
        try opt.load(saved)
        return (loaded.network, opt, state)
    }

    /// `shouldStop`, on every process at once: true when it is true on any.
    private func stopRequested(_ epoch: Int, _ step: Int) -> Bool {
        var stop: Double = shouldStop(epoch, step) ? 1 : 0
        group?.sum(&stop, count: 1)
        return stop > 0
    }

    private func trainEpoch(_ net: Network, _ opt: SGD, epoch: Int, state: TrainingState) throws -> EpochMetrics {
        opt.beginEpoch(epoch)
        let trainingStep = TrainingStep(net: net, optimizer: opt, group: group)
        let started = Date()
        var lossSum = 0.0, correct = 0, seen = 0, step = 0
        let steps = train.batchCount
        let previousPerEpoch = state.history.isEmpty ? nil : state.elapsedSeconds / Double(state.history.count)
        for batch in train.batches(epoch: epoch) {
            if stopRequested(epoch + 1, step) { throw Trainer.interruption(epoch: epoch + 1, step: step) }
            // Batch norm needs two images per channel; a final batch of one (e.g. 33 images in
            // batches of 32) is skipped, the same way in every epoch and every run; so is one with
            // fewer images than processes, which would leave a process none.
            guard batch.globalCount >= max(2, group?.size ?? 1) else { continue }
            guard let (logits, loss) = trainingStep(batch.images, labels: batch.labels, globalCount: batch.globalCount) else {
                throw TrainingError.nonFiniteLoss(epoch: epoch + 1, step: step + 1, lastGood: lastGoodCheckpoint(state))
            }
            let n = batch.globalCount
            lossSum += Double(loss) * Double(n)
            var hits = Double(correctPredictions(logits, labels: batch.labels))
            group?.sum(&hits, count: 1)
            correct += Int(hits)
            seen += n
            step += 1
            let elapsed = Date().timeIntervalSince(started)
            let thisEpoch = elapsed / Double(step) * Double(steps)
            let perEpoch = previousPerEpoch ?? thisEpoch
            let eta = (thisEpoch - elapsed) + perEpoch * Double(config.epochs - epoch - 1)
            reporter?.stepFinished(epoch: epoch + 1, step: step, steps: steps, loss: lossSum / Double(seen),
                                   accuracy: Double(correct) / Double(seen), etaSeconds: eta)
        }
        if step == 0 { throw TrainingError.noUsableBatch(max(2, group?.size ?? 1), processes: group?.size ?? 1) }
        let trainSeconds = Date().timeIntervalSince(started)
        let val = try validation.map { try evaluate(net, on: $0, group: group) }
        return EpochMetrics(epoch: epoch + 1, trainLoss: lossSum / Double(max(seen, 1)),
                            trainAccuracy: Double(correct) / Double(max(seen, 1)),
                            validationLoss: val?.loss, validationAccuracy: val?.accuracy,
                            learningRate: opt.learningRate, imagesPerSecond: Double(seen) / max(trainSeconds, 1e-9),
                            seconds: max(0, Date().timeIntervalSince(started)))
    }

    /// Evaluates `best.h5` on the test set and writes `result.json`, with the best epoch and
    /// validation accuracy read from `best.h5` itself.
    private func finish(state s: TrainingState) throws -> TrainResult {
        // Every process reads best.h5: process 0 has written it by the time all are here.
        group?.barrier()
        let best = try Checkpoint.load(bestPath)
        let bestState = try Trainer.storedState(best, path: bestPath)
        let testFigures = try test.map { try evaluate(best.network, on: $0, group: group) }
        let result = TrainResult(model: config.model, dataset: config.dataset, scaling: config.scaling, ratio: config.ratio,
                                 widths: netDescription.widths, params: best.network.parameterCount,
                                 testAccuracy: testFigures?.accuracy, testLoss: testFigures?.loss,
                                 validationAccuracy: bestState.bestValidationAccuracy, bestEpoch: bestState.bestEpoch,
                                 epochs: config.epochs, seed: config.seed, wallSeconds: s.elapsedSeconds, subset: config.subset)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        if writes { try AtomicFile.write(try encoder.encode(result), to: resultPath) }
        if let t = testFigures {
            reporter?.message(String(format: "test accuracy %.2f%%", 100 * t.accuracy)
                              + " (weights of epoch \(bestState.bestEpoch ?? s.completedEpochs)), written to \(resultPath)")
        }
        return result
    }

    /// Rewrites `metrics.jsonl` from the history in the checkpoint, so after a resume it holds
    /// exactly one line per finished epoch.
    private func writeMetrics(_ history: [EpochMetrics]) throws {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        var data = Data()
        for m in history {
            data.append(try encoder.encode(m))
            data.append(0x0A)
        }
        try AtomicFile.write(data, to: metricsPath)
    }

    private func encode(_ s: TrainingState) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(s), as: UTF8.self)
    }
}

/// Mean loss and accuracy of `net` in eval mode over every sample of `source` (epoch 0's order);
/// in a data-parallel run over every process's part of it (`group`).
public func evaluate(_ net: Network, on source: BatchSource, group: ProcessGroup? = nil) throws -> (loss: Double, accuracy: Double) {
    try Tape.withoutGradients {
        var totals = [0.0, 0.0, 0.0]  // loss sum, correct, seen
        for batch in source.batches(epoch: 0) where !batch.labels.isEmpty {
            let logits = net.logits(batch.images, training: false)
            let loss = crossEntropy(logits, labels: batch.labels).scalar
            totals[0] += Double(loss) * Double(batch.labels.count)
            totals[1] += Double(correctPredictions(logits, labels: batch.labels))
            totals[2] += Double(batch.labels.count)
        }
        group?.sum(&totals, count: 3)
        let seen = totals[2]
        guard seen > 0 else { throw TrainingError.invalidConfig("the evaluation set is empty") }
        return (totals[0] / seen, totals[1] / seen)
    }
}
