import CImageCodecs
@testable import Datasets
import Foundation

/// Small datasets in every on-disk format, written by the tests, with what loading must give.
enum Fixtures {
    // MARK: CIFAR

    /// Records per CIFAR-10 training file: 12 training images in all.
    static let cifar10TrainRecords = [2, 3, 2, 3, 2]
    static let cifar10TestRecords = 3

    /// The 3072 planar pixel bytes of CIFAR record `index`, different for every record.
    static func cifarPixels(_ index: Int) -> [UInt8] {
        (0..<3072).map { UInt8(truncatingIfNeeded: $0 * 3 + index * 101 + $0 / 32) }
    }

    /// CIFAR-10 label of training record `index`.
    static func cifar10Label(_ index: Int) -> UInt8 { UInt8((index * 7 + 3) % 10) }

    /// Writes the six CIFAR-10 files. Training record `k` (counted across files) has label
    /// `cifar10Label(k)` and pixels `cifarPixels(k)`; test record `k` has label
    /// `cifar10Label(100 + k)` and pixels `cifarPixels(100 + k)`.
    static func writeCIFAR10(in directory: String) throws {
        var index = 0
        for (file, records) in cifar10TrainRecords.enumerated() {
            var bytes: [UInt8] = []
            for _ in 0..<records {
                bytes += [cifar10Label(index)] + cifarPixels(index)
                index += 1
            }
            try write(bytes, to: joinPath(directory, "data_batch_\(file + 1).bin"))
        }
        let test = (0..<cifar10TestRecords).flatMap { [cifar10Label(100 + $0)] + cifarPixels(100 + $0) }
        try write(test, to: joinPath(directory, "test_batch.bin"))
    }

    /// (coarse, fine) labels of the CIFAR-100 records; the coarse ones differ from the fine.
    static let cifar100TrainLabels: [(UInt8, UInt8)] = [(3, 99), (19, 0), (7, 57), (0, 12)]
    static let cifar100TestLabels: [(UInt8, UInt8)] = [(11, 42), (2, 98)]

    /// Writes `train.bin` and `test.bin`; record `k` has pixels `cifarPixels(k)` (test: `200 + k`).
    static func writeCIFAR100(in directory: String) throws {
        let train = cifar100TrainLabels.enumerated().flatMap { [$1.0, $1.1] + cifarPixels($0) }
        let test = cifar100TestLabels.enumerated().flatMap { [$1.0, $1.1] + cifarPixels(200 + $0) }
        try write(train, to: joinPath(directory, "train.bin"))
        try write(test, to: joinPath(directory, "test.bin"))
    }

    // MARK: Fashion-MNIST

    static let fashionTrainLabels: [UInt8] = [9, 0, 3]
    static let fashionTestLabels: [UInt8] = [1, 7]

    /// The 28x28 bytes of Fashion-MNIST image `index`, all non-zero so padding shows.
    static func fashionPixels(_ index: Int) -> [UInt8] {
        (0..<784).map { UInt8(1 + ($0 * 5 + index * 17) % 255) }
    }

    static func idxImages(count: Int, first: Int, magic: UInt32 = 0x0000_0803) -> [UInt8] {
        bigEndian([magic, UInt32(count), 28, 28]) + (0..<count).flatMap { fashionPixels(first + $0) }
    }

    static func idxLabels(_ labels: [UInt8], magic: UInt32 = 0x0000_0801) -> [UInt8] {
        bigEndian([magic, UInt32(labels.count)]) + labels
    }

    /// Writes the four gzipped IDX files; test image `k` has pixels `fashionPixels(100 + k)`.
    static func writeFashionMNIST(in directory: String) throws {
        try writeGzip(idxImages(count: fashionTrainLabels.count, first: 0),
                      to: joinPath(directory, "train-images-idx3-ubyte.gz"))
        try writeGzip(idxLabels(fashionTrainLabels), to: joinPath(directory, "train-labels-idx1-ubyte.gz"))
        try writeGzip(idxImages(count: fashionTestLabels.count, first: 100),
                      to: joinPath(directory, "t10k-images-idx3-ubyte.gz"))
        try writeGzip(idxLabels(fashionTestLabels), to: joinPath(directory, "t10k-labels-idx1-ubyte.gz"))
    }

    // MARK: tinyImageNet

    /// Listed out of alphabetical order: the label is the line number, not the sorted position.
    static let wnids = ["n03000003", "n01000001", "n02000002"]

    /// How an image file is encoded.
    enum Encoding {
        case jpeg, grayJPEG, png(ns_png_layout)
    }

    /// One image of the tree: where it goes, how it is encoded, and its `[64, 64, 3]` RGB
    /// content (flat colors for JPEG, which is lossy; patterns for PNG, which is exact).
    struct TinyImage {
        let path: String
        let encoding: Encoding
        let rgb: [UInt8]
        let label: Int32
        var exact: Bool { if case .png = encoding { return true } else { return false } }
    }

    static let side = 64

    /// The training images in the order the loader must give them: classes in wnids.txt order,
    /// file names sorted within a class.
    static let tinyTrain: [TinyImage] = [
        TinyImage(path: "train/n03000003/images/n03000003_0.JPEG", encoding: .jpeg,
                  rgb: flatRGB(200, 30, 90, side: side), label: 0),
        // A PNG under a .JPEG name: the decoder goes by the first bytes.
        TinyImage(path: "train/n03000003/images/n03000003_1.JPEG", encoding: .png(NS_PNG_RGB),
                  rgb: patternRGB(side: side, salt: 1), label: 0),
        TinyImage(path: "train/n01000001/images/n01000001_0.JPEG", encoding: .grayJPEG,
                  rgb: flatRGB(128, 128, 128, side: side), label: 1),
        TinyImage(path: "train/n01000001/images/n01000001_1.png", encoding: .png(NS_PNG_RGB16),
                  rgb: patternRGB(side: side, salt: 2), label: 1),
        TinyImage(path: "train/n02000002/images/n02000002_0.JPEG", encoding: .png(NS_PNG_RGBA),
                  rgb: patternRGB(side: side, salt: 3), label: 2),
        TinyImage(path: "train/n02000002/images/n02000002_1.JPEG", encoding: .jpeg,
                  rgb: flatRGB(10, 240, 60, side: side), label: 2),
    ]

    /// The validation images in sorted file-name order, labelled by val_annotations.txt.
    static let tinyValidation: [TinyImage] = [
        TinyImage(path: "val/images/val_0.JPEG", encoding: .jpeg, rgb: flatRGB(0, 0, 255, side: side), label: 2),
        TinyImage(path: "val/images/val_1.JPEG", encoding: .png(NS_PNG_RGB), rgb: patternRGB(side: side, salt: 4), label: 0),
        // Converted to PNG and renamed: matched to the annotation for val_2.JPEG by its stem.
        TinyImage(path: "val/images/val_2.png", encoding: .png(NS_PNG_RGB), rgb: patternRGB(side: side, salt: 5), label: 1),
    ]

    static func encode(_ image: TinyImage) throws -> [UInt8] {
        switch image.encoding {
        case .jpeg:
            return try encodeJPEG(image.rgb, width: side, height: side, channels: 3)
        case .grayJPEG:
            let gray = stride(from: 0, to: image.rgb.count, by: 3).map { image.rgb[$0] }
            return try encodeJPEG(gray, width: side, height: side, channels: 1)
        case let .png(layout):
            var input = image.rgb
            if layout == NS_PNG_RGBA {
                input = stride(from: 0, to: image.rgb.count, by: 3).flatMap { (i: Int) -> [UInt8] in
                    [image.rgb[i], image.rgb[i + 1], image.rgb[i + 2], 128]
                }
            }
            return try encodePNG(input, width: side, height: side, layout: layout)
        }
    }

    /// Writes the tinyImageNet tree: 3 wnids, 2 training images each, 3 validation images.
    static func writeTinyImageNet(in directory: String) throws {
        try write(wnids.joined(separator: "\n") + "\n", to: joinPath(directory, "wnids.txt"))
        for image in tinyTrain + tinyValidation {
            try write(try encode(image), to: joinPath(directory, image.path))
        }
        // Each class folder also holds a boxes file beside images/, as in the real set.
        for wnid in wnids {
            try write("\(wnid)_0.JPEG\t0\t0\t63\t63\n", to: joinPath(directory, "train/\(wnid)/\(wnid)_boxes.txt"))
        }
        let annotations = [("val_0.JPEG", wnids[2]), ("val_1.JPEG", wnids[0]), ("val_2.JPEG", wnids[1])]
            .map { "\($0)\t\($1)\t0\t0\t63\t63" }.joined(separator: "\n")
        try write(annotations + "\n", to: joinPath(directory, "val/val_annotations.txt"))
    }
}

extension ns_png_layout: @retroactive Equatable {}
