import ArchDescent
import ArgumentParser
import Checkpoint
import Datasets
import Foundation
import Nets
import Pruning
import Reporting
import Training

struct Stats: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print a net's parameters, MFLOPs, critical datapath length, shortcuts and widths.",
        discussion: """
        No data files are needed: the dataset only fixes the input channels, the image size and \
        the class count. MFLOPs are 2 x the multiply-accumulates of one image, counted the way \
        PyTorch-OpCounter (thop) counts these layers: convs and linear layers without their \
        bias, an affine BatchNorm 4 per element, activations, pools and additions 0. The \
        critical datapath length (CDL) is the number of nodes on the longest path from input to \
        output of the exported ONNX graph (BatchNorms after convs folded, as `export` writes it). \
        Residual nets also show their shortcuts: identity, projection (a 1x1 conv, where a block's \
        stride or widths change) or selection (a channel selection, exported as a 0/1 1x1 conv, in nets made by pruning surgery).

        The net is the uniform one at --ratio, the NeuralScale one of a search (--scaling \
        neuralscale --descent FILE), or the one in --checkpoint.

        The size table of the studies: --ratios 0.25,0.5,0.75,1.0 with --scalings \
        uniform,neuralscale prints every (scaling, ratio)'s params, MFLOPs, CDL and widths, the \
        MFLOPs and CDL ranges per scaling, the least-squares line MFLOPs = slope * params + \
        intercept per scaling with its R^2, and the ratio of the NeuralScale slope to the uniform \
        one (--json: one object; --csv: one row per net).
        """
    )

    @Option(name: .long, help: "The net (not with --checkpoint).")
    var model: Architecture?

    @Option(name: .long, help: "The dataset, for input channels, image size and classes (not with --checkpoint).")
    var dataset: DatasetKind?

    @Option(name: .long, help: "Width ratio R (default 1.0).")
    var ratio: Double?

    @Option(name: .long, help: "'uniform' (every width times R) or 'neuralscale' (the search's widths with the uniform net's P at R; needs --descent).")
    var scaling: Scaling = .uniform

    @Option(name: .long, help: "With --scaling neuralscale: the descent.json written by `neuralscale descend`.")
    var descent: String?

    @Option(name: .long, help: "With --scaling neuralscale: use this iteration's fit (default: the last).")
    var iteration: Int?

    @Option(name: .long, help: "Measure the net of this checkpoint instead (a gated search state is measured after surgery).")
    var checkpoint: String?

    @Option(name: .long, help: "Comma-separated ratios for the size table (instead of --ratio).")
    var ratios: String?

    @Option(name: .long, help: "With --ratios: comma-separated scalings, 'uniform' and/or 'neuralscale' (needs --descent).")
    var scalings = "uniform"

    @Flag(name: .long, help: "Print one JSON object (with --ratios: the whole table).")
    var json = false

    @Flag(name: .long, help: "With --ratios: print the table as CSV.")
    var csv = false

    @OptionGroup(title: "Resource budgets (instead of --ratio's parameter count)")
    var budget: BudgetFlags

    var budgeted: Bool { budget.given || budget.channelMultiple != nil }

    func parsedRatios() throws -> [Double]? {
        try ratios.map { try commaSeparated($0, flag: "--ratios", "ratios in (0, 4]") { Double($0).flatMap { $0 > 0 && $0 <= 4 ? $0 : nil } } }
    }

    func parsedScalings() throws -> [Scaling] {
        try commaSeparated(scalings, flag: "--scalings", "'uniform' or 'neuralscale'") { Scaling(rawValue: $0) }
    }

    func validate() throws {
        if budgeted, checkpoint != nil || ratios != nil {
            throw ValidationError("--target-mflops, --target-latency-ms, --target-memory-mb and --channel-multiple size a net of --model; leave out --checkpoint and --ratios")
        }
        if budget.given, ratio != nil { throw ValidationError("give --ratio or a --target-..., not both") }
        if let ratios = try parsedRatios() {
            guard checkpoint == nil, ratio == nil, scaling == .uniform else {
                throw ValidationError("--ratios makes a table over ratios and --scalings; leave out --checkpoint, --ratio and --scaling")
            }
            guard model != nil, dataset != nil else { throw ValidationError("--ratios needs --model and --dataset") }
            _ = ratios
            let s = try parsedScalings()
            if s.contains(.neuralscale), descent == nil { throw ValidationError("--scalings neuralscale needs --descent FILE") }
            if !s.contains(.neuralscale), descent != nil || iteration != nil { throw ValidationError("--descent and --iteration only apply to --scalings neuralscale") }
            guard !(json && csv) else { throw ValidationError("give --json or --csv, not both") }
            return
        }
        guard !csv else { throw ValidationError("--csv goes with --ratios") }
        if checkpoint != nil {
            guard model == nil, dataset == nil, descent == nil, iteration == nil, scaling == .uniform, ratio == nil else {
                throw ValidationError("--checkpoint fixes the net; leave out --model, --dataset, --ratio, --scaling, --descent and --iteration")
            }
        } else {
            guard model != nil, dataset != nil else { throw ValidationError("give --model and --dataset, or --checkpoint") }
            if let ratio, !(ratio > 0 && ratio <= 4) { throw ValidationError("--ratio must be in (0, 4], got \(ratio)") }
            try validateScaling(scaling, descent: descent, iteration: iteration)
        }
    }

    func run() throws {
        if let ratios = try parsedRatios() {
            let table = try SizeTable.make(model!, dataset!, ratios: ratios, scalings: try parsedScalings(), descent: descent,
                                           iteration: iteration)
            if json {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys]
                print(String(decoding: try encoder.encode(table), as: UTF8.self))
            } else {
                print(csv ? table.csv : table.text, terminator: "")
            }
            return
        }
        let net: Network
        var solved: BudgetedWidths?
        if let checkpoint {
            net = try NetCheckpoint.load(checkpoint).prunedNetwork()
        } else if budgeted {
            var template = NetDescription.uniform(model!, ratio: 1, inChannels: dataset!.channels, imageSize: dataset!.imageSize,
                                                  classes: dataset!.classes)
            let fit = try scaling == .neuralscale ? DescentResult.load(descent!).fit(iteration: iteration) : nil
            let s = try budget.solve(ratio: ratio ?? 1, template: template, fit: fit)
            solved = scaling == .neuralscale ? s.neuralscale : s.uniform
            template.widths = solved!.widths
            net = try makeNetwork(template, initialization: .none)
        } else {
            let scaled = try ScaledNet.make(model!, dataset!, ratio: ratio ?? 1, descent: scaling == .neuralscale ? descent : nil,
                                            iteration: iteration)
            if let warning = scaled.clampWarning { FileHandle.standardError.write(Data((warning + "\n").utf8)) }
            net = try makeNetwork(scaled.description, initialization: .none)
        }
        let d = net.netDescription
        // Both from the traced graph; CDL of the graph as exported (BNs after convs folded, one
        // ONNX node per graph node).
        let graph = net.inferenceGraph
        let macs = graph.macs
        let cdl = graph.foldingBatchNorms().criticalPathLength
        let names = d.architecture.groupNames
        let shortcuts = d.shortcutCounts
        if json {
            struct Report: Encodable {
                let model: String, params: Int, macs: Int, mflops: Double, cdl: Int, widths: [Int]
                let groups: [String], inChannels: Int, imageSize: Int, classes: Int
                let shortcuts: ShortcutCounts
                let budget: BudgetedWidths?
            }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            encoder.keyEncodingStrategy = .convertToSnakeCase
            print(String(decoding: try encoder.encode(Report(
                model: d.architecture.rawValue, params: net.parameterCount, macs: macs, mflops: 2 * Double(macs) / 1e6, cdl: cdl,
                widths: d.widths, groups: names, inChannels: d.inChannels, imageSize: d.imageSize, classes: d.classes,
                shortcuts: shortcuts, budget: solved)), as: UTF8.self))
            return
        }
        print("\(d.architecture.rawValue), \(d.inChannels)x\(d.imageSize)x\(d.imageSize) input, \(d.classes) classes")
        print("params  \(net.parameterCount)")
        print(String(format: "MFLOPs  %.3f", 2 * Double(macs) / 1e6))
        print("CDL     \(cdl)")
        if !d.residualBlocks.isEmpty {
            print("shortcuts  \(shortcuts)")
        }
        if let solved { print("budget  " + solved.summary) }
        print("widths:")
        let width = names.map(\.count).max() ?? 0
        for (name, w) in zip(names, d.widths) { print("  " + name.padding(toLength: width + 2, withPad: " ", startingAt: 0) + "\(w)") }
    }
}

extension Scaling: ExpressibleByArgument {}

/// The scaling flags shared by `train` and `stats`.
func validateScaling(_ scaling: Scaling, descent: String?, iteration: Int?) throws {
    if scaling == .neuralscale, descent == nil {
        throw ValidationError("--scaling neuralscale needs --descent FILE (the descent.json of `neuralscale descend`)")
    }
    if scaling == .uniform, descent != nil || iteration != nil {
        throw ValidationError("--descent and --iteration only apply to --scaling neuralscale")
    }
}
