import Autodiff
@testable import Datasets
import Dispatch
import XCTest

final class BatchLoaderTests: XCTestCase {
    /// `count` 1-channel 4x4 images; image `i` is filled with byte `i` and labelled `i % 10`,
    /// so a batch shows which images it holds.
    private func indexedSet(count: Int) -> ImageSet {
        ImageSet(pixels: (0..<count).flatMap { [UInt8](repeating: UInt8($0), count: 16) },
                 labels: (0..<count).map { Int32($0 % 10) }, channels: 1, height: 4, width: 4, classes: 10)
    }

    /// The image index each sample of each batch holds, read back from its first value.
    private func indicesSeen(_ loader: BatchLoader) -> [Int] {
        loader.flatMap { batch in
            (0..<batch.labels.count).map { Int((batch.images.data[$0 * 16] * 255).rounded()) }
        }
    }

    private func snapshot(_ loader: BatchLoader) -> [([Int], [Float], [Int32])] {
        loader.map { ($0.images.shape, $0.images.values, $0.labels) }
    }

    func testShapesCountsAndValuesWithoutAugmentation() {
        let set = indexedSet(count: 23)
        let normalization = Normalization(mean: [0.25], std: [0.5])
        let loader = BatchLoader(set: set, indices: Array(0..<23), batchSize: 5, normalization: normalization,
                                 shuffle: false, seed: 0, epoch: 0)
        XCTAssertEqual(loader.batchCount, 5)
        let batches = Array(loader)
        XCTAssertEqual(batches.map(\.images.shape), [[5, 1, 4, 4], [5, 1, 4, 4], [5, 1, 4, 4], [5, 1, 4, 4], [3, 1, 4, 4]])
        for (b, batch) in batches.enumerated() {
            let indices = (b * 5)..<min(b * 5 + 5, 23)
            XCTAssertEqual(batch.labels, indices.map { Int32($0 % 10) })
            let expected = indices.flatMap { i in [Float](repeating: Float((Double(i) / 255 - 0.25) / 0.5), count: 16) }
            XCTAssertEqual(batch.images.values, expected, "batch \(b)")
        }
    }

    func testBatchesCoverEveryIndexOnceWhenShuffled() {
        let set = indexedSet(count: 100)
        let indices = Array(stride(from: 3, to: 100, by: 3))  // a subset, as a training split is
        let loader = BatchLoader(set: set, indices: indices, batchSize: 8, normalization: .identity(channels: 1),
                                 shuffle: true, seed: 21, epoch: 4)
        let seen = indicesSeen(loader)
        XCTAssertEqual(seen.count, indices.count)
        XCTAssertEqual(seen.sorted(), indices)
        XCTAssertNotEqual(seen, indices, "shuffle should change the order")
        XCTAssertEqual(seen, loader.order)
    }

    func testShuffleIsFisherYatesSeededWithTheMixedEpochSeed() {
        // The documented order: indices permuted with RandomGenerator(seed: mixSeed(seed, epoch)),
        // swapping position i with a uniform j in 0...i, from the last position down to 1.
        let indices = Array(10..<40)
        for epoch in 0..<8 {
            var rng = RandomGenerator(seed: mixSeed(123, UInt64(epoch)))
            var expected = indices
            for i in stride(from: indices.count - 1, to: 0, by: -1) { expected.swapAt(i, rng.uniformInt(below: i + 1)) }
            let loader = BatchLoader(set: indexedSet(count: 40), indices: indices, batchSize: 7,
                                     normalization: .identity(channels: 1), shuffle: true, seed: 123, epoch: epoch)
            XCTAssertEqual(loader.order, expected, "epoch \(epoch)")
            XCTAssertEqual(indicesSeen(loader), expected, "epoch \(epoch)")
        }
    }

    func testSameSeedAndEpochGiveBitIdenticalBatches() {
        let set = indexedSet(count: 64)
        let make = { (epoch: Int) in
            BatchLoader(set: set, indices: Array(0..<64), batchSize: 10, augmentation: Augmentation(padding: 1, flip: true, randomErasing: true),
                        normalization: Normalization(mean: [0.3], std: [0.2]), shuffle: true, seed: 77, epoch: epoch)
        }
        let first = snapshot(make(2)), second = snapshot(make(2)), other = snapshot(make(3))
        XCTAssertEqual(first.count, 7)
        for (a, b) in zip(first, second) {
            XCTAssertEqual(a.0, b.0)
            XCTAssertEqual(a.1.map(\.bitPattern), b.1.map(\.bitPattern))
            XCTAssertEqual(a.2, b.2)
        }
        XCTAssertNotEqual(first.map(\.2), other.map(\.2), "another epoch should shuffle differently")
        XCTAssertNotEqual(make(2).order, make(3).order)
    }

    func testAugmentationDoesNotDependOnBatchSizeOrThreads() {
        let set = indexedSet(count: 30)
        let augmentation = Augmentation(padding: 2, flip: true, randomErasing: true, erasingProbability: 1)
        let values = { (batchSize: Int) -> [Float] in
            let loader = BatchLoader(set: set, indices: Array(0..<30), batchSize: batchSize, augmentation: augmentation,
                                     normalization: .identity(channels: 1), shuffle: true, seed: 9, epoch: 1)
            return loader.flatMap { $0.images.values }
        }
        let reference = values(1)
        XCTAssertEqual(values(7), reference)
        XCTAssertEqual(values(30), reference)
        let workers = Parallel.workers
        Parallel.workers = 1
        defer { Parallel.workers = workers }
        XCTAssertEqual(values(4), reference)
    }

    func testIterationMatchesDirectBatches() {
        let set = indexedSet(count: 40)
        let loader = BatchLoader(set: set, indices: Array(0..<40), batchSize: 6, augmentation: .standard(imageSize: 4),
                                 normalization: .identity(channels: 1), shuffle: true, seed: 1, epoch: 0)
        for (number, batch) in loader.enumerated() {
            let direct = loader.batch(number)
            XCTAssertEqual(batch.images.values, direct.images.values, "batch \(number)")
            XCTAssertEqual(batch.labels, direct.labels)
        }
    }

    func testEmptyIndexListGivesNoBatches() {
        let loader = BatchLoader(set: indexedSet(count: 3), indices: [], batchSize: 4, normalization: .identity(channels: 1),
                                 shuffle: true, seed: 0, epoch: 0)
        XCTAssertEqual(loader.batchCount, 0)
        XCTAssertEqual(Array(loader).count, 0)
    }

    func testStoppingEarlyDoesNotHang() {
        let set = indexedSet(count: 200)
        let finished = expectation(description: "early stops return")
        DispatchQueue.global().async {
            for _ in 0..<20 {
                let loader = BatchLoader(set: set, indices: Array(0..<200), batchSize: 4, augmentation: .standard(imageSize: 4),
                                         normalization: .identity(channels: 1), shuffle: true, seed: 3, epoch: 0)
                var taken = 0
                for _ in loader {
                    taken += 1
                    if taken == 2 { break }
                }
                // An iterator dropped before its first batch was taken.
                _ = loader.makeIterator()
            }
            finished.fulfill()
        }
        wait(for: [finished], timeout: 10)
    }
}
