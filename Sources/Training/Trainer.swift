import Foundation

/// Trains one net from scratch (or from its last checkpoint) with SGD and the multi-step
/// schedule, keeping `last.h5`, `best.h5` (best validation accuracy), `metrics.jsonl` and, at the
/// end, `result.json` in the output folder.
///
/// Exact resumption: every random draw of an epoch (shuffle, augmentation) is derived from the
/// seed and the epoch number by the batch sources, and checkpoints hold the weights, BN
/// statistics, momentum buffers and schedule position at an epoch boundary. A run killed at any
/// point and resumed therefore repeats the interrupted epoch exactly as the uninterrupted run did.
public final class Trainer {
    public let config: TrainConfig
    public let netDescription: NetDescription
    public let outputDirectory: String
    let train: BatchSource, validation: BatchSource?, test: BatchSource?
    let reporter: TrainingReporter?
    let inputNormalization: InputNormalization?
    /// Checked before every step; returning true stops the run with `TrainingError.interrupted`
    /// (the CLI sets it from SIGINT, tests use it to simulate a kill).
    public var shouldStop: (_ epoch: Int, _ step: Int) -> Bool = { _, _ in false }

    public var lastPath: String { path("last.h5") }
    public var bestPath: String { path("best.h5") }
    public var metricsPath: String { path("metrics.jsonl") }
    public var resultPath: String { path("result.json") }

    public init(config: TrainConfig, netDescription: NetDescription, train: BatchSource, validation: BatchSource?,
                test: BatchSource?, outputDirectory: String, inputNormalization: InputNormalization? = nil,
                reporter: TrainingReporter? = ConsoleReporter()) {
        self.inputNormalization = inputNormalization
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
        let (net, opt, state) = try start(resume: resume)
        var s = state
        reporter?.runStarted(config: config, params: net.parameterCount, resumedAt: s.completedEpochs)
        while s.completedEpochs < config.epochs {
            let metrics = try trainEpoch(net, opt, epoch: s.completedEpochs, state: s)
            s.completedEpochs += 1
            s.history.append(metrics)
            s.elapsedSeconds += metrics.seconds
            // Without a validation split the latest weights count as the best.
            let isBest = metrics.validationAccuracy.map { $0 > (s.bestValidationAccuracy ?? -1) } ?? true
            if isBest {
                s.bestValidationAccuracy = metrics.validationAccuracy
                s.bestEpoch = metrics.epoch
            }
            let json = try encode(s)
            try Checkpoint.save(net, optimizer: opt, training: json, to: lastPath)
            if isBest { try Checkpoint.save(net, optimizer: opt, training: json, to: bestPath) }
            try writeMetrics(s.history)
            let perEpoch = s.elapsedSeconds / Double(s.history.count)
            reporter?.epochFinished(metrics, of: config.epochs,
                                    etaSeconds: perEpoch * Double(config.epochs - s.completedEpochs), isBest: isBest)
        }
        return try finish(state: s)
    }

    /// A fresh net, or the one in `last.h5` with its optimizer and trainer state.
    private func start(resume: Bool) throws -> (Network, SGD, TrainingState) {
        try FileManager.default.createDirectory(atPath: outputDirectory, withIntermediateDirectories: true)
        let exists = FileManager.default.fileExists(atPath: lastPath)
        if !resume {
            guard !exists else {
                throw TrainingError.output("\(lastPath) already exists: pass --resume to continue that run, or choose another --out")
            }
            let net = try makeNetwork(netDescription, initialization: .random(RandomGenerator(seed: config.seed)))
            let opt = SGD(parameters: net.parameters, schedule: config.schedule, momentum: config.momentum,
                          weightDecay: config.weightDecay)
            let state = TrainingState(config: config, widths: netDescription.widths, completedEpochs: 0, history: [],
                                      bestValidationAccuracy: nil, bestEpoch: nil, elapsedSeconds: 0,
                                      inputNormalization: inputNormalization)
            return (net, opt, state)
        }
        guard exists else { throw TrainingError.resume("\(lastPath) does not exist (nothing to resume in \(outputDirectory))") }
        let loaded = try Checkpoint.load(lastPath)
        guard let json = loaded.training, let saved = loaded.optimizer else {
            throw TrainingError.resume("\(lastPath) holds no training state")
        }
        let state = try JSONDecoder().decode(TrainingState.self, from: Data(json.utf8))
        let diff = config.differences(from: state.config)
        guard diff.isEmpty else { throw TrainingError.resume("\(lastPath) was made with other settings: \(diff.joined(separator: "; "))") }
        guard loaded.network.netDescription == netDescription else {
            throw TrainingError.resume("\(lastPath) holds a different net (\(loaded.network.netDescription.widths))")
        }
        let opt = SGD(parameters: loaded.network.parameters, schedule: config.schedule, momentum: config.momentum,
                      weightDecay: config.weightDecay)
        try opt.load(saved)
        return (loaded.network, opt, state)
    }

    private func trainEpoch(_ net: Network, _ opt: SGD, epoch: Int, state: TrainingState) throws -> EpochMetrics {
        opt.beginEpoch(epoch)
        let started = Date()
        var lossSum = 0.0, correct = 0, seen = 0, step = 0
        let steps = train.batchCount
        let previousPerEpoch = state.history.isEmpty ? nil : state.elapsedSeconds / Double(state.history.count)
        for batch in train.batches(epoch: epoch) {
            if shouldStop(epoch + 1, step) { throw TrainingError.interrupted(epoch: epoch + 1, step: step) }
            opt.zeroGrad()
            let logits = net.logits(batch.images, training: true)
            let loss = crossEntropy(logits, labels: batch.labels)
            guard loss.scalar.isFinite else {
                Tape.current.clear()
                throw TrainingError.nonFiniteLoss(epoch: epoch + 1, step: step + 1,
                                                  lastGood: state.completedEpochs > 0 ? lastPath : nil)
            }
            loss.backward()
            opt.step()
            let n = batch.labels.count
            lossSum += Double(loss.scalar) * Double(n)
            correct += correctPredictions(logits, labels: batch.labels)
            seen += n
            step += 1
            let elapsed = Date().timeIntervalSince(started)
            let thisEpoch = elapsed / Double(step) * Double(steps)
            let perEpoch = previousPerEpoch ?? thisEpoch
            let eta = (thisEpoch - elapsed) + perEpoch * Double(config.epochs - epoch - 1)
            reporter?.stepFinished(epoch: epoch + 1, step: step, steps: steps, loss: lossSum / Double(seen),
                                   accuracy: Double(correct) / Double(seen), etaSeconds: eta)
        }
        let trainSeconds = Date().timeIntervalSince(started)
        let val = try validation.map { try evaluate(net, on: $0) }
        return EpochMetrics(epoch: epoch + 1, trainLoss: lossSum / Double(max(seen, 1)),
                            trainAccuracy: Double(correct) / Double(max(seen, 1)),
                            validationLoss: val?.loss, validationAccuracy: val?.accuracy,
                            learningRate: opt.learningRate, imagesPerSecond: Double(seen) / max(trainSeconds, 1e-9),
                            seconds: Date().timeIntervalSince(started))
    }

    /// Evaluates `best.h5` on the test set and writes `result.json`.
    private func finish(state s: TrainingState) throws -> TrainResult {
        let best = try Checkpoint.load(FileManager.default.fileExists(atPath: bestPath) ? bestPath : lastPath)
        let testFigures = try test.map { try evaluate(best.network, on: $0) }
        let result = TrainResult(model: config.model, dataset: config.dataset, scaling: config.scaling, ratio: config.ratio,
                                 widths: netDescription.widths, params: best.network.parameterCount,
                                 testAccuracy: testFigures?.accuracy, testLoss: testFigures?.loss,
                                 validationAccuracy: s.bestValidationAccuracy, bestEpoch: s.bestEpoch,
                                 epochs: config.epochs, seed: config.seed, wallSeconds: s.elapsedSeconds)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        try AtomicFile.write(try encoder.encode(result), to: resultPath)
        if let t = testFigures {
            reporter?.message(String(format: "test accuracy %.2f%%", 100 * t.accuracy)
                              + " (weights of epoch \(s.bestEpoch ?? s.completedEpochs)), written to \(resultPath)")
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

/// Mean loss and accuracy of `net` in eval mode over every sample of `source` (epoch 0's order).
public func evaluate(_ net: Network, on source: BatchSource) throws -> (loss: Double, accuracy: Double) {
    try Tape.withoutGradients {
        var lossSum = 0.0, correct = 0, seen = 0
        for batch in source.batches(epoch: 0) {
            let logits = net.logits(batch.images, training: false)
            let loss = crossEntropy(logits, labels: batch.labels).scalar
            lossSum += Double(loss) * Double(batch.labels.count)
            correct += correctPredictions(logits, labels: batch.labels)
            seen += batch.labels.count
        }
        guard seen > 0 else { throw TrainingError.invalidConfig("the evaluation set is empty") }
        return (lossSum / Double(seen), Double(correct) / Double(seen))
    }
}
