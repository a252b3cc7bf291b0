import Autodiff
import Datasets
import Foundation
import Nets

/// Real test images to check an exported net with (`neuralscale export`).
public struct VerificationImages {
    /// [N, C, H, W], normalized as the net's inputs.
    public let images: Tensor
    /// Where they come from, for people: "100 fashion-mnist test images", or the Fashion-MNIST
    /// stand-in with the reason.
    public let source: String

    /// The first `count` test images of `requested` (an explicit --dataset, which must load), else
    /// of `trainedOn` (the checkpoint's dataset); when that is unknown or not on this machine,
    /// Fashion-MNIST's, repeated over the channels and scaled up to the net's input.
    ///
    /// - Parameters:
    ///   - net: the net's description, for its input shape.
    ///   - checkpoint: the checkpoint's path, for messages.
    ///   - normalization: the checkpoint's input normalization; nil fits one on the training set.
    ///   - directory: the dataset folder (--data-dir), for `requested` or `trainedOn`.
    /// - Throws: `TrainingError.invalidConfig` (a flag error) when the dataset does not fit the
    ///   net, `requested` does not load, or no images load at all.
    public static func choose(for net: NetDescription, checkpoint: String, requested: DatasetKind?, trainedOn: DatasetKind?,
                              normalization: InputNormalization?, directory: String?, count: Int) throws -> VerificationImages {
        let d = net
        let kind = requested ?? trainedOn
        var problem = "the checkpoint does not say which dataset it was trained on"
        if let kind {
            guard kind.channels == d.inChannels, kind.imageSize == d.imageSize else {
                throw TrainingError.invalidConfig("\(checkpoint) takes \(d.inChannels)x\(d.imageSize)x\(d.imageSize) images; \(kind.rawValue) has \(kind.channels)x\(kind.imageSize)x\(kind.imageSize)")
            }
            do {
                let x = try DatasetSources.testImages(kind, directory: directory, normalization: normalization, count: count)
                return VerificationImages(images: x, source: "\(x.shape[0]) \(kind.rawValue) test images")
            } catch {
                if requested != nil { throw TrainingError.invalidConfig("--dataset \(kind.rawValue): \(error)") }
                problem = "\(kind.rawValue) is not here: \(error)"
            }
        }
        do {
            let gray = try DatasetSources.testImages(.fashionMNIST, directory: kind == .fashionMNIST ? directory : nil,
                                                     normalization: nil, count: count)
            let x = adapt(gray, channels: d.inChannels, size: d.imageSize)
            let adapted = d.inChannels == 1 && d.imageSize == gray.shape[2] ? "" : " adapted to \(d.inChannels)x\(d.imageSize)x\(d.imageSize)"
            return VerificationImages(images: x, source: "\(x.shape[0]) Fashion-MNIST test images\(adapted) (\(problem))")
        } catch {
            throw TrainingError.invalidConfig("no test images to verify with: \(problem); and Fashion-MNIST: \(error). Install Debian's dataset-fashion-mnist, pass --data-dir, or --no-verify")
        }
    }

    /// `x` [N, 1, s, s] repeated over `channels` and scaled up by the integer factor
    /// `max(1, size / s)` (nearest neighbour) to [N, channels, size, size]; rows and columns past
    /// `factor * s` repeat the last one.
    public static func adapt(_ x: Tensor, channels: Int, size: Int) -> Tensor {
        let n = x.shape[0], side = x.shape[2], factor = max(1, size / side)
        let y = Tensor(uninitialized: [n, channels, size, size])
        for i in 0..<n {
            for c in 0..<channels {
                for r in 0..<size {
                    for col in 0..<size {
                        y.data[((i * channels + c) * size + r) * size + col] = x.data[(i * side + min(r / factor, side - 1)) * side + min(col / factor, side - 1)]
                    }
                }
            }
        }
        return y
    }
}
