import ArgumentParser

@main
struct NeuralScale: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "neuralscale",
        abstract: "Train, prune and rescale convolutional nets on the CPU (NeuralScale, CVPR 2020).",
        discussion: """
        Subcommands arrive with the project's issues; today: the kernel benchmark.
        Run `neuralscale help <subcommand>` for its flags.
        """,
        subcommands: [Train.self, Eval.self, Descend.self, Widths.self, Bench.self]
    )
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the speed of the CPU kernels in a release build.",
        subcommands: [BenchConv.self, BenchOps.self, BenchTrain.self]
    )
}
