import Foundation

/// The CIFAR binary format (https://www.cs.toronto.edu/~kriz/cifar.html, "Binary version"):
/// files of fixed-size records, each the label byte(s) then 3072 pixel bytes, the 32x32 red
/// plane, then green, then blue, rows top to bottom. That is already our planar layout.
private struct CIFARLayout {
    /// Label bytes before the pixels: CIFAR-10 has one; CIFAR-100 a coarse then a fine label.
    let labelBytes: Int
    /// Which label byte is the class: the fine (100-class) label for CIFAR-100.
    let labelOffset: Int
    let trainFiles: [String]
    let testFiles: [String]

    static let pixelBytes = 3 * 32 * 32
    var recordSize: Int { labelBytes + Self.pixelBytes }

    init(_ kind: DatasetKind) {
        let isCIFAR100 = kind == .cifar100
        self.init(labelBytes: isCIFAR100 ? 2 : 1, labelOffset: isCIFAR100 ? 1 : 0,
                  trainFiles: kind.trainingFiles, testFiles: kind.testFiles)
    }

    private init(labelBytes: Int, labelOffset: Int, trainFiles: [String], testFiles: [String]) {
        self.labelBytes = labelBytes
        self.labelOffset = labelOffset
        self.trainFiles = trainFiles
        self.testFiles = testFiles
    }
}

/// Loads CIFAR-10 (`data_batch_1.bin`...`data_batch_5.bin`, `test_batch.bin`) or CIFAR-100
/// (`train.bin`, `test.bin`), checking every file's size and every label.
func loadCIFAR(_ kind: DatasetKind, directory: String, progress: ((Int, Int) -> Void)?) throws -> Dataset {
    let layout = CIFARLayout(kind)
    try requireFiles(layout.trainFiles + layout.testFiles, in: directory, kind: kind)
    let counter = ProgressCounter(total: layout.trainFiles.count + layout.testFiles.count, report: progress)
    func load(_ files: [String]) throws -> ImageSet {
        var pixels: [UInt8] = []
        var labels: [Int32] = []
        for name in files {
            let path = joinPath(directory, name)
            let bytes = try readFile(path)
            try appendRecords(bytes, path: path, layout: layout, classes: kind.classes, pixels: &pixels, labels: &labels)
            counter.advance()
        }
        return ImageSet(pixels: pixels, labels: labels, channels: 3, height: 32, width: 32, classes: kind.classes)
    }
    let train = try load(layout.trainFiles)
    let test = try load(layout.testFiles)
    return Dataset(kind: kind, train: train, test: test)
}

private func appendRecords(_ bytes: [UInt8], path: String, layout: CIFARLayout, classes: Int,
                           pixels: inout [UInt8], labels: inout [Int32]) throws {
    let recordSize = layout.recordSize
    guard !bytes.isEmpty, bytes.count % recordSize == 0 else {
        throw DatasetError.truncatedRecords(path: path, size: bytes.count, recordSize: recordSize)
    }
    let records = bytes.count / recordSize
    pixels.reserveCapacity(pixels.count + records * CIFARLayout.pixelBytes)
    labels.reserveCapacity(labels.count + records)
    try bytes.withUnsafeBufferPointer { file in
        for r in 0..<records {
            let record = r * recordSize
            let label = Int(file[record + layout.labelOffset])
            guard label < classes else {
                throw DatasetError.labelOutOfRange(path: path, record: r, label: label, classes: classes)
            }
            labels.append(Int32(label))
            pixels.append(contentsOf: file[(record + layout.labelBytes)..<(record + recordSize)])
        }
    }
}
