@_exported import Nets
import Foundation

/// Self-describing HDF5 checkpoints.
///
/// Layout (all readable with `h5dump` or h5py):
/// - every parameter and buffer of the net: a float dataset at the root under its dotted name
///   (`features.0.weight`, `bn1.running_mean`);
/// - `momentum/<name>`: the SGD momentum buffer of each parameter that has one;
/// - root attributes (JSON strings): `format` (`neuralscale-checkpoint`), `version`, `net` (the
///   `NetDescription`: architecture, widths, input channels, image size, classes), `optimizer`
///   (epoch, step count, learning rate) and `training` (the trainer's own state, opaque here).
///
/// A checkpoint therefore rebuilds its net with no other file at hand. Writes are atomic: the
/// file is written under a temporary name in the same folder, fsynced, then renamed over the
/// target, and the folder is fsynced, so a crash at any moment leaves the previous file intact.
public enum Checkpoint {
    public static let format = "neuralscale-checkpoint"
    public static let version = 1

    /// The optimizer fields stored beside the momentum buffers.
    struct OptimizerPosition: Codable {
        var epoch: Int
        var stepCount: Int
        var learningRate: Float
    }

    /// Writes `net` (and `optimizer`'s state, and the opaque `training` JSON) to `path` atomically.
    public static func save(_ net: Network, optimizer: SGD? = nil, training: String? = nil, to path: String) throws {
        try AtomicFile.replace(path) { temporary in
            let file = try HDF5File.create(temporary)
            try file.writeString(attribute: "format", format)
            try file.writeString(attribute: "version", String(version))
            try file.writeString(attribute: "net", try json(net.netDescription))
            let state = net.state
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
            if let training { try file.writeString(attribute: "training", training) }
            try file.flush()
            try file.close()
        }
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
            net = try makeNetwork(description, initialization: .none, gated: file.exists("gates.0"))
        } catch {
            throw CheckpointError(path: path, message: "its net description is invalid: \(error)")
        }
        let state = net.state
        for entry in state {
            try file.readFloats(entry.name, expected: entry.tensor.shape, into: entry.tensor.data)
        }
        var optimizer: SGDState?
        if file.exists("momentum") {
            let position: OptimizerPosition = try decode(try file.readString(attribute: "optimizer"), "optimizer", path)
            var buffers: [[Float]?] = []
            for entry in state where entry.kind == .parameter {
                let name = "momentum/" + entry.name
                guard file.exists(name) else { buffers.append(nil); continue }
                var values = [Float](repeating: 0, count: entry.tensor.count)
                try values.withUnsafeMutableBufferPointer {
                    try file.readFloats(name, expected: entry.tensor.shape, into: $0.baseAddress!)
                }
                buffers.append(values)
            }
            optimizer = SGDState(epoch: position.epoch, stepCount: position.stepCount,
                                 learningRate: position.learningRate, momentumBuffers: buffers)
        }
        let training = file.hasAttribute("training") ? try file.readString(attribute: "training") : nil
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
            throw CheckpointError(path: path, message: "its training state is unreadable: \(error)")
        }
    }
}
