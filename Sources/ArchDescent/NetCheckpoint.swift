import Checkpoint
import Datasets
import Foundation
import Nets
import Pruning
import Training

// Telling the two kinds of checkpoint apart lives here because ArchDescent is the lowest module
// that knows both states: a `train` checkpoint holds Training's `TrainingState`, a search's
// `state.h5` holds this module's `DescentState`. Training cannot know the search's state (the
// arrow runs Training <- ArchDescent), and Export need not: the CLI reads the checkpoint here
// and hands Export the net.

/// What the `training` state of a checkpoint is.
public enum CheckpointContents {
    /// A checkpoint of `neuralscale train`.
    case trained(TrainingState)
    /// A search's `state.h5` (`neuralscale descend`).
    case search(DescentState)
    /// No training state at all.
    case none
    /// A state that is neither: `error` is why it does not read as a `TrainingState`.
    case unreadable(Error)

    /// Reads the state of `loaded` as a `TrainingState`, else as a `DescentState`.
    public init(_ loaded: LoadedCheckpoint) {
        do {
            if let state = try loaded.training(as: TrainingState.self) {
                self = .trained(state)
            } else {
                self = .none
            }
        } catch {
            if let search = try? loaded.training(as: DescentState.self) {
                self = .search(search)
            } else {
                self = .unreadable(error)
            }
        }
    }
}

/// A checkpoint refused for what it holds (not for its flags): one line naming the file.
public struct CheckpointUseError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// A checkpoint's net with what it says about how the net was trained: what `export` and
/// `stats` read. Either a checkpoint of `train` or a search's `state.h5` saved during an
/// iteration (its gated net, pruned as far as the search went).
public struct NetCheckpoint {
    public let path: String
    public let loaded: LoadedCheckpoint
    /// The dataset the net was trained on, when the checkpoint says.
    public let dataset: DatasetKind?
    /// The input normalization of training (a search state has none: `inputs(_:directory:)`
    /// recomputes it).
    public let normalization: InputNormalization?
    /// A search state's settings (nil for a `train` checkpoint).
    public var searchConfig: DescentConfig?

    public var network: Network { loaded.network }

    /// Loads `path`.
    /// - Throws: `CheckpointError` from `Checkpoint.load`; `CheckpointUseError` for a search
    ///   state between iterations (or after the last: it holds no trained net, only zeros of
    ///   the base net's shape) and for a stored normalization that does not fit the net.
    public static func load(_ path: String) throws -> NetCheckpoint {
        let loaded = try Checkpoint.load(path)
        switch CheckpointContents(loaded) {
        case let .trained(training):
            if let normalization = training.inputNormalization {
                do {
                    try normalization.validate(channels: loaded.network.netDescription.inChannels)
                } catch {
                    throw CheckpointUseError("\(path): \(error)")
                }
            }
            return NetCheckpoint(path: path, loaded: loaded, dataset: DatasetKind(rawValue: training.config.dataset),
                                 normalization: training.inputNormalization)
        case let .search(search):
            guard search.current != nil else {
                throw CheckpointUseError("\(path) is a search's state between iterations (or after the last): it holds no trained net. Use a checkpoint of `neuralscale train`, or a state.h5 saved during an iteration")
            }
            return NetCheckpoint(path: path, loaded: loaded, dataset: DatasetKind(rawValue: search.config.dataset),
                                 normalization: nil, searchConfig: search.config)
        case .none, .unreadable:
            return NetCheckpoint(path: path, loaded: loaded, dataset: nil, normalization: nil)
        }
    }

    /// The dataset to run the net on (`requested`, else the one it was trained on) and the
    /// normalization of its inputs, both checked against the net.
    /// - Throws: `TrainingError.invalidConfig` (a flag error) naming the file when no dataset is
    ///   known or `requested` does not fit the net; `TrainingError.invalidInput` when the dataset
    ///   the checkpoint records does not fit its own net, or it holds no normalization.
    public func inputs(_ requested: DatasetKind?) throws -> (kind: DatasetKind, normalization: InputNormalization) {
        let kind = try NetCheckpoint.dataset(requested, trainedOn: dataset, fitting: network.netDescription, path: path)
        guard let normalization else { throw NetCheckpoint.noNormalization(path) }
        return (kind, normalization)
    }

    /// `inputs(_:)`, but for a search state, which records no normalization, the one its search
    /// trained with: fitted as `descend` fits it, on the search's seeded subset of the training
    /// set (or the whole set) of the dataset in `directory`.
    public func inputs(_ requested: DatasetKind?, directory: String?) throws -> (kind: DatasetKind, normalization: InputNormalization) {
        guard normalization == nil, let search = searchConfig else { return try inputs(requested) }
        let kind = try NetCheckpoint.dataset(requested, trainedOn: dataset, fitting: network.netDescription, path: path)
        let data = try search.trainingData(kind, directory: directory, subsetting: kind.rawValue == search.dataset, reporter: nil)
        return (kind, data.normalization)
    }

    /// `requested`, else `trainedOn`, checked to fit the net `d`.
    static func dataset(_ requested: DatasetKind?, trainedOn: DatasetKind?, fitting d: NetDescription, path: String) throws -> DatasetKind {
        guard let kind = requested ?? trainedOn else {
            throw TrainingError.invalidConfig("\(path) does not say which dataset it was trained on; pass --dataset")
        }
        guard kind.channels == d.inChannels, kind.imageSize == d.imageSize, kind.classes == d.classes else {
            // --dataset's choice is the command line's; the checkpoint's own, its contents.
            let message = "\(path) takes \(d.inChannels)x\(d.imageSize)x\(d.imageSize) images and \(d.classes) classes; \(kind.rawValue) does not fit"
            throw requested != nil ? TrainingError.invalidConfig(message) : TrainingError.invalidInput(message + " (the dataset it records)")
        }
        return kind
    }

    static func noNormalization(_ path: String) -> TrainingError {
        .invalidInput("\(path) holds no input normalization (not written by `neuralscale train`?)")
    }

    /// The net as it runs: a gated net (a search state) after surgery, else the net itself.
    /// - Throws: `CheckpointUseError` naming the file when surgery fails.
    public func prunedNetwork() throws -> Network {
        let net = network
        guard net.isGated else { return net }
        do { return try Surgery.prune(net) } catch { throw CheckpointUseError("\(path): \(error)") }
    }
}

/// A checkpoint's test accuracy, as `neuralscale eval` reports it.
public struct CheckpointEvaluation: Codable, Equatable, Sendable {
    public var checkpoint: String
    public var dataset: String
    public var testAccuracy: Double
    public var testLoss: Double
    public var images: Int

    /// Evaluates the checkpoint `path` of `neuralscale train` on the test set of `dataset` (default:
    /// the one it was trained on), with the input normalization stored in it.
    /// - Throws: `TrainingError.invalidConfig` (a flag error) for a checkpoint that names no
    ///   dataset when `dataset` is nil, or a given `dataset` whose images or classes do not fit
    ///   the net; `TrainingError.invalidInput` for a search's state, a recorded dataset that does
    ///   not fit the net, a checkpoint without normalization (or an empty test set);
    ///   `CheckpointUseError` for a stored
    ///   normalization that does not fit the net; `CheckpointError`, `DatasetError`.
    public static func run(checkpoint path: String, dataset: String?, directory: String?, batchSize: Int,
                           reporter: TrainingReporter?) throws -> CheckpointEvaluation {
        let loaded = try Checkpoint.load(path)
        let state: TrainingState?
        switch CheckpointContents(loaded) {
        case let .trained(training): state = training
        case .none: state = nil
        case let .unreadable(error): throw error
        case .search:
            throw TrainingError.invalidInput(
                "\(path) is the state of a search (`neuralscale descend`), not a trained net: "
                + "train the net the search found with `neuralscale train --scaling neuralscale --descent <folder>/descent.json --ratio R` and evaluate that run's best.h5")
        }
        let d = loaded.network.netDescription
        let kind = try NetCheckpoint.dataset(dataset.flatMap { DatasetKind(rawValue: $0) },
                                             trainedOn: state.flatMap { DatasetKind(rawValue: $0.config.dataset) }, fitting: d, path: path)
        guard let normalization = state?.inputNormalization else { throw NetCheckpoint.noNormalization(path) }
        do { try normalization.validate(channels: d.inChannels) } catch { throw CheckpointUseError("\(path): \(error)") }
        let test = try DatasetSources.testSource(kind, directory: directory, normalization: normalization, batchSize: batchSize,
                                                reporter: reporter)
        let (loss, accuracy) = try evaluate(loaded.network, on: test)
        return CheckpointEvaluation(checkpoint: path, dataset: kind.rawValue, testAccuracy: accuracy, testLoss: loss,
                                    images: test.sampleCount)
    }
}
