import CImageCodecs
@testable import Datasets
import Foundation
import XCTest

/// Broken and missing files: each error must name the file and the problem.
final class CorruptInputTests: XCTestCase {
    private func cifar10Directory() throws -> String {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeCIFAR10(in: directory)
        return directory
    }

    private func fashionDirectory() throws -> String {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeFashionMNIST(in: directory)
        return directory
    }

    private func tinyDirectory() throws -> String {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeTinyImageNet(in: directory)
        return directory
    }

    // MARK: Missing files

    func testMissingFileListsExpectedFilesAndWhereToGetThem() throws {
        let directory = try cifar10Directory()
        try FileManager.default.removeItem(atPath: joinPath(directory, "test_batch.bin"))
        assertDatasetError(try loadDataset(.cifar10, directory: directory), contains: [
            "missing in '\(directory)': test_batch.bin",
            "data_batch_1.bin, data_batch_2.bin, data_batch_3.bin, data_batch_4.bin, data_batch_5.bin, test_batch.bin",
            "https://www.cs.toronto.edu/~kriz/cifar.html", "--data-dir",
        ])
    }

    func testMissingFashionFilesMentionTheDebianPackage() throws {
        let directory = try makeTemporaryDirectory(self)
        assertDatasetError(try loadDataset(.fashionMNIST, directory: directory), contains: [
            directory, "train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz",
            "dataset-fashion-mnist", "https://github.com/zalandoresearch/fashion-mnist", "--data-dir",
        ])
    }

    func testParentDirectoryIsPointedOut() throws {
        let parent = try makeTemporaryDirectory(self)
        try Fixtures.writeCIFAR100(in: joinPath(parent, "cifar-100-binary"))
        assertDatasetError(try loadDataset(.cifar100, directory: parent),
                           contains: ["train.bin", "did you mean --data-dir \(parent)/cifar-100-binary"])
    }

    /// A wnids.txt of more classes than the nets have outputs is refused at its line (its labels
    /// past 199 stopped training inside the loss).
    func testTinyImageNetWithMoreThan200WnidsIsRefused() throws {
        let directory = try tinyDirectory()
        let path = joinPath(directory, "wnids.txt")
        let listed = try String(contentsOfFile: path, encoding: .utf8)
        let extra = (0..<198).map { String(format: "n9%07d", $0) }.joined(separator: "\n")
        try (listed + extra + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: [path + ":201", "more than 200 wnids"])
    }

    func testMissingDirectory() throws {
        let directory = try makeTemporaryDirectory(self) + "/nowhere"
        assertDatasetError(try loadDataset(.cifar100, directory: directory),
                           contains: [directory, "does not exist", "https://www.cs.toronto.edu/~kriz/cifar.html", "--data-dir"])
    }

    // MARK: Record files

    func testTruncatedRecordFile() throws {
        let directory = try cifar10Directory()
        let path = joinPath(directory, "data_batch_3.bin")
        try write(Array(try readFile(path).dropLast(100)), to: path)
        assertDatasetError(try loadDataset(.cifar10, directory: directory),
                           contains: [path, "truncated", "not a whole number of 3073-byte records"])
    }

    func testTruncatedCIFAR100RecordFile() throws {
        let directory = try makeTemporaryDirectory(self)
        try Fixtures.writeCIFAR100(in: directory)
        let path = joinPath(directory, "test.bin")
        try write(Array(try readFile(path).dropLast(1)), to: path)
        assertDatasetError(try loadDataset(.cifar100, directory: directory),
                           contains: [path, "3074-byte records"])
    }

    func testCIFAR10LabelOutOfRange() throws {
        let directory = try cifar10Directory()
        let path = joinPath(directory, "data_batch_2.bin")
        var bytes = try readFile(path)
        bytes[3073] = 10  // the label of the second record
        try write(bytes, to: path)
        assertDatasetError(try loadDataset(.cifar10, directory: directory),
                           contains: [path, "record 1 has label 10", "outside 0..<10"])
    }

    // MARK: IDX files

    func testIDXLabelOutOfRange() throws {
        let directory = try fashionDirectory()
        let path = joinPath(directory, "t10k-labels-idx1-ubyte.gz")
        try writeGzip(Fixtures.idxLabels([1, 10]), to: path)
        assertDatasetError(try loadDataset(.fashionMNIST, directory: directory),
                           contains: [path, "record 1 has label 10", "outside 0..<10"])
    }

    func testBadIDXMagic() throws {
        let directory = try fashionDirectory()
        let path = joinPath(directory, "train-images-idx3-ubyte.gz")
        try writeGzip(Fixtures.idxImages(count: 3, first: 0, magic: 0x0000_0801), to: path)
        assertDatasetError(try loadDataset(.fashionMNIST, directory: directory),
                           contains: [path, "bad IDX magic number 0x00000801, expected 0x00000803"])
    }

    func testIDXImageAndLabelCountsMustAgree() throws {
        let directory = try fashionDirectory()
        let labels = joinPath(directory, "train-labels-idx1-ubyte.gz")
        try writeGzip(Fixtures.idxLabels([1, 2]), to: labels)
        assertDatasetError(try loadDataset(.fashionMNIST, directory: directory),
                           contains: ["train-images-idx3-ubyte.gz holds 3 images", "\(labels) holds 2 labels"])
    }

    func testIDXDataShorterThanItsHeader() throws {
        let directory = try fashionDirectory()
        let path = joinPath(directory, "t10k-images-idx3-ubyte.gz")
        try writeGzip(Array(Fixtures.idxImages(count: 2, first: 100).dropLast(10)), to: path)
        assertDatasetError(try loadDataset(.fashionMNIST, directory: directory),
                           contains: [path, "declares 1568 bytes of data, but the file holds 1558 (truncated)"])
    }

    func testIDXWithWrongImageSize() throws {
        let directory = try fashionDirectory()
        let path = joinPath(directory, "train-images-idx3-ubyte.gz")
        try writeGzip(bigEndian([0x0000_0803, 1, 32, 32]) + [UInt8](repeating: 1, count: 1024), to: path)
        assertDatasetError(try loadDataset(.fashionMNIST, directory: directory),
                           contains: [path, "IDX dimensions 1 x 32 x 32, expected N x 28 x 28"])
    }

    func testCutGzipStream() throws {
        let directory = try fashionDirectory()
        let path = joinPath(directory, "train-labels-idx1-ubyte.gz")
        let gz = try readFile(path)
        try write(Array(gz.dropLast(6)), to: path)  // part of the CRC and length trailer
        assertDatasetError(try loadDataset(.fashionMNIST, directory: directory),
                           contains: [path, "gzip"])
    }

    // MARK: tinyImageNet

    func testUndecodableImage() throws {
        let directory = try tinyDirectory()
        let path = joinPath(directory, "train/n01000001/images/n01000001_0.JPEG")
        try write(Array("garbage, not a JPEG".utf8), to: path)
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: [path, "cannot decode image", "neither a JPEG nor a PNG"])
    }

    func testTruncatedJPEG() throws {
        let directory = try tinyDirectory()
        let path = joinPath(directory, "val/images/val_0.JPEG")
        let jpeg = try readFile(path)
        try write(Array(jpeg.prefix(jpeg.count * 2 / 3)), to: path)
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: [path, "cannot decode image", "Premature end of JPEG file"])
    }

    func testImageOfTheWrongSize() throws {
        let directory = try tinyDirectory()
        let path = joinPath(directory, "val/images/val_1.JPEG")
        try write(try encodePNG(patternRGB(side: 32, salt: 0), width: 32, height: 32, layout: NS_PNG_RGB), to: path)
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: [path, "image is 32x32, expected 64x64"])
    }

    func testMissingWnids() throws {
        let directory = try tinyDirectory()
        let path = joinPath(directory, "wnids.txt")
        try FileManager.default.removeItem(atPath: path)
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: [path, "missing", "http://cs231n.stanford.edu/tiny-imagenet-200.zip", "--data-dir"])
    }

    func testClassFolderNotInWnids() throws {
        let directory = try tinyDirectory()
        let folder = joinPath(directory, "train/n09999999")
        try write(try encodeJPEG(flatRGB(1, 2, 3, side: 64), width: 64, height: 64, channels: 3),
                  to: folder + "/images/n09999999_0.JPEG")
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: [folder, "'n09999999' is not listed in \(joinPath(directory, "wnids.txt"))"])
    }

    func testAnnotationWithUnknownWnid() throws {
        let directory = try tinyDirectory()
        let path = joinPath(directory, "val/val_annotations.txt")
        try write("val_0.JPEG\tn02000002\t0\t0\t1\t1\nval_1.JPEG\tn08888888\t0\t0\t1\t1\n", to: path)
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: ["\(path):2", "wnid 'n08888888' is not listed in"])
    }

    func testValidationImageWithoutAnnotation() throws {
        let directory = try tinyDirectory()
        let path = joinPath(directory, "val/images/val_9.JPEG")
        try write(try readFile(joinPath(directory, "val/images/val_0.JPEG")), to: path)
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: [path, "has no line in", "val_annotations.txt"])
    }

    func testUnreadableEntryIsNamed() throws {
        let directory = try tinyDirectory()
        let path = joinPath(directory, "val/images/val_3")
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        try write("val_0.JPEG\tn02000002\nval_1.JPEG\tn03000003\nval_2.JPEG\tn01000001\nval_3\tn01000001\n",
                  to: joinPath(directory, "val/val_annotations.txt"))
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: [path, "cannot read: Is a directory"])
    }

    func testMissingClassFolder() throws {
        let directory = try tinyDirectory()
        try FileManager.default.removeItem(atPath: joinPath(directory, "train/n02000002"))
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: ["train/n02000002/images/", "http://cs231n.stanford.edu/tiny-imagenet-200.zip"])
    }

    func testMissingValidationFolder() throws {
        let directory = try tinyDirectory()
        try FileManager.default.removeItem(atPath: joinPath(directory, "val"))
        assertDatasetError(try loadDataset(.tinyimagenet, directory: directory),
                           contains: ["files missing in '\(directory)': val/images/, val/val_annotations.txt"])
    }
}
