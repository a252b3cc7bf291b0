import Autodiff
import Foundation

/// Per-channel normalization, `(pixel / 255 - mean[c]) / std[c]`, as torchvision's
/// `ToTensor()` followed by `Normalize(mean, std)`.
public struct Normalization: Equatable, Sendable {
    /// `[channels]`, in the [0, 1] pixel scale.
    public var mean: [Float]
    /// `[channels]`, in the [0, 1] pixel scale, positive.
    public var std: [Float]

    public init(mean: [Float], std: [Float]) {
        precondition(mean.count == std.count, "Normalization: \(mean.count) means but \(std.count) stds")
        precondition(std.allSatisfy { $0 > 0 }, "Normalization: every std must be positive, got \(std)")
        self.mean = mean
        self.std = std
    }

    /// The identity on [0, 1] values: mean 0, std 1 for every channel.
    public static func identity(channels: Int) -> Normalization {
        Normalization(mean: [Float](repeating: 0, count: channels), std: [Float](repeating: 1, count: channels))
    }

    /// The mean and (population) standard deviation of each channel over the images at
    /// `indices`, pixels scaled to [0, 1]. Computed from per-channel histograms of the bytes,
    /// so the result is exact and does not depend on the thread count. A channel with no
    /// spread (or no images) gets std 1, so normalizing never divides by zero.
    public static func fit(_ set: ImageSet, indices: [Int]) -> Normalization {
        let channels = set.channels, plane = set.height * set.width, imageBytes = set.imageBytes
        precondition(indices.allSatisfy { $0 >= 0 && $0 < set.count }, "Normalization.fit: an index is outside 0..<\(set.count)")
        // One histogram per chunk of images, summed afterwards: counts are integers, so the
        // order of summation does not matter.
        let chunks = max(1, min(Parallel.workers, indices.count / 64))
        var histograms = [UInt64](repeating: 0, count: chunks * channels * 256)
        set.pixels.withUnsafeBufferPointer { pixels in
            indices.withUnsafeBufferPointer { order in
                histograms.withUnsafeMutableBufferPointer { counts in
                    guard let pixelBase = pixels.baseAddress, let countBase = counts.baseAddress else { return }
                    DispatchQueue.concurrentPerform(iterations: chunks) { k in
                        let histogram = countBase + k * channels * 256
                        for position in (order.count * k / chunks)..<(order.count * (k + 1) / chunks) {
                            let image = pixelBase + order[position] * imageBytes
                            for c in 0..<channels {
                                let channelHistogram = histogram + c * 256
                                let source = image + c * plane
                                for p in 0..<plane { channelHistogram[Int(source[p])] &+= 1 }
                            }
                        }
                    }
                }
            }
        }
        var mean = [Float](repeating: 0, count: channels)
        var std = [Float](repeating: 1, count: channels)
        for c in 0..<channels {
            var n = 0.0, sum = 0.0, sumSquares = 0.0
            for k in 0..<chunks {
                for v in 0..<256 {
                    let count = Double(histograms[(k * channels + c) * 256 + v])
                    let x = Double(v) / 255
                    n += count
                    sum += count * x
                    sumSquares += count * x * x
                }
            }
            guard n > 0 else { continue }
            let m = sum / n
            let variance = max(0, sumSquares / n - m * m)
            mean[c] = Float(m)
            if variance > 0 { std[c] = Float(variance.squareRoot()) }
        }
        return Normalization(mean: mean, std: std)
    }

    /// `[channels * 256]`: the normalized value of every byte in every channel, so converting
    /// a pixel is one load. Computed in Double and rounded once.
    func lookupTable(channels: Int) -> [Float] {
        precondition(mean.count == channels, "Normalization: \(mean.count) channels, the images have \(channels)")
        var table = [Float](repeating: 0, count: channels * 256)
        for c in 0..<channels {
            for v in 0..<256 {
                table[c * 256 + v] = Float((Double(v) / 255 - Double(mean[c])) / Double(std[c]))
            }
        }
        return table
    }
}

/// Why a per-channel normalization (e.g. one read from a checkpoint) cannot be used, listing
/// every wrong value.
public struct NormalizationError: Error, CustomStringConvertible, Equatable {
    /// One entry per problem, e.g. "std[1] = 0 is not positive".
    public let problems: [String]

    public init(problems: [String]) { self.problems = problems }

    public var description: String { "invalid input normalization: " + problems.joined(separator: "; ") }
}

extension Normalization {
    /// Checks a mean and std before they normalize images of `channels` channels: one value
    /// per channel each, every mean finite, every std finite and positive (dividing by a zero,
    /// negative or NaN std would feed NaN or flipped inputs to the net).
    /// - Throws: `NormalizationError` naming every wrong value.
    public static func validate(mean: [Float], std: [Float], channels: Int) throws {
        var problems: [String] = []
        if mean.count != channels || std.count != channels {
            problems.append("\(mean.count) means and \(std.count) stds for a net of \(channels) input "
                            + (channels == 1 ? "channel" : "channels"))
        }
        for (c, m) in mean.enumerated() where !m.isFinite { problems.append("mean[\(c)] = \(m) is not finite") }
        for (c, s) in std.enumerated() {
            if !s.isFinite { problems.append("std[\(c)] = \(s) is not finite") } else if s <= 0 {
                problems.append("std[\(c)] = \(s) is not positive")
            }
        }
        if !problems.isEmpty { throw NormalizationError(problems: problems) }
    }

    /// `Normalization(mean:std:)` for values from outside the program (a checkpoint): throws
    /// instead of stopping on a precondition.
    /// - Throws: `NormalizationError`, see `validate(mean:std:channels:)`.
    public init(validatingMean mean: [Float], std: [Float], channels: Int) throws {
        try Normalization.validate(mean: mean, std: std, channels: channels)
        self.init(mean: mean, std: std)
    }
}
