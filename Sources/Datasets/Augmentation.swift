import Autodiff
import Foundation

/// Training-time augmentation, applied per image in this order (as the torchvision pipeline
/// `RandomCrop(size, padding) -> RandomHorizontalFlip() -> ToTensor() -> Normalize() ->
/// RandomErasing()`):
///
/// 1. random crop: the byte image is padded with `padding` zeros on every side and a random
///    window of the original size is cut out. The padding is 0 in the [0, 1] scale, i.e. it
///    happens before normalization, as in torchvision.
/// 2. horizontal flip with probability 0.5.
/// 3. normalization (`Normalization`).
/// 4. random erasing (Zhong et al., "Random Erasing Data Augmentation", 2017) with torchvision's
///    `RandomErasing` defaults: with probability `erasingProbability`, up to 10 attempts to
///    draw a rectangle of area fraction U(0.02, 0.33) and log-uniform aspect ratio in
///    (0.3, 3.3) that fits; the first that fits is set to 0 in every channel of the
///    normalized image.
public struct Augmentation: Equatable, Sendable {
    /// Zero padding on each side before the random crop; 0 disables cropping.
    public var padding: Int
    /// Whether to flip horizontally with probability 0.5.
    public var flip: Bool
    /// Whether to apply random erasing.
    public var randomErasing: Bool
    /// The probability that random erasing is tried on an image; torchvision's default is 0.5.
    public var erasingProbability: Double

    /// torchvision `RandomErasing` defaults.
    static let erasingScale = (low: 0.02, high: 0.33)
    static let erasingRatio = (low: 0.3, high: 3.3)
    static let erasingAttempts = 10

    public init(padding: Int, flip: Bool, randomErasing: Bool, erasingProbability: Double = 0.5) {
        precondition(padding >= 0, "Augmentation: negative padding \(padding)")
        precondition(erasingProbability >= 0 && erasingProbability <= 1,
                     "Augmentation: erasingProbability \(erasingProbability) is outside [0, 1]")
        self.padding = padding
        self.flip = flip
        self.randomErasing = randomErasing
        self.erasingProbability = erasingProbability
    }

    /// Crop with padding 4 (8 for 64x64 images, the same eighth of the side), flip and erasing.
    public static func standard(imageSize: Int) -> Augmentation {
        Augmentation(padding: imageSize >= 64 ? 8 : 4, flip: true, randomErasing: true)
    }
}

/// The random choices for one image, drawn before its pixels are touched.
struct AugmentationDraws {
    /// Top-left corner of the crop window in the padded image, each in `0...2 * padding`.
    var cropTop = 0, cropLeft = 0
    var flipped = false
    /// The erased rectangle, if any.
    var erased: (top: Int, left: Int, height: Int, width: Int)?
}

extension Augmentation {
    /// Draws the choices for an image of `height` x `width`, always in the same order: crop
    /// top, crop left, flip, whether to erase, then the erasing attempts.
    func draw(height: Int, width: Int, using rng: inout RandomGenerator) -> AugmentationDraws {
        var draws = AugmentationDraws()
        if padding > 0 {
            draws.cropTop = rng.uniformInt(below: 2 * padding + 1)
            draws.cropLeft = rng.uniformInt(below: 2 * padding + 1)
        }
        if flip { draws.flipped = rng.uniform() < 0.5 }
        if randomErasing, Double(rng.uniform()) < erasingProbability {
            let area = Double(height * width)
            let logRatio = (low: log(Self.erasingRatio.low), high: log(Self.erasingRatio.high))
            for _ in 0..<Self.erasingAttempts {
                let target = area * uniform(Self.erasingScale.low, Self.erasingScale.high, &rng)
                let aspect = exp(uniform(logRatio.low, logRatio.high, &rng))
                let h = Int((target * aspect).squareRoot().rounded())
                let w = Int((target / aspect).squareRoot().rounded())
                guard h < height, w < width else { continue }
                let top = rng.uniformInt(below: height - h + 1)
                let left = rng.uniformInt(below: width - w + 1)
                draws.erased = (top, left, h, w)
                break
            }
        }
        return draws
    }

    private func uniform(_ low: Double, _ high: Double, _ rng: inout RandomGenerator) -> Double {
        low + (high - low) * Double(rng.uniform())
    }
}

/// Writes one image, cropped and flipped as `draws` say, normalized through `table` and erased,
/// into `output`.
///
/// - Parameters:
///   - source: `[channels, height, width]` bytes.
///   - table: `[channels, 256]` normalized values of each byte (`Normalization.lookupTable`).
///   - output: `[channels, height, width]` floats, every one written.
func renderImage(source: UnsafePointer<UInt8>, channels: Int, height: Int, width: Int, padding: Int,
                 draws: AugmentationDraws, table: UnsafePointer<Float>, output: UnsafeMutablePointer<Float>) {
    let plane = height * width
    // Output (y, x) reads source row y + shiftY, column x + shiftX (or mirrored), where the
    // shift is the crop corner minus the padding; outside the source it reads padding, byte 0.
    let shiftY = draws.cropTop - padding, shiftX = draws.cropLeft - padding
    // Output columns whose source column is inside the image.
    let first: Int, end: Int
    if draws.flipped {
        // Source column width - 1 - x + shiftX.
        first = max(0, shiftX)
        end = min(width, width + shiftX)
    } else {
        first = max(0, -shiftX)
        end = min(width, width - shiftX)
    }
    for c in 0..<channels {
        let lookup = table + c * 256
        let zero = lookup[0]
        let channelSource = source + c * plane
        for y in 0..<height {
            let row = output + c * plane + y * width
            let sourceY = y + shiftY
            guard sourceY >= 0, sourceY < height, first < end else {
                row.update(repeating: zero, count: width)
                continue
            }
            let sourceRow = channelSource + sourceY * width
            for x in 0..<first { row[x] = zero }
            if draws.flipped {
                let mirror = width - 1 + shiftX
                for x in first..<end { row[x] = lookup[Int(sourceRow[mirror - x])] }
            } else {
                for x in first..<end { row[x] = lookup[Int(sourceRow[x + shiftX])] }
            }
            for x in end..<width { row[x] = zero }
        }
    }
    if let erased = draws.erased {
        for c in 0..<channels {
            for y in erased.top..<(erased.top + erased.height) {
                (output + c * plane + y * width + erased.left).update(repeating: 0, count: erased.width)
            }
        }
    }
}
