import Foundation
import Nets

/// One epoch's figures, as written to `metrics.jsonl` (one JSON object per line).
public struct EpochMetrics: Codable, Equatable, Sendable {
    /// 1-based.
    public var epoch: Int
    public var trainLoss: Double
    public var trainAccuracy: Double
    public var validationLoss: Double?
    public var validationAccuracy: Double?
    public var learningRate: Float
    public var imagesPerSecond: Double
    public var seconds: Double
}

/// The trainer's state stored in every checkpoint (the `training` attribute).
public struct TrainingState: Codable, Equatable, Sendable {
    public var config: TrainConfig
    public var widths: [Int]
    public var completedEpochs: Int
    public var history: [EpochMetrics]
    public var bestValidationAccuracy: Double?
    public var bestEpoch: Int?
    /// Wall time of the finished epochs, across resumptions.
    public var elapsedSeconds: Double
    /// Per-channel mean and std the inputs were normalized with (fitted on the training split),
    /// needed to evaluate or export the net later.
    public var inputNormalization: InputNormalization?
    /// `DatasetSources.checksum` of the data the run started on (nil in checkpoints written
    /// before it was recorded, and for sources that are not a dataset's).
    public var dataChecksum: String?
}

/// Per-channel input normalization, `(x / 255 - mean[c]) / std[c]`.
public struct InputNormalization: Codable, Equatable, Sendable {
    public var mean: [Float]
    public var std: [Float]

    public init(mean: [Float], std: [Float]) {
        self.mean = mean
        self.std = std
    }
}

/// What a finished run reports (`result.json`).
public struct TrainResult: Codable, Equatable, Sendable {
    public var model: Architecture
    public var dataset: String
    public var scaling: Scaling
    public var ratio: Double
    public var widths: [Int]
    public var params: Int
    public var testAccuracy: Double?
    public var testLoss: Double?
    public var validationAccuracy: Double?
    /// 1-based epoch of the weights evaluated (the best on validation).
    public var bestEpoch: Int?
    public var epochs: Int
    public var seed: UInt64
    public var wallSeconds: Double
    /// The training images used, when `--subset` chose fewer than the training split (nil: all).
    public var subset: Int?

    /// Checks the figures of a `result.json` read back (it may have been edited or damaged):
    /// accuracies in 0...1, a ratio in (0, 4], a valid net, positive counts.
    public func validate() throws {
        func fail(_ m: String) -> TrainingError { .invalidInput(m) }
        for (name, value) in [("testAccuracy", testAccuracy), ("validationAccuracy", validationAccuracy)] {
            if let value, !(0...1).contains(value) { throw fail("\(name) is \(value); accuracies are fractions in 0...1") }
        }
        if let testLoss, !(testLoss.isFinite && testLoss >= 0) { throw fail("testLoss is \(testLoss); it must be finite and >= 0") }
        guard ratio > 0, ratio <= 4 else { throw fail("ratio is \(ratio); it must be in (0, 4]") }
        guard params > 0, params <= NetDescription.maxParameters else {
            throw fail("params is \(params); it must be in 1...\(NetDescription.maxParameters)")
        }
        guard epochs >= 1, epochs <= 100_000 else { throw fail("epochs is \(epochs); it must be in 1...100000") }
        if let bestEpoch, !(1...epochs).contains(bestEpoch) { throw fail("bestEpoch is \(bestEpoch); it must be in 1...\(epochs)") }
        guard wallSeconds.isFinite, (0...1e12).contains(wallSeconds) else { throw fail("wallSeconds is \(wallSeconds); it must be in 0...1e12") }
        if let subset, subset < 2 { throw fail("subset is \(subset); it must be >= 2") }
        guard widths.count == model.originalWidths.count,
              widths.allSatisfy({ (1...NetDescription.maxWidth).contains($0) }) else {
            throw fail("widths \(widths) are not \(model.originalWidths.count) widths in 1...\(NetDescription.maxWidth) of \(model.rawValue)")
        }
    }
}

/// Receives progress; the console implementation draws a bar with an ETA on a terminal and
/// plain lines otherwise.
public protocol TrainingReporter: AnyObject {
    func runStarted(config: TrainConfig, params: Int, resumedAt epoch: Int)
    func stepFinished(epoch: Int, step: Int, steps: Int, loss: Double, accuracy: Double, etaSeconds: Double)
    func epochFinished(_ metrics: EpochMetrics, of epochs: Int, etaSeconds: Double, isBest: Bool)
    func message(_ text: String)
    /// Dataset loading progress (files, or images for tinyImageNet).
    func loading(done: Int, of total: Int)
}

/// Prints progress to standard error: a redrawn bar with an ETA when it is a terminal, one line
/// per epoch otherwise.
public final class ConsoleReporter: TrainingReporter {
    private let isTerminal = isatty(STDERR_FILENO) != 0
    private var lastDraw = 0.0

    public init() {}

    private func write(_ s: String) { FileHandle.standardError.write(Data(s.utf8)) }

    public func runStarted(config: TrainConfig, params: Int, resumedAt epoch: Int) {
        write("\(config.model.rawValue) on \(config.dataset), \(config.scaling.rawValue) ratio \(config.ratio): "
              + "\(params) parameters, \(config.epochs) epochs"
              + (epoch > 0 ? ", resuming after epoch \(epoch)" : "") + "\n")
    }

    public func stepFinished(epoch: Int, step: Int, steps: Int, loss: Double, accuracy: Double, etaSeconds: Double) {
        guard isTerminal else { return }
        let now = Date().timeIntervalSince1970
        guard now - lastDraw > 0.2 || step == steps else { return }
        lastDraw = now
        let width = 24, filled = width * step / max(steps, 1)
        let bar = String(repeating: "#", count: filled) + String(repeating: ".", count: width - filled)
        write("\r\u{1B}[Kepoch \(epoch) [\(bar)] \(step)/\(steps) "
              + String(format: "loss %.4f acc %.2f%%", loss, 100 * accuracy) + " ETA \(formatDuration(etaSeconds))")
    }

    public func epochFinished(_ m: EpochMetrics, of epochs: Int, etaSeconds: Double, isBest: Bool) {
        var line = String(format: "epoch %d/%d  train loss %.4f acc %.2f%%", m.epoch, epochs, m.trainLoss, 100 * m.trainAccuracy)
        if let vl = m.validationLoss, let va = m.validationAccuracy {
            line += String(format: "  val loss %.4f acc %.2f%%", vl, 100 * va)
        }
        line += String(format: "  lr %g  %.0f img/s  %.1fs", m.learningRate, m.imagesPerSecond, m.seconds)
        if isBest { line += "  *best" }
        if m.epoch < epochs { line += "  ETA \(formatDuration(etaSeconds))" }
        write((isTerminal ? "\r\u{1B}[K" : "") + line + "\n")
    }

    public func message(_ text: String) { write((isTerminal ? "\r\u{1B}[K" : "") + text + "\n") }

    public func loading(done: Int, of total: Int) {
        guard isTerminal, total > 0 else { return }
        write("\r\u{1B}[Kloading data: \(done)/\(total) (\(100 * done / total)%)")
        if done == total { write("\r\u{1B}[K") }
    }
}

/// `1h02m`, `3m05s`, `12s`.
public func formatDuration(_ seconds: Double) -> String {
    guard seconds.isFinite, seconds >= 0 else { return "?" }
    // Past Int's range (a corrupt or hand-edited record) the hours alone, not a trap.
    guard seconds < 1e15 else { return String(format: "%.3gh", seconds / 3600) }
    let s = Int(seconds.rounded())
    if s >= 3600 { return String(format: "%dh%02dm", s / 3600, s % 3600 / 60) }
    if s >= 60 { return String(format: "%dm%02ds", s / 60, s % 60) }
    return "\(s)s"
}
