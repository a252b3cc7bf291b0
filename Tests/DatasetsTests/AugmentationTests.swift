import Autodiff
@testable import Datasets
import XCTest

/// Augmentation seen through the batches it produces, checked against the draws it reports
/// and against a plain reference of torchvision's pipeline.
final class AugmentationTests: XCTestCase {
    /// One 1-channel image with distinct non-zero bytes: 1 + y * width + x.
    private func numberedImage(side: Int) -> ImageSet {
        ImageSet(pixels: (0..<side * side).map { UInt8(1 + $0) }, labels: [0], channels: 1,
                 height: side, width: side, classes: 1)
    }

    /// Every sample of every batch, as `[C * H * W]` value arrays.
    private func samples(_ loader: BatchLoader) -> [[Float]] {
        let imageFloats = loader.set.imageBytes
        return loader.flatMap { batch in
            (0..<batch.labels.count).map { Array(batch.images.values[($0 * imageFloats)..<(($0 + 1) * imageFloats)]) }
        }
    }

    func testCropShiftsContentAndPadsWithZeros() {
        let side = 8, padding = 2
        let set = numberedImage(side: side)
        let augmentation = Augmentation(padding: padding, flip: false, randomErasing: false)
        let loader = BatchLoader(set: set, indices: Array(repeating: 0, count: 200), batchSize: 32,
                                 augmentation: augmentation, normalization: .identity(channels: 1),
                                 shuffle: false, seed: 5, epoch: 0)
        var shifts = Set<[Int]>()
        for (position, sample) in samples(loader).enumerated() {
            var rng = loader.sampleGenerator(position: position)
            let draws = augmentation.draw(height: side, width: side, using: &rng)
            let dy = draws.cropTop - padding, dx = draws.cropLeft - padding
            XCTAssertTrue((-padding...padding).contains(dy) && (-padding...padding).contains(dx))
            shifts.insert([dy, dx])
            for y in 0..<side {
                for x in 0..<side {
                    let sy = y + dy, sx = x + dx
                    let inside = (0..<side).contains(sy) && (0..<side).contains(sx)
                    let expected: Float = inside ? Float(1 + sy * side + sx) / 255 : 0
                    XCTAssertEqual(sample[y * side + x], expected, "sample \(position) at (\(y), \(x)), shift \((dy, dx))")
                }
            }
        }
        XCTAssertEqual(shifts.count, 25, "every crop position in 0...2*padding should occur")
    }

    func testFlipMirrorsAboutHalfTheImages() {
        let side = 6
        let set = numberedImage(side: side)
        let augmentation = Augmentation(padding: 0, flip: true, randomErasing: false)
        let loader = BatchLoader(set: set, indices: Array(repeating: 0, count: 200), batchSize: 64,
                                 augmentation: augmentation, normalization: .identity(channels: 1),
                                 shuffle: false, seed: 11, epoch: 3)
        let original = (0..<side * side).map { Float(1 + $0) / 255 }
        let mirrored = (0..<side * side).map { Float(1 + ($0 / side) * side + (side - 1 - $0 % side)) / 255 }
        var flips = 0
        for (position, sample) in samples(loader).enumerated() {
            var rng = loader.sampleGenerator(position: position)
            let flipped = augmentation.draw(height: side, width: side, using: &rng).flipped
            XCTAssertEqual(sample, flipped ? mirrored : original, "sample \(position)")
            flips += flipped ? 1 : 0
        }
        XCTAssertTrue((70...130).contains(flips), "\(flips) of 200 flipped")
    }

    func testCropAndFlipTogetherMatchAReferencePipeline() {
        // Reference: pad the byte image with zeros, cut the window, mirror it, then normalize.
        let channels = 3, side = 10, padding = 3
        let pixels = (0..<channels * side * side).map { UInt8(truncatingIfNeeded: $0 * 29 + 1) }
        let set = ImageSet(pixels: pixels, labels: [1], channels: channels, height: side, width: side, classes: 2)
        let normalization = Normalization(mean: [0.1, 0.5, 0.9], std: [0.5, 0.25, 2])
        let augmentation = Augmentation(padding: padding, flip: true, randomErasing: false)
        let loader = BatchLoader(set: set, indices: Array(repeating: 0, count: 60), batchSize: 16,
                                 augmentation: augmentation, normalization: normalization,
                                 shuffle: false, seed: 2, epoch: 1)
        let table = normalization.lookupTable(channels: channels)
        for (position, sample) in samples(loader).enumerated() {
            var rng = loader.sampleGenerator(position: position)
            let draws = augmentation.draw(height: side, width: side, using: &rng)
            var expected: [Float] = []
            for c in 0..<channels {
                let padded = side + 2 * padding
                var image = [UInt8](repeating: 0, count: padded * padded)
                for y in 0..<side { for x in 0..<side { image[(y + padding) * padded + x + padding] = pixels[(c * side + y) * side + x] } }
                for y in 0..<side {
                    for x in 0..<side {
                        let cx = draws.flipped ? side - 1 - x : x
                        expected.append(table[c * 256 + Int(image[(y + draws.cropTop) * padded + cx + draws.cropLeft])])
                    }
                }
            }
            XCTAssertEqual(sample, expected, "sample \(position), draws \(draws)")
        }
    }

    /// The erased rectangle of a sample whose unerased values are all `background`, or nil.
    private func erasedRectangle(_ sample: [Float], channels: Int, side: Int, background: Float,
                                 file: StaticString = #filePath, line: UInt = #line) -> (h: Int, w: Int)? {
        let zeros = (0..<side * side).filter { sample[$0] == 0 }
        guard let first = zeros.first, let last = zeros.last else {
            XCTAssertTrue(sample.allSatisfy { $0 == background }, file: file, line: line)
            return nil
        }
        let top = first / side, bottom = last / side
        let left = zeros.map { $0 % side }.min() ?? 0, right = zeros.map { $0 % side }.max() ?? 0
        for c in 0..<channels {
            for y in 0..<side {
                for x in 0..<side {
                    let inside = (top...bottom).contains(y) && (left...right).contains(x)
                    XCTAssertEqual(sample[(c * side + y) * side + x], inside ? 0 : background,
                                   "not a rectangle in every channel at (\(c), \(y), \(x))", file: file, line: line)
                }
            }
        }
        return (bottom - top + 1, right - left + 1)
    }

    func testErasingZerosARectangleWithinTorchvisionBounds() {
        let channels = 3, side = 32
        let set = ImageSet(pixels: [UInt8](repeating: 255, count: channels * side * side), labels: [0],
                           channels: channels, height: side, width: side, classes: 1)
        // Mean 0.5, std 0.25: the image normalizes to 2, so erased zeros are distinguishable.
        let normalization = Normalization(mean: [0.5, 0.5, 0.5], std: [0.25, 0.25, 0.25])
        let always = Augmentation(padding: 0, flip: false, randomErasing: true, erasingProbability: 1)
        let loader = BatchLoader(set: set, indices: Array(repeating: 0, count: 300), batchSize: 50,
                                 augmentation: always, normalization: normalization, shuffle: false, seed: 4, epoch: 0)
        var erased = 0, areas: [Double] = []
        let imageArea = Double(side * side)
        for sample in samples(loader) {
            guard let (h, w) = erasedRectangle(sample, channels: channels, side: side, background: 2) else { continue }
            erased += 1
            XCTAssertTrue(h < side && w < side)
            // h and w are rounded from sqrt(area * r) and sqrt(area / r), so the drawn area and
            // ratio lie within half a pixel of them; those intervals must meet the bounds.
            let hl = Double(h) - 0.5, hh = Double(h) + 0.5, wl = Double(w) - 0.5, wh = Double(w) + 0.5
            XCTAssertTrue(hl * wl <= 0.33 * imageArea && hh * wh >= 0.02 * imageArea, "\(h)x\(w) outside the area bounds")
            XCTAssertTrue(hl / wh <= 3.3 && hh / wl >= 0.3, "\(h)x\(w) outside the ratio bounds")
            areas.append(Double(h * w) / imageArea)
        }
        // With p = 1 only ten failed attempts in a row (tall or wide draws that do not fit) skip it.
        XCTAssertGreaterThan(erased, 270)
        XCTAssertLessThan(areas.min() ?? 1, 0.05)
        XCTAssertGreaterThan(areas.max() ?? 0, 0.25)

        // Default probability 0.5: about half; probability 0: none.
        for (probability, range) in [(0.5, 110...190), (0.0, 0...0)] {
            let augmentation = Augmentation(padding: 0, flip: false, randomErasing: true, erasingProbability: probability)
            let loader = BatchLoader(set: set, indices: Array(repeating: 0, count: 300), batchSize: 50,
                                     augmentation: augmentation, normalization: normalization, shuffle: false, seed: 4, epoch: 0)
            let count = samples(loader).filter { $0.contains(0) }.count
            XCTAssertTrue(range.contains(count), "p = \(probability): \(count) of 300 erased")
        }
    }

    func testPaddingIsZeroBeforeNormalizationAndErasingZeroAfter() {
        let side = 16
        let set = ImageSet(pixels: [UInt8](repeating: 255, count: side * side), labels: [0], channels: 1,
                           height: side, width: side, classes: 1)
        let normalization = Normalization(mean: [0.5], std: [0.25])  // byte 0 -> -2, byte 255 -> 2
        let augmentation = Augmentation(padding: 4, flip: true, randomErasing: true, erasingProbability: 1)
        let loader = BatchLoader(set: set, indices: Array(repeating: 0, count: 100), batchSize: 100,
                                 augmentation: augmentation, normalization: normalization, shuffle: false, seed: 8, epoch: 0)
        let all = samples(loader).joined()
        XCTAssertEqual(Set(all), [-2, 0, 2])
    }

    func testStandardAugmentation() {
        XCTAssertEqual(Augmentation.standard(imageSize: 32), Augmentation(padding: 4, flip: true, randomErasing: true))
        XCTAssertEqual(Augmentation.standard(imageSize: 64).padding, 8)
        XCTAssertEqual(Augmentation.standard(imageSize: 32).erasingProbability, 0.5)
    }
}
