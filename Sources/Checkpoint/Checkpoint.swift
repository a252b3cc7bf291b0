import Autodiff
import Foundation
import Nets

/// Self-describing HDF5 checkpoints.
///
/// Layout (all readable with `h5dump` or h5py; HDF5 1.10 format, whose metadata has checksums):
/// - every parameter and buffer of the net: a float dataset at the root under its dotted name
///   (`features.0.weight`, `bn1.running_mean`);
/// - `momentum/<name>`: the SGD momentum buffer of each parameter that has one;
/// - `meta/training`: the trainer's own state (opaque here), UTF-8 JSON as a 1-D uint8 dataset.
///   A search state outgrows the 64 KB an HDF5 object header holds for attributes, so it is a
///   dataset; `meta` has no dot, so no dotted tensor name can collide with it;
/// - root attributes (short strings): `format` (`neuralscale-checkpoint`), `version`, and the
///   JSON objects `net` (the `NetDescription`: architecture, widths, input channels, image size,
///   classes) and `optimizer` (epoch, step count, learning rate).
///
/// Every non-empty dataset is stored as one chunk (split only past HDF5's 4 GB chunk limit) with
/// HDF5's Fletcher32 checksum, so flipped bytes are reported on load. No tensor may hold NaN or
/// Inf (nor a running variance be negative): `save` refuses such a net, so a saved checkpoint is
/// always a good one, and `load` rejects such a file.
///
/// Loading also reads the older layout: contiguous datasets without checksums and the trainer's
/// state in a root attribute `training`; strings may be fixed- or variable-length (h5py's default).
///
/// A checkpoint therefore rebuilds its net with no other file at hand. Writes are atomic: the
/// file is written under a temporary name in the same folder, fsynced, then renamed over the
/// target, and the folder is fsynced, so a crash at any moment leaves the previous file intact.
public enum Checkpoint {
    public static let format = "neuralscale-checkpoint"
    public static let version = 1
    /// Where the trainer's state is stored (see the layout above).
    public static let trainingDataset = "meta/training"

    /// The optimizer fields stored beside the momentum buffers.
    struct OptimizerPosition: Codable {
        var epoch: Int
        var stepCount: Int
        var learningRate: Float
    }

    /// Writes `net` (and `optimizer`'s state, and the opaque `training` JSON) to `path` atomically.
    /// - Throws: `CheckpointError` naming the file and, when a tensor is not finite, the tensor
    ///   (nothing is written then: the previous file stays).
    public static func save(_ net: Network, optimizer: SGD? = nil, training: String? = nil, to path: String) throws {
        if let bad = invalidTensor(in: net, optimizer: optimizer) {
            throw CheckpointError(path: path, message: "not saved (the previous file is kept): \(bad)")
        }
        let state = net.state
        // Tensors, momentum and the state dominate the size; metadata is ~1 KB a dataset.
        let sizeHint = state.reduce(0) { $0 + 4 * $1.tensor.count } * (optimizer == nil ? 1 : 2)
            + (training?.utf8.count ?? 0) + 2048 * state.count + 65_536
        try AtomicFile.replace(path) { temporary in
            // Built in memory, written by AtomicFile: see `HDF5File.createInMemory`.
            let file = try HDF5File.createInMemory(temporary, reportAs: path, sizeHint: sizeHint)
            try file.writeString(attribute: "format", format)
            try file.writeString(attribute: "version", String(version))
            try file.writeString(attribute: "net", try json(net.netDescription))
            for entry in state {
                try file.writeFloats(entry.name, shape: entry.tensor.shape, entry.tensor.data)
            }
            if let optimizer {
                let s = optimizer.state
                try file.writeString(attribute: "optimizer", try json(OptimizerPosition(
                    epoch: s.epoch, stepCount: s.stepCount, learningRate: s.learningRate)))
                try file.createGroup("momentum")
                let names = state.filter { $0.kind == .parameter }.map(\.name)
                guard names.count == s.momentumBuffers.count else {
                    throw CheckpointError(path: path, message: "the optimizer holds \(s.momentumBuffers.count) parameters, the net \(names.count)")
                }
                for (name, (buffer, parameter)) in zip(names, zip(s.momentumBuffers, optimizer.parameters)) {
                    guard let buffer else { continue }
                    try buffer.withUnsafeBufferPointer {
                        try file.writeFloats("momentum/" + name, shape: parameter.shape, $0.baseAddress!)
                    }
                }
            }
            if let training {
                try file.createGroup("meta")
                try file.writeBytes(trainingDataset, Array(training.utf8))
            }
            let image = try file.image()
            try image.withUnsafeBytes { try AtomicFile.writeContents($0, to: temporary, reportAs: path) }
        }
    }

    /// The name of the first tensor of `net` (parameters, BN buffers, gates) holding NaN or Inf,
    /// or nil: what must not be saved as a "last good" checkpoint.
    public static func nonFiniteTensor(in net: Network) -> String? {
        net.state.first { !allFinite(UnsafeBufferPointer(start: $0.tensor.data, count: $0.tensor.count)) }?.name
    }

    /// Why `net` or `optimizer` must not be saved (a non-finite tensor or momentum buffer, a
    /// negative running variance), naming the tensor; nil when all is well.
    static func invalidTensor(in net: Network, optimizer: SGD?) -> String? {
        let state = net.state
        for entry in state {
            if let problem = problem(entry.name, UnsafeBufferPointer(start: entry.tensor.data, count: entry.tensor.count)) {
                return problem
            }
        }
        guard let optimizer else { return nil }
        let names = state.filter { $0.kind == .parameter }.map(\.name)
        for (name, buffer) in zip(names, optimizer.state.momentumBuffers) {
            if let buffer, let problem = buffer.withUnsafeBufferPointer({ self.problem("momentum/" + name, $0) }) {
                return problem
            }
        }
        return nil
    }

    /// What is wrong with tensor `name`'s `values`, or nil.
    private static func problem(_ name: String, _ values: UnsafeBufferPointer<Float>) -> String? {
        guard allFinite(values) else { return "\(name) holds non-finite values (NaN or Inf)" }
        if name.hasSuffix("running_var"), values.contains(where: { $0 < 0 }) {
            return "\(name) holds negative values (a variance cannot be negative)"
        }
        return nil
    }

    private static func allFinite(_ values: UnsafeBufferPointer<Float>) -> Bool {
        for v in values where !v.isFinite { return false }
        return true
    }

    /// Reads a checkpoint: rebuilds its net and fills every parameter and buffer.
    public static func load(_ path: String) throws -> LoadedCheckpoint {
        let file = try HDF5File.open(path)
        let found = try file.readString(attribute: "format")
        guard found == format else { throw CheckpointError(path: path, message: "format is '\(found)', expected '\(format)'") }
        let v = try file.readString(attribute: "version")
        guard v == String(version) else { throw CheckpointError(path: path, message: "version \(v) is not supported (this build reads \(version))") }
        let description: NetDescription = try decode(try file.readString(attribute: "net"), "net", path)
        let net: Network
        do {
            // A search checkpoint holds gates (`gates.<i>`) and rebuilds a gated net.
            net = try makeNetwork(description, initialization: .none, channelScales: try file.exists("gates.0"))
        } catch {
            throw CheckpointError(path: path, message: "its net description is invalid: \(error)")
        }
        let state = net.state
        for entry in state {
            try file.readFloats(entry.name, expected: entry.tensor.shape, into: entry.tensor.data)
            if let problem = problem(entry.name, UnsafeBufferPointer(start: entry.tensor.data, count: entry.tensor.count)) {
                throw CheckpointError(path: path, message: problem)
            }
        }
        var optimizer: SGDState?
        if try file.exists("momentum") {
            let position: OptimizerPosition = try decode(try file.readString(attribute: "optimizer"), "optimizer", path)
            guard position.epoch >= 0, position.stepCount >= 0, position.learningRate.isFinite, position.learningRate >= 0 else {
                throw CheckpointError(path: path, message: "attribute optimizer is not valid (epoch \(position.epoch), stepCount "
                                      + "\(position.stepCount), learningRate \(position.learningRate)): expected counts >= 0 and a "
                                      + "finite learning rate >= 0")
            }
            var buffers: [[Float]?] = []
            for entry in state where entry.kind == .parameter {
                let name = "momentum/" + entry.name
                guard try file.exists(name) else { buffers.append(nil); continue }
                var values = [Float](repeating: 0, count: entry.tensor.count)
                try values.withUnsafeMutableBufferPointer {
                    try file.readFloats(name, expected: entry.tensor.shape, into: $0.baseAddress!)
                    if let problem = problem(name, UnsafeBufferPointer($0)) { throw CheckpointError(path: path, message: problem) }
                }
                buffers.append(values)
            }
            optimizer = SGDState(epoch: position.epoch, stepCount: position.stepCount,
                                 learningRate: position.learningRate, momentumBuffers: buffers)
        }
        // Older checkpoints hold the state in an attribute.
        let training = try file.exists(trainingDataset) ? try file.readText(dataset: trainingDataset)
            : try file.hasAttribute("training") ? try file.readString(attribute: "training") : nil
        return LoadedCheckpoint(path: path, network: net, optimizer: optimizer, training: training)
    }

    private static func json<T: Encodable>(_ value: T) throws -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        return String(decoding: try encoder.encode(value), as: UTF8.self)
    }

    private static func decode<T: Decodable>(_ text: String, _ what: String, _ path: String) throws -> T {
        do {
            return try JSONDecoder().decode(T.self, from: Data(text.utf8))
        } catch {
            throw CheckpointError(path: path, message: "attribute \(what) is not valid: \(error)")
        }
    }
}

/// What `Checkpoint.load` returns.
public struct LoadedCheckpoint {
    public let path: String
    /// The net, rebuilt from the stored description with the stored weights and buffers.
    public let network: Network
    /// The optimizer state, when the checkpoint has one; buffers in `network.parameters` order.
    public let optimizer: SGDState?
    /// The trainer's opaque JSON state, when the checkpoint has one.
    public let training: String?
}

extension LoadedCheckpoint {
    /// The trainer's JSON state decoded as `T`, or nil when the checkpoint has none.
    /// - Throws: `CheckpointError` naming the file when the state does not decode as `T`.
    public func training<T: Decodable>(as type: T.Type) throws -> T? {
        guard let training else { return nil }
        do {
            return try JSONDecoder().decode(T.self, from: Data(training.utf8))
        } catch {
            // Which run's state was expected: a train checkpoint given for a search's state.h5
            // (or the reverse) is the usual cause.
            let expected = ["TrainingState": "a training run's (`neuralscale train`)", "DescentState": "a search's (`neuralscale descend`)"]
            let kind = expected[String(describing: T.self)].map { "; expected \($0)" } ?? ""
            throw CheckpointError(path: path, message: "its training state is unreadable (\(describeDecodingError(error, data: Data(training.utf8))))\(kind)")
        }
    }
}
