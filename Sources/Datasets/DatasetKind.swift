import Foundation

/// The datasets the project trains on, with the facts about each that do not depend on the files.
public enum DatasetKind: String, CaseIterable, Sendable {
    case cifar10
    case cifar100
    case tinyimagenet
    case fashionMNIST = "fashion-mnist"

    /// The name used in messages.
    public var displayName: String {
        switch self {
        case .cifar10: return "CIFAR-10"
        case .cifar100: return "CIFAR-100"
        case .tinyimagenet: return "tinyImageNet"
        case .fashionMNIST: return "Fashion-MNIST"
        }
    }

    /// The number of classes the labels index.
    public var classes: Int {
        switch self {
        case .cifar10, .fashionMNIST: return 10
        case .cifar100: return 100
        case .tinyimagenet: return 200
        }
    }

    /// The side of the square images as they come out of the loader. Fashion-MNIST's 28x28
    /// images are zero-padded to 32 so every net built for CIFAR takes them unchanged.
    public var imageSize: Int {
        switch self {
        case .cifar10, .cifar100, .fashionMNIST: return 32
        case .tinyimagenet: return 64
        }
    }

    /// Color channels: 3 (RGB), or 1 for Fashion-MNIST's grayscale.
    public var channels: Int { self == .fashionMNIST ? 1 : 3 }

    /// Where the loader looks when no directory is given. Fashion-MNIST is where the Debian
    /// package `dataset-fashion-mnist` installs it; the others are relative to the current
    /// directory, named as the official archives unpack.
    public var defaultDirectory: String {
        switch self {
        case .cifar10: return "data/cifar-10-batches-bin"
        case .cifar100: return "data/cifar-100-binary"
        case .tinyimagenet: return "data/tiny-imagenet-200"
        case .fashionMNIST: return "/usr/share/datasets/fashion-mnist"
        }
    }

    /// Where the dataset is officially published.
    public var officialURL: String {
        switch self {
        case .cifar10, .cifar100: return "https://www.cs.toronto.edu/~kriz/cifar.html"
        case .tinyimagenet: return "http://cs231n.stanford.edu/tiny-imagenet-200.zip"
        case .fashionMNIST: return "https://github.com/zalandoresearch/fashion-mnist"
        }
    }

    /// How to get the files, for error messages.
    public var howToObtain: String {
        switch self {
        case .cifar10:
            return "download the CIFAR-10 binary version (cifar-10-binary.tar.gz) from \(officialURL) and unpack it"
        case .cifar100:
            return "download the CIFAR-100 binary version (cifar-100-binary.tar.gz) from \(officialURL) and unpack it"
        case .tinyimagenet:
            return "download \(officialURL) and unzip it"
        case .fashionMNIST:
            return "install the Debian package dataset-fashion-mnist, or download the four .gz files from \(officialURL)"
        }
    }

    /// The files (paths relative to the dataset directory; a folder ends in "/") that hold
    /// the training set, for messages about it.
    public var trainingFiles: [String] {
        switch self {
        case .cifar10: return (1...5).map { "data_batch_\($0).bin" }
        case .cifar100: return ["train.bin"]
        case .tinyimagenet: return ["train/"]
        case .fashionMNIST: return [FashionMNISTFile.trainImages.fileName, FashionMNISTFile.trainLabels.fileName]
        }
    }

    /// The files (relative paths as in `trainingFiles`) that hold the test set; tinyImageNet's
    /// is its published validation set.
    public var testFiles: [String] {
        switch self {
        case .cifar10: return ["test_batch.bin"]
        case .cifar100: return ["test.bin"]
        case .tinyimagenet: return ["val/images/", "val/val_annotations.txt"]
        case .fashionMNIST: return [FashionMNISTFile.testImages.fileName, FashionMNISTFile.testLabels.fileName]
        }
    }

    /// The files (paths relative to the dataset directory) the loader reads directly.
    /// tinyImageNet's images are found by listing `train/` and `val/images/`.
    public var expectedFiles: [String] {
        switch self {
        case .cifar10, .cifar100:
            return trainingFiles + testFiles
        case .tinyimagenet:
            return ["wnids.txt", "train/", "val/images/", "val/val_annotations.txt"]
        case .fashionMNIST:
            return FashionMNISTFile.allCases.map(\.fileName)
        }
    }
}
