import ArchDescent
import ArgumentParser

// The nets and datasets are flag values as they are: ArgumentParser then checks them and lists
// the choices in --help and in its error messages.
extension Architecture: ExpressibleByArgument {}
extension DatasetKind: ExpressibleByArgument {}

@main
struct NeuralScale: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "neuralscale",
        abstract: "Train, prune and rescale convolutional nets on the CPU (NeuralScale, CVPR 2020).",
        discussion: """
        Run `neuralscale help <subcommand>` for its flags.
        """,
        subcommands: [Train.self, Eval.self, Descend.self, Widths.self, ExportONNX.self, Stats.self, Report.self, Bench.self]
    )
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure the speed of the CPU kernels in a release build.",
        subcommands: [BenchConv.self, BenchOps.self, BenchTrain.self]
    )
}
