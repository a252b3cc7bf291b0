import Autodiff
@testable import Datasets
import XCTest

final class SplitTests: XCTestCase {
    func testSplitIsDisjointCoveringSortedAndSized() {
        let split = trainValidationSplit(count: 1000, validationFraction: 0.2, seed: 42)
        XCTAssertEqual(split.validation.count, 200)
        XCTAssertEqual(split.train.count, 800)
        XCTAssertEqual(split.train, split.train.sorted())
        XCTAssertEqual(split.validation, split.validation.sorted())
        XCTAssertTrue(Set(split.train).isDisjoint(with: split.validation))
        XCTAssertEqual((split.train + split.validation).sorted(), Array(0..<1000))
        // A shuffle, not a cut: validation indices spread over the whole range.
        XCTAssertNotEqual(split.validation, Array(800..<1000))
        XCTAssertLessThan(split.validation.first ?? 1000, 100)
        XCTAssertGreaterThan(split.validation.last ?? 0, 900)
    }

    func testSplitDependsOnlyOnTheSeed() {
        let a = trainValidationSplit(count: 500, validationFraction: 0.2, seed: 7)
        let b = trainValidationSplit(count: 500, validationFraction: 0.2, seed: 7)
        let c = trainValidationSplit(count: 500, validationFraction: 0.2, seed: 8)
        XCTAssertEqual(a.train, b.train)
        XCTAssertEqual(a.validation, b.validation)
        XCTAssertNotEqual(a.validation, c.validation)
    }

    func testSplitSizesRoundAndZeroFractionMeansNoValidation() {
        XCTAssertEqual(trainValidationSplit(count: 7, validationFraction: 0.5, seed: 1).validation.count, 4)  // 3.5 rounds up
        XCTAssertEqual(trainValidationSplit(count: 10, validationFraction: 0.14, seed: 1).validation.count, 1)
        let none = trainValidationSplit(count: 10, validationFraction: 0, seed: 1)
        XCTAssertEqual(none.validation, [])
        XCTAssertEqual(none.train, Array(0..<10))
        XCTAssertEqual(trainValidationSplit(count: 0, validationFraction: 0.2, seed: 1).train, [])
    }

    func testSplitIsTheTailOfTheSeededFisherYatesPermutation() {
        // The documented algorithm, written out: swap i with a uniform j in 0...i, from the end.
        var rng = RandomGenerator(seed: 99)
        var permutation = Array(0..<50)
        for i in stride(from: 49, to: 0, by: -1) { permutation.swapAt(i, rng.uniformInt(below: i + 1)) }
        let split = trainValidationSplit(count: 50, validationFraction: 0.2, seed: 99)
        XCTAssertEqual(split.validation, permutation[40...].sorted())
    }

    func testUniformIntIsUniformAndInRange() {
        var rng = RandomGenerator(seed: 3)
        var counts = [Int](repeating: 0, count: 6)
        for _ in 0..<60000 { counts[rng.uniformInt(below: 6)] += 1 }
        // Expected 10000 each; 5 standard deviations is about 450.
        XCTAssertTrue(counts.allSatisfy { abs($0 - 10000) < 450 }, "\(counts)")
    }

    func testMixSeedSeparatesNeighbours() {
        XCTAssertNotEqual(mixSeed(1, 0), mixSeed(1, 1))
        XCTAssertNotEqual(mixSeed(1, 0), mixSeed(0, 1))
        XCTAssertEqual(mixSeed(5, 6), mixSeed(5, 6))
    }
}

final class NormalizationTests: XCTestCase {
    func testKnownMeanAndStd() {
        // Channel 0 of the two fitted images: 0, 255, 0, 255 and 255, 255, 255, 255, i.e.
        // 0, 1, 0, 1, 1, 1, 1, 1 scaled: mean 6/8 = 0.75, variance 0.75 - 0.75^2 = 0.1875.
        // Channel 1: 51 everywhere (0.2): no spread, so std 1.
        // Image 1 is not among the fitted indices; its 7s must not count.
        let pixels: [UInt8] = [0, 255, 0, 255, 51, 51, 51, 51,
                               7, 7, 7, 7, 7, 7, 7, 7,
                               255, 255, 255, 255, 51, 51, 51, 51]
        let set = ImageSet(pixels: pixels, labels: [0, 1, 0], channels: 2, height: 2, width: 2, classes: 2)
        let fitted = Normalization.fit(set, indices: [0, 2])
        XCTAssertEqual(fitted.mean[0], 0.75, accuracy: 1e-6)
        XCTAssertEqual(fitted.std[0], Float(0.1875.squareRoot()), accuracy: 1e-6)
        XCTAssertEqual(fitted.mean[1], 0.2, accuracy: 1e-6)
        XCTAssertEqual(fitted.std[1], 1)
    }

    func testFitMatchesADirectComputationOnALargerSet() {
        // Enough images for several parallel chunks.
        let count = 600, channels = 3, plane = 16
        let pixels = (0..<count * channels * plane).map { UInt8(truncatingIfNeeded: $0 &* 2654435761 >> 7) }
        let set = ImageSet(pixels: pixels, labels: [Int32](repeating: 0, count: count), channels: channels,
                           height: 4, width: 4, classes: 1)
        let indices = Array(stride(from: 0, to: count, by: 2))
        let fitted = Normalization.fit(set, indices: indices)
        for c in 0..<channels {
            let values = indices.flatMap { i in (0..<plane).map { Double(pixels[(i * channels + c) * plane + $0]) / 255 } }
            let mean = values.reduce(0, +) / Double(values.count)
            let std = (values.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(values.count)).squareRoot()
            XCTAssertEqual(Double(fitted.mean[c]), mean, accuracy: 1e-6)
            XCTAssertEqual(Double(fitted.std[c]), std, accuracy: 1e-6)
        }
    }

    func testLookupTableIsToTensorThenNormalize() {
        let normalization = Normalization(mean: [0.5, 0.25], std: [0.25, 2])
        let table = normalization.lookupTable(channels: 2)
        XCTAssertEqual(table[0], -2)
        XCTAssertEqual(table[255], 2)
        XCTAssertEqual(table[256 + 51], Float((0.2 - 0.25) / 2.0), accuracy: 1e-7)
    }
}
