import Datasets
import Foundation
import Training
import XCTest

/// `DatasetSources` refuses splits and subsets that leave a part unusable, naming the files,
/// and checks stored normalizations before loading anything.
final class DatasetSourcesTests: XCTestCase {
    private func directory() throws -> String {
        let path = NSTemporaryDirectory() + "DatasetSourcesTests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    /// CIFAR-10 files with `train` records spread over the five batches and `test` test records.
    private func cifar10(train: Int, test: Int = 2) throws -> String {
        let directory = try directory()
        func records(_ count: Int, salt: Int) -> Data {
            var bytes: [UInt8] = []
            for r in 0..<count {
                bytes.append(UInt8(r % 10))
                for p in 0..<3072 { bytes.append(UInt8(truncatingIfNeeded: p * 7 + r * 13 + salt)) }
            }
            return Data(bytes)
        }
        for file in 1...5 {
            let count = train / 5 + (file <= train % 5 ? 1 : 0)
            try records(count, salt: file).write(to: URL(fileURLWithPath: "\(directory)/data_batch_\(file).bin"))
        }
        try records(test, salt: 99).write(to: URL(fileURLWithPath: "\(directory)/test_batch.bin"))
        return directory
    }

    /// Fashion-MNIST with `train` training images, written uncompressed (zlib reads those too).
    private func fashion(train: Int) throws -> String {
        let directory = try directory()
        func header(_ words: [UInt32]) -> [UInt8] { words.flatMap { w in (0..<4).map { UInt8(w >> (24 - 8 * $0) & 0xFF) } } }
        func images(_ n: Int) -> Data { Data(header([0x803, UInt32(n), 28, 28]) + (0..<n * 784).map { UInt8($0 % 251) }) }
        func labels(_ n: Int) -> Data { Data(header([0x801, UInt32(n)]) + (0..<n).map { UInt8($0 % 10) }) }
        for (name, data) in [("train-images-idx3-ubyte.gz", images(train)), ("train-labels-idx1-ubyte.gz", labels(train)),
                             ("t10k-images-idx3-ubyte.gz", images(2)), ("t10k-labels-idx1-ubyte.gz", labels(2))] {
            try data.write(to: URL(fileURLWithPath: "\(directory)/\(name)"))
        }
        return directory
    }

    private func load(_ kind: DatasetKind, _ directory: String, split: Double, subset: Int? = nil,
                      batchSize: Int = 4) throws -> DatasetSources {
        try DatasetSources.load(kind, directory: directory, validationSplit: split, seed: 3, subset: subset,
                                batchSize: batchSize, reporter: nil)
    }

    private func assertRefused<T>(_ body: @autoclosure () throws -> T, _ fragments: [String],
                                  file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try body(), file: file, line: line) { error in
            let message = "\(error)"
            for fragment in fragments where !message.contains(fragment) {
                XCTFail("message lacks '\(fragment)': \(message)", file: file, line: line)
            }
        }
    }

    func testSplitLeavingFewerThanTwoTrainingImagesIsRefused() throws {
        let directory = try fashion(train: 3)
        // 0.9 of 3 rounds to 3 validation images, 0.5 to 2: 0 and 1 left for training.
        assertRefused(try load(.fashionMNIST, directory, split: 0.9),
                      ["--val-split 0.9 of the 3 training images in \(directory) (train-images-idx3-ubyte.gz, "
                       + "train-labels-idx1-ubyte.gz) leaves 0 for training; at least 2 are needed"])
        assertRefused(try load(.fashionMNIST, directory, split: 0.5), ["leaves 1 for training", "batch norm needs 2"])
    }

    func testSplitLeavingNoValidationImageIsRefused() throws {
        let directory = try fashion(train: 3)
        assertRefused(try load(.fashionMNIST, directory, split: 0.1),
                      ["--val-split 0.1 of the 3 training images in \(directory)", "leaves 0 validation images"])
        XCTAssertNil(try load(.fashionMNIST, directory, split: 0).validation)
    }

    func testOneTrainingImageIsRefused() throws {
        let directory = try fashion(train: 1)
        assertRefused(try load(.fashionMNIST, directory, split: 0),
                      ["\(directory) (train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz) holds 1 training image; "
                       + "at least 2 are needed"])
    }

    func testSubsetLargerThanTheTrainingPartIsRefused() throws {
        let directory = try cifar10(train: 12)
        // 0.25 of 12: 3 validation, 9 training images.
        assertRefused(try load(.cifar10, directory, split: 0.25, subset: 10),
                      ["--subset 10 is larger than the 9 training images of cifar10 in \(directory) "
                       + "(after the 25% validation split); pass at most 9"])
        assertRefused(try load(.cifar10, directory, split: 0, subset: 13),
                      ["--subset 13 is larger than the 12 training images of cifar10 in \(directory); pass at most 12"])
        assertRefused(try load(.cifar10, directory, split: 0, subset: 1), ["--subset must be at least 2"])
    }

    func testSubsetIsASeededSampleOfTheTrainingPart() throws {
        let directory = try cifar10(train: 12)
        let whole = try load(.cifar10, directory, split: 0.25)
        let sources = try load(.cifar10, directory, split: 0.25, subset: 9)
        XCTAssertEqual(sources.train.sampleCount, 9)
        XCTAssertEqual(sources.validation?.sampleCount, 3)
        XCTAssertEqual(whole.train.sampleCount, 9)
        let small = try load(.cifar10, directory, split: 0.25, subset: 5)
        XCTAssertEqual(small.train.sampleCount, 5)
        XCTAssertEqual(small.validation?.sampleCount, 3, "the validation set stays whole")
    }

    func testALoneLastTrainingImageIsLeftOutOfTheEpoch() throws {
        let directory = try cifar10(train: 9)
        // 9 images in batches of 4: 4, 4 and 1; the batch of one is left out (batch norm).
        let sources = try load(.cifar10, directory, split: 0, batchSize: 4)
        XCTAssertEqual(sources.train.batchCount, 2)
        XCTAssertEqual(Array(sources.train.batches(epoch: 0)).map(\.labels.count), [4, 4])
        // Evaluation keeps every image.
        let test = try load(.cifar10, try cifar10(train: 8, test: 5), split: 0, batchSize: 4).test
        XCTAssertEqual(Array(test.batches(epoch: 0)).map(\.labels.count), [4, 1])
    }

    func testStoredNormalizationIsValidatedBeforeLoading() throws {
        let nowhere = try directory() + "/absent"
        XCTAssertThrowsError(try DatasetSources.testSource(.cifar10, directory: nowhere,
                                                           normalization: InputNormalization(mean: [0.5, 0.5, 0.5], std: [0.2, 0, 0.2]),
                                                           batchSize: 4, reporter: nil)) { error in
            XCTAssertEqual((error as? NormalizationError)?.problems, ["std[1] = 0.0 is not positive"], "\(error)")
        }
        XCTAssertThrowsError(try InputNormalization(mean: [0.5], std: [0.2]).validate(channels: 3)) { error in
            XCTAssertEqual("\(error)", "invalid input normalization: 1 means and 1 stds for a net of 3 input channels")
        }
        XCTAssertNoThrow(try InputNormalization(mean: [0.5, 0.4, 0.3], std: [0.2, 0.2, 0.2]).validate(channels: 3))
    }
}
