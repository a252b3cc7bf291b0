// swift-tools-version:6.0
import PackageDescription

let package = Package(
    name: "neuralscale",
    products: [
        .executable(name: "neuralscale", targets: ["neuralscale"]),
        .library(name: "Autodiff", targets: ["Autodiff"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The runtime of the generated ONNX code; scripts/generate-onnx-proto.sh builds
        // protoc-gen-swift from this same version.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
    ],
    targets: [
        // C libraries, found with pkg-config (Debian packages in `providers`).
        .systemLibrary(name: "CBLAS", path: "Sources/CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CHDF5", path: "Sources/CHDF5", pkgConfig: "hdf5",
                       providers: [.apt(["libhdf5-dev"])]),
        .systemLibrary(name: "CZlib", path: "Sources/CZlib", pkgConfig: "zlib",
                       providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CJPEG", path: "Sources/CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg62-turbo-dev"])]),
        .systemLibrary(name: "CPNG", path: "Sources/CPNG", pkgConfig: "libpng",
                       providers: [.apt(["libpng-dev"])]),
        // HDF5's macros (H5T_NATIVE_FLOAT, H5F_ACC_TRUNC, ...) as functions Swift can call.
        .target(name: "CHDF5Macros", dependencies: ["CHDF5"]),
        // JPEG and PNG decoding with libjpeg-turbo and libpng, whose error handling needs setjmp.
        .target(name: "CImageCodecs", dependencies: ["CJPEG", "CPNG"]),

        // Tensors, the tape, kernels and SGD. Knows nothing about layers.
        .target(name: "Autodiff", dependencies: ["CBLAS"]),
        // Layers and the four nets, built from explicit width arrays.
        .target(name: "Nets", dependencies: ["Autodiff"]),
        // Gates, Taylor-FO importance, the pruner, trajectories, surgery.
        .target(name: "Pruning", dependencies: ["Nets"]),
        // Power-law fit, target solver, the descent loop.
        // (It drives pruning runs through the training module's data sources and checkpoints.)
        .target(name: "ArchDescent", dependencies: ["Pruning", "Training"]),
        // CIFAR, tinyImageNet, Fashion-MNIST and augmentation.
        .target(name: "Datasets", dependencies: ["Autodiff", "CZlib", "CImageCodecs"]),
        // Self-describing HDF5 checkpoints, written atomically.
        .target(name: "Checkpoint", dependencies: ["Nets", "CHDF5", "CHDF5Macros"]),
        // The training loop: epochs, evaluation, metrics, checkpoints, exact resumption.
        .target(name: "Training", dependencies: ["Checkpoint", "Datasets"]),
        // ONNX's protobuf messages (onnx.proto from the onnx wheel), generated once by
        // scripts/generate-onnx-proto.sh and committed: no build plugin.
        .target(name: "ONNX", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["proto"]),
        // ONNX export of a net's inference graph, and its verification with onnx and ONNX Runtime.
        .target(name: "Export", dependencies: ["Nets", "Pruning", "Checkpoint", "ONNX"]),
        // The command-line tool: only wires the modules together.
        .executableTarget(
            name: "neuralscale",
            dependencies: [
                "Autodiff", "Nets", "Pruning", "ArchDescent", "Datasets", "Checkpoint", "Training", "Export",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(name: "AutodiffTests", dependencies: ["Autodiff"], exclude: ["Reference"]),
        .testTarget(name: "NetsTests", dependencies: ["Nets"], exclude: ["Reference"]),
        .testTarget(name: "DatasetsTests", dependencies: ["Datasets"]),
        .testTarget(name: "CheckpointTests", dependencies: ["Checkpoint", "Export"]),
        .testTarget(name: "TrainingTests", dependencies: ["Training"]),
        .testTarget(name: "ArchDescentTests", dependencies: ["ArchDescent"]),
        .testTarget(name: "PruningTests", dependencies: ["Pruning"]),
        .testTarget(name: "ONNXTests", dependencies: ["ONNX", "Export"]),
        .testTarget(name: "ExportTests", dependencies: ["Export"], exclude: ["Reference"]),
        // The command-line tool run as a user runs it: bad inputs, locks, leftovers.
        .testTarget(name: "CLITests", dependencies: ["neuralscale", "ArchDescent", "Checkpoint", "Training", "Export"]),
    ],
    swiftLanguageModes: [.v5]
)
