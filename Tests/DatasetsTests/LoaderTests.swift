@testable import Datasets
import Foundation
import XCTest

/// Each loader on small files written in its real format.
final class LoaderTests: XCTestCase {
    func testCIFAR10() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeCIFAR10(in: directory)
        var reports: [(Int, Int)] = []
        let dataset = try loadDataset(.cifar10, directory: directory) { reports.append(($0, $1)) }
        XCTAssertEqual(dataset.kind, .cifar10)
        let trainCount = Fixtures.cifar10TrainRecords.reduce(0, +)
        for (set, count, first) in [(dataset.train, trainCount, 0), (dataset.test, Fixtures.cifar10TestRecords, 100)] {
            XCTAssertEqual(set.count, count)
            XCTAssertEqual([set.channels, set.height, set.width, set.classes], [3, 32, 32, 10])
            XCTAssertEqual(set.pixels.count, count * 3072)
            XCTAssertEqual(set.labels, (0..<count).map { Int32(Fixtures.cifar10Label(first + $0)) })
            for k in 0..<count {
                XCTAssertEqual(Array(set.image(k)), Fixtures.cifarPixels(first + k), "record \(k)")
            }
        }
        // One report per file, ending at the total.
        XCTAssertEqual(reports.map(\.0), Array(1...6))
        XCTAssertTrue(reports.allSatisfy { $0.1 == 6 })
    }

    func testCIFAR100UsesTheFineLabel() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeCIFAR100(in: directory)
        let dataset = try loadDataset(.cifar100, directory: directory)
        XCTAssertEqual(dataset.train.labels, Fixtures.cifar100TrainLabels.map { Int32($0.1) })
        XCTAssertEqual(dataset.test.labels, Fixtures.cifar100TestLabels.map { Int32($0.1) })
        XCTAssertEqual(dataset.train.classes, 100)
        XCTAssertEqual([dataset.train.channels, dataset.train.height, dataset.train.width], [3, 32, 32])
        for k in 0..<dataset.train.count { XCTAssertEqual(Array(dataset.train.image(k)), Fixtures.cifarPixels(k)) }
        for k in 0..<dataset.test.count { XCTAssertEqual(Array(dataset.test.image(k)), Fixtures.cifarPixels(200 + k)) }
    }

    /// The four files un-gzipped (named without ".gz", as many copies hold them), or some of
    /// them, load as the published ones do; a file missing in both forms is named as published,
    /// and the message says the other form is read too.
    func testFashionMNISTReadsUngzippedFiles() throws {
        let gzipped = try makeTemporaryDirectory(self)
        try Fixtures.writeFashionMNIST(in: gzipped)
        let reference = try loadDataset(.fashionMNIST, directory: gzipped)
        let plain = try makeTemporaryDirectory(self)
        // The training files un-gzipped, the test files as published: both forms in one folder.
        try Data(Fixtures.idxImages(count: Fixtures.fashionTrainLabels.count, first: 0))
            .write(to: URL(fileURLWithPath: joinPath(plain, "train-images-idx3-ubyte")))
        try Data(Fixtures.idxLabels(Fixtures.fashionTrainLabels)).write(to: URL(fileURLWithPath: joinPath(plain, "train-labels-idx1-ubyte")))
        for name in ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"] {
            try FileManager.default.copyItem(atPath: joinPath(gzipped, name), toPath: joinPath(plain, name))
        }
        let loaded = try loadDataset(.fashionMNIST, directory: plain)
        XCTAssertEqual(loaded.train.labels, reference.train.labels)
        XCTAssertEqual(loaded.test.labels, reference.test.labels)
        XCTAssertEqual(Array(loaded.train.image(1)), Array(reference.train.image(1)))
        try FileManager.default.removeItem(atPath: joinPath(plain, "train-labels-idx1-ubyte"))
        XCTAssertThrowsError(try loadDataset(.fashionMNIST, directory: plain)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("missing") && text.contains("train-labels-idx1-ubyte.gz") && text.contains("without .gz"), text)
            XCTAssertTrue(text.contains("': train-labels-idx1-ubyte.gz. Expected"), "the labels alone are missing: \(text)")
        }
    }

    func testFashionMNISTIsPaddedTo32() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeFashionMNIST(in: directory)
        let dataset = try loadDataset(.fashionMNIST, directory: directory)
        XCTAssertEqual(dataset.train.labels, Fixtures.fashionTrainLabels.map(Int32.init))
        XCTAssertEqual(dataset.test.labels, Fixtures.fashionTestLabels.map(Int32.init))
        for (set, first) in [(dataset.train, 0), (dataset.test, 100)] {
            XCTAssertEqual([set.channels, set.height, set.width, set.classes], [1, 32, 32, 10])
            for k in 0..<set.count {
                let image = Array(set.image(k)), source = Fixtures.fashionPixels(first + k)
                for y in 0..<32 {
                    for x in 0..<32 {
                        let inside = (2..<30).contains(y) && (2..<30).contains(x)
                        // The border is 2 zero pixels wide; the interior is the 28x28 image.
                        let expected = inside ? source[(y - 2) * 28 + (x - 2)] : 0
                        XCTAssertEqual(image[y * 32 + x], expected, "image \(k) at (\(y), \(x))")
                    }
                }
            }
        }
    }

    func testTinyImageNetDecodesEveryFormat() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeTinyImageNet(in: directory)
        let lock = NSLock()
        var reports: [(Int, Int)] = []
        let dataset = try loadDataset(.tinyimagenet, directory: directory) { done, total in
            lock.lock()
            reports.append((done, total))
            lock.unlock()
        }
        for (set, images) in [(dataset.train, Fixtures.tinyTrain), (dataset.test, Fixtures.tinyValidation)] {
            XCTAssertEqual([set.count, set.channels, set.height, set.width, set.classes], [images.count, 3, 64, 64, 3])
            XCTAssertEqual(set.labels, images.map(\.label))
            for (k, image) in images.enumerated() {
                let decoded = Array(set.image(k)), expected = planar(image.rgb)
                let tolerance = image.exact ? 0 : 3
                XCTAssertLessThanOrEqual(maxDifference(decoded, expected), tolerance, image.path)
            }
        }
        XCTAssertEqual(reports.last?.0, 9)
        XCTAssertTrue(reports.allSatisfy { $0.1 == 9 })
        XCTAssertEqual(reports.map(\.0), reports.map(\.0).sorted(), "progress must only increase")
    }

    func testTinyImageNetLoadsTheSameTwice() throws {
        // Parallel decoding writes each image to its own slot, so the result is deterministic.
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeTinyImageNet(in: directory)
        let first = try loadDataset(.tinyimagenet, directory: directory)
        let second = try loadDataset(.tinyimagenet, directory: directory)
        XCTAssertEqual(first.train.pixels, second.train.pixels)
        XCTAssertEqual(first.test.pixels, second.test.pixels)
    }

    /// The checksum a resumed run compares: the same files give the same one; one label or one
    /// pixel changed, another.
    func testChecksumFollowsPixelsAndLabels() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeTinyImageNet(in: directory)
        let set = try loadDataset(.tinyimagenet, directory: directory).train
        XCTAssertEqual(set.checksum, try loadDataset(.tinyimagenet, directory: directory).train.checksum)
        var labels = set.labels, pixels = set.pixels
        labels[1] = (labels[1] + 1) % Int32(set.classes)
        pixels[5] &+= 1
        let relabeled = ImageSet(pixels: set.pixels, labels: labels, channels: set.channels, height: set.height, width: set.width, classes: set.classes)
        let repainted = ImageSet(pixels: pixels, labels: set.labels, channels: set.channels, height: set.height, width: set.width, classes: set.classes)
        XCTAssertNotEqual(relabeled.checksum, set.checksum)
        XCTAssertNotEqual(repainted.checksum, set.checksum)
    }

    func testProgressIsThinnedButReachesTheTotal() {
        // 1001 items report every 5th (1001 / 200) and always the last one.
        var reports: [Int] = []
        let counter = ProgressCounter(total: 1001) { done, total in
            XCTAssertEqual(total, 1001)
            reports.append(done)
        }
        for _ in 0..<1001 { counter.advance() }
        XCTAssertEqual(reports, Array(stride(from: 5, through: 1000, by: 5)) + [1001])
    }

    func testDatasetFacts() {
        XCTAssertEqual(DatasetKind.allCases.map(\.classes), [10, 100, 200, 10])
        XCTAssertEqual(DatasetKind.allCases.map(\.imageSize), [32, 32, 64, 32])
        XCTAssertEqual(DatasetKind.allCases.map(\.channels), [3, 3, 3, 1])
        XCTAssertEqual(DatasetKind(rawValue: "fashion-mnist"), .fashionMNIST)
        XCTAssertEqual(DatasetKind.fashionMNIST.defaultDirectory, "/usr/share/datasets/fashion-mnist")
        XCTAssertEqual(DatasetKind.cifar100.defaultDirectory, "data/cifar-100-binary")
    }
}
