// swift-tools-version:6.0
import Foundation
import PackageDescription

/// Member lookups (methods in extensions, conformances) need the declaring module imported in
/// the file that uses them, as top-level names do (SE-0444): the imports are the whole map.
let strictImports: [SwiftSetting] = [.enableUpcomingFeature("MemberImportVisibility")]

/// Open MPI, for data-parallel `train` and `descend` under `mpirun`: built in when its pkg-config
/// file is installed (Debian's `libopenmpi-dev`; `scripts/install-deps.sh` installs it), left out
/// otherwise, so that a machine without MPI still builds (its runs are single-process; started by
/// `mpirun`, they say so). NEURALSCALE_MPI=0 or 1 overrides the detection.
let mpi: Bool = {
    let env = ProcessInfo.processInfo.environment
    if let forced = env["NEURALSCALE_MPI"] { return forced != "0" }
    let dirs = (env["PKG_CONFIG_PATH"] ?? "").split(separator: ":").map(String.init)
        + ["/usr/lib/x86_64-linux-gnu/pkgconfig", "/usr/lib/aarch64-linux-gnu/pkgconfig", "/usr/lib64/pkgconfig",
           "/usr/lib/pkgconfig", "/usr/local/lib/pkgconfig", "/usr/share/pkgconfig"]
    return dirs.contains { FileManager.default.fileExists(atPath: $0 + "/ompi-c.pc") }
}()

/// MPI's C library and the shim that gives Swift its predefined handles (macros), when built in.
let mpiTargets: [Target] = mpi ? [
    .systemLibrary(name: "CMPI", path: "Sources/CMPI", pkgConfig: "ompi-c", providers: [.apt(["libopenmpi-dev"])]),
    .target(name: "CMPIShim", dependencies: ["CMPI"]),
] : []

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
        // Inner loops compiled for AVX-512, AVX2 and baseline x86-64, picked at load time
        // (Swift itself is compiled for the baseline): the depthwise convolution's.
        .target(name: "CKernels"),
        // prctl(PR_SET_PDEATHSIG): a sweep's steps end with the sweep (prctl is variadic).
        .target(name: "CProcess"),
        // JPEG and PNG decoding with libjpeg-turbo and libpng, whose error handling needs setjmp.
        .target(name: "CImageCodecs", dependencies: ["CJPEG", "CPNG"]),

        // The module graph. Every target lists each module its files import, so the arrows can
        // be read here and from the imports (no `@_exported import`). Core chain, one way:
        //   Autodiff <- Nets <- Pruning <- ArchDescent <- Reporting <- NeuralScaleCommands (the CLI)
        // with Datasets beside the nets (on Autodiff only), Checkpoint on Nets, Training on
        // Checkpoint and Datasets, Export on Pruning, Checkpoint, Datasets, ONNX and PythonBridge.
        // Which kind of checkpoint a file is (a `train` run's or a search's state.h5) is decided in
        // ArchDescent, the lowest module that knows both states; Export is handed the net.

        // Tensors, the tape, kernels, SGD and its learning-rate schedules. Knows nothing about layers.
        .target(name: "Autodiff", dependencies: ["CBLAS", "CKernels"], swiftSettings: strictImports),
        // Layers and the four nets, built from explicit width arrays.
        .target(name: "Nets", dependencies: ["Autodiff"], swiftSettings: strictImports),
        // Gates, Taylor-FO importance, the pruner, trajectories, surgery.
        .target(name: "Pruning", dependencies: ["Autodiff", "Nets"], swiftSettings: strictImports),
        // Power-law fit, target solver, the search's learning-rate schedule, the descent loop.
        // (It drives pruning runs through the training module's data sources and checkpoints.)
        .target(name: "ArchDescent", dependencies: ["Autodiff", "Nets", "Pruning", "Datasets", "Checkpoint", "Training"],
                swiftSettings: strictImports),
        // What runs produced, for people: the results report of `neuralscale report` and the SVG
        // charts, the search's own charts included. It sits above ArchDescent (it draws a
        // DescentResult), so the search never depends on how it is drawn.
        .target(name: "Reporting", dependencies: ["Nets", "Pruning", "Datasets", "Checkpoint", "Training", "ArchDescent", "Export"],
                swiftSettings: strictImports),
        // CIFAR, tinyImageNet, Fashion-MNIST and augmentation.
        .target(name: "Datasets", dependencies: ["Autodiff", "CZlib", "CImageCodecs"], swiftSettings: strictImports),
        // Self-describing HDF5 checkpoints, atomic writes, temporary files cleaned up on signals.
        .target(name: "Checkpoint", dependencies: ["Autodiff", "Nets", "CHDF5", "CHDF5Macros", "CProcess"], swiftSettings: strictImports),
        // The training loop: epochs, evaluation, metrics, checkpoints, exact resumption.
        .target(name: "Training", dependencies: ["Autodiff", "Nets", "Datasets", "Checkpoint"], swiftSettings: strictImports),
        // ONNX's protobuf messages (onnx.proto from the onnx wheel), generated once by
        // scripts/generate-onnx-proto.sh and committed: no build plugin.
        .target(name: "ONNX", dependencies: [.product(name: "SwiftProtobuf", package: "swift-protobuf")],
                exclude: ["proto"]),
        // The processes of a data-parallel run over MPI (a ProcessGroup of the engine), when MPI
        // is built in.
        .target(name: "MessagePassing", dependencies: ["Autodiff"] + (mpi ? ["CMPIShim"] : []),
                swiftSettings: strictImports + (mpi ? [.define("NEURALSCALE_MPI")] : [])),
        // The study as a plan of resumable runs of this tool (`neuralscale sweep`): entries, their
        // steps' command lines and outputs, and the runner that works through them.
        .target(name: "Sweep", dependencies: ["Checkpoint"], swiftSettings: strictImports),
        // Runs the repository's Python scripts and writes tensors as `.npy` for them: export's
        // verification in production, and the tests' h5py/onnx/PyTorch checks (via TestSupport).
        // Checkpoint only for its signal-safe temporary files.
        .target(name: "PythonBridge", dependencies: ["Autodiff", "Checkpoint"], swiftSettings: strictImports),
        // ONNX export of a net's inference graph, and its verification with onnx and ONNX Runtime.
        // (Datasets only for its one-line file-error reasons.)
        .target(name: "Export", dependencies: ["Autodiff", "Nets", "Pruning", "Checkpoint", "Datasets", "ONNX", "PythonBridge",
                                              .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                swiftSettings: strictImports),
        // The command-line tool's commands: they parse flags and call module functions, nothing
        // more. A library (in Sources/neuralscale) so that tests can parse and run them in process;
        // the executable below is only its `main`.
        .target(
            name: "NeuralScaleCommands",
            dependencies: [
                "Autodiff", "Nets", "Pruning", "ArchDescent", "Reporting", "Datasets", "Checkpoint", "Training", "Export",
                "PythonBridge", "Sweep", "MessagePassing",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ],
            path: "Sources/neuralscale",
            swiftSettings: strictImports
        ),
        .executableTarget(name: "neuralscale", dependencies: ["NeuralScaleCommands"], path: "Sources/neuralscale-main",
                          swiftSettings: strictImports),

        // Helpers shared by the test targets only (no product ships it): temporary folders,
        // Python with the CI rule for missing modules, randomized BN statistics, JSON mutation.
        .target(name: "TestSupport", dependencies: ["Autodiff", "Nets", "PythonBridge"], path: "Tests/TestSupport",
                swiftSettings: strictImports),
        .testTarget(name: "AutodiffTests", dependencies: ["Autodiff"], exclude: ["Reference"], swiftSettings: strictImports),
        .testTarget(name: "NetsTests", dependencies: ["Autodiff", "Nets", "TestSupport"], exclude: ["Reference"],
                    swiftSettings: strictImports),
        .testTarget(name: "DatasetsTests", dependencies: ["Autodiff", "Datasets", "CImageCodecs", "CZlib"], swiftSettings: strictImports),
        .testTarget(name: "CheckpointTests", dependencies: ["Autodiff", "Nets", "Checkpoint", "PythonBridge", "TestSupport"],
                    swiftSettings: strictImports),
        .testTarget(name: "TrainingTests", dependencies: ["Autodiff", "Nets", "Datasets", "Checkpoint", "Training", "TestSupport"],
                    swiftSettings: strictImports),
        .testTarget(name: "ArchDescentTests", dependencies: ["Autodiff", "Nets", "Pruning", "Datasets", "Checkpoint", "Training",
                                                            "ArchDescent", "TestSupport"], swiftSettings: strictImports),
        .testTarget(name: "ReportingTests", dependencies: ["Autodiff", "Nets", "Pruning", "Datasets", "Training", "ArchDescent", "Reporting", "TestSupport"],
                    swiftSettings: strictImports),
        .testTarget(name: "PruningTests", dependencies: ["Autodiff", "Nets", "Pruning", "TestSupport"], swiftSettings: strictImports),
        .testTarget(name: "ONNXTests", dependencies: ["ONNX", "PythonBridge", "TestSupport",
                                                   .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                    swiftSettings: strictImports),
        .testTarget(name: "ExportTests", dependencies: ["Autodiff", "Nets", "Pruning", "ONNX", "Export", "PythonBridge", "TestSupport",
                                                          .product(name: "SwiftProtobuf", package: "swift-protobuf")],
                    exclude: ["Reference"], swiftSettings: strictImports),
        // The command-line tool run as a user runs it: bad inputs, locks, leftovers. (It runs the
        // built `neuralscale` binary, hence that dependency, which it does not import.)
        .testTarget(name: "CLITests", dependencies: ["neuralscale", "Autodiff", "Nets", "Pruning", "Checkpoint", "Training",
                                                    "ArchDescent", "PythonBridge", "TestSupport"], swiftSettings: strictImports),
        // The commands parsed and run in process, as the tool runs them, on a tiny Fashion-MNIST:
        // train, eval, export and stats, and the files each writes.
        .testTarget(name: "CommandTests", dependencies: ["NeuralScaleCommands", "Autodiff", "Nets", "Checkpoint", "Training",
                                                        "TestSupport", .product(name: "ArgumentParser", package: "swift-argument-parser")],
                    swiftSettings: strictImports),
    ] + mpiTargets,
    swiftLanguageModes: [.v5]
)
