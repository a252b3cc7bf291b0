import Foundation

/// Why a dataset could not be loaded. Every message names the file (or directory) and the problem,
/// and the "not found" ones say where the dataset is published and how to point the tool at it.
public enum DatasetError: Error, CustomStringConvertible, Equatable {
    /// The dataset directory does not exist or is not a directory.
    case directoryNotFound(kind: DatasetKind, directory: String)
    /// Files the loader reads are absent from `directory`. `nested` is a subdirectory of
    /// `directory` that looks like the dataset's own (a common mix-up), if there is one.
    case missingFiles(kind: DatasetKind, directory: String, missing: [String], nested: String?)
    /// tinyImageNet's `wnids.txt`, which fixes the class order, is absent.
    case missingClassList(path: String)
    /// A file exists but reading (or un-gzipping) it failed.
    case unreadableFile(path: String, reason: String)
    /// A record file whose size is not a positive multiple of the record size.
    case truncatedRecords(path: String, size: Int, recordSize: Int)
    /// A label outside `0..<classes`; `record` counts from 0.
    case labelOutOfRange(path: String, record: Int, label: Int, classes: Int)
    /// An IDX file whose magic number is not the expected one.
    case badMagic(path: String, found: UInt32, expected: UInt32)
    /// An IDX file whose dimensions are not the expected ones, e.g. images not 28x28.
    case unexpectedDimensions(path: String, found: [Int], expected: String)
    /// An IDX file whose data is shorter or longer than its header declares.
    case lengthMismatch(path: String, expectedBytes: Int, actualBytes: Int)
    /// An images file and its labels file disagree on the number of samples.
    case countMismatch(images: String, imageCount: Int, labels: String, labelCount: Int)
    /// An image file neither decoder accepts, with the decoder's reason.
    case undecodableImage(path: String, reason: String)
    /// An image that decoded but has the wrong size.
    case wrongImageSize(path: String, width: Int, height: Int, expected: Int)
    /// A folder under `train/` whose name is not a wnid listed in `classList`.
    case unknownClassFolder(path: String, wnid: String, classList: String)
    /// A line of `val_annotations.txt` naming a wnid not listed in `classList`; `line` counts from 1.
    case unknownAnnotationClass(path: String, line: Int, wnid: String, classList: String)
    /// A line of a text file that does not have the expected form; `line` counts from 1.
    case malformedLine(path: String, line: Int, problem: String)
    /// A validation image with no line in the annotations file.
    case unannotatedImage(path: String, annotations: String)
    /// A file or folder that should hold images holds none; `detail` says what was expected.
    case noImages(path: String, detail: String)
    /// A header declaring more samples than any real file of the dataset has (a corrupt header),
    /// refused before memory is sized from it.
    case implausibleCount(path: String, count: Int, limit: Int)
    /// A file larger than any file of its kind can be, refused before it is read.
    case oversizedFile(path: String, size: Int, limit: Int)

    public var description: String {
        switch self {
        case let .directoryNotFound(kind, directory):
            return "\(kind.displayName) directory '\(directory)' does not exist or is not a directory. "
                + "It should hold: \(kind.expectedFiles.joined(separator: ", ")). "
                + "To get the dataset, \(kind.howToObtain); pass its directory with --data-dir."
        case let .missingFiles(kind, directory, missing, nested):
            var text = missing == kind.expectedFiles
                ? "No \(kind.displayName) files in '\(directory)'. Expected: \(missing.joined(separator: ", ")). "
                : "\(kind.displayName) files missing in '\(directory)': \(missing.joined(separator: ", ")). "
                    + "Expected: \(kind.expectedFiles.joined(separator: ", ")). "
            if kind == .fashionMNIST { text += "(Each may also be un-gzipped, named without .gz.) " }
            if let nested = nested {
                text += "The directory contains '\(nested)'; did you mean --data-dir \(directory)/\(nested)? "
            }
            return text + "To get the dataset, \(kind.howToObtain); pass its directory with --data-dir."
        case let .missingClassList(path):
            return "\(path): missing. tinyImageNet's wnids.txt lists the 200 class ids (wnids) and fixes "
                + "the label order. To get the dataset, \(DatasetKind.tinyimagenet.howToObtain); "
                + "pass the tiny-imagenet-200 directory with --data-dir."
        case let .unreadableFile(path, reason):
            return "\(path): cannot read: \(reason)"
        case let .truncatedRecords(path, size, recordSize):
            if size == 0 { return "\(path): empty; expected records of \(recordSize) bytes" }
            return "\(path): truncated or corrupt: \(size) bytes is not a whole number of "
                + "\(recordSize)-byte records (\(size % recordSize) bytes left over after \(size / recordSize))"
        case let .labelOutOfRange(path, record, label, classes):
            return "\(path): record \(record) has label \(label), outside 0..<\(classes)"
        case let .badMagic(path, found, expected):
            return "\(path): bad IDX magic number 0x\(hex(found)), expected 0x\(hex(expected))"
        case let .unexpectedDimensions(path, found, expected):
            return "\(path): IDX dimensions \(found.map(String.init).joined(separator: " x ")), expected \(expected)"
        case let .lengthMismatch(path, expectedBytes, actualBytes):
            return "\(path): the IDX header declares \(expectedBytes) bytes of data, but the file holds \(actualBytes)"
                + (actualBytes < expectedBytes ? " (truncated)" : "")
        case let .countMismatch(images, imageCount, labels, labelCount):
            return "\(images) holds \(imageCount) images but \(labels) holds \(labelCount) labels"
        case let .undecodableImage(path, reason):
            return "\(path): cannot decode image: \(reason)"
        case let .wrongImageSize(path, width, height, expected):
            return "\(path): image is \(width)x\(height), expected \(expected)x\(expected)"
        case let .unknownClassFolder(path, wnid, classList):
            return "\(path): class folder '\(wnid)' is not listed in \(classList)"
        case let .unknownAnnotationClass(path, line, wnid, classList):
            return "\(path):\(line): wnid '\(wnid)' is not listed in \(classList)"
        case let .malformedLine(path, line, problem):
            return "\(path):\(line): \(problem)"
        case let .unannotatedImage(path, annotations):
            return "\(path): validation image has no line in \(annotations)"
        case let .noImages(path, detail):
            return "\(path): no images (\(detail))"
        case let .implausibleCount(path, count, limit):
            return "\(path): the header declares \(count) samples; at most \(limit) expected (corrupt header?)"
        case let .oversizedFile(path, size, limit):
            return "\(path): \(size) bytes; at most \(limit) expected for this kind of file"
        }
    }
}

private func hex(_ value: UInt32) -> String {
    let digits = String(value, radix: 16, uppercase: true)
    return String(repeating: "0", count: max(0, 8 - digits.count)) + digits
}
