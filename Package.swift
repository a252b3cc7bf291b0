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
    ],
    targets: [
        // OpenBLAS's CBLAS interface, found with pkg-config (Debian: libopenblas-dev).
        .systemLibrary(
            name: "CBLAS",
            path: "Sources/CBLAS",
            pkgConfig: "openblas",
            providers: [.apt(["libopenblas-dev"])]
        ),
        // Tensors, the tape, kernels and SGD. Knows nothing about layers.
        .target(name: "Autodiff", dependencies: ["CBLAS"]),
        // Layers and the four nets, built from explicit width arrays.
        .target(name: "Nets", dependencies: ["Autodiff"]),
        // Gates, Taylor-FO importance, the pruner, trajectories, surgery.
        .target(name: "Pruning", dependencies: ["Nets"]),
        // Power-law fit, target solver, the descent loop.
        .target(name: "ArchDescent", dependencies: ["Pruning"]),
        // CIFAR, tinyImageNet, Fashion-MNIST and augmentation.
        .target(name: "Datasets", dependencies: ["Autodiff"]),
        // The command-line tool: only wires the modules together.
        .executableTarget(
            name: "neuralscale",
            dependencies: [
                "Autodiff", "Nets", "Pruning", "ArchDescent", "Datasets",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ]
        ),
        .testTarget(
            name: "AutodiffTests",
            dependencies: ["Autodiff"],
            exclude: ["Reference"]
        ),
        .testTarget(
            name: "NetsTests",
            dependencies: ["Nets"],
            exclude: ["Reference"]
        ),
    ],
    swiftLanguageModes: [.v5]
)
