import ArchDescent
import ArgumentParser
import Autodiff
import Checkpoint
import Datasets
import Export
import Foundation
import Nets
import Reporting

/// `neuralscale advise`: the width ratio that meets a latency or memory budget on a device.
struct Advise: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Advise the width ratio that meets a latency or memory target on a device (TECS Eq. 1).",
        discussion: """
        From a linear model y = m * P + b of a device's latency (ms) or memory (MB) against \
        parameters P: the parameter budget P_t = (y - b) / m for the target y and the ratio \
        S = sqrt(P_t / P_o), P_o the unscaled net's parameters (32x32 inputs, the dataset's \
        channels and classes). Prints the ratio, the uniform net's widths, params and predicted \
        figure at it, and with --descent the NeuralScale widths of the same P. A target at or \
        below b has no ratio (exit status 1); S above 1 means the unscaled net already fits.

        Profiles: the built-in ones (--list-profiles) carry the coefficients and Pearson r the \
        TECS study published; a weak fit (|r| < 0.7) is flagged as a rough prediction. --fit \
        fits a profile to `bench infer` results of this or any machine (bench-infer.json or \
        --json output: median latency and memory at --batch against params), reporting r and \
        its p-value; --save-profile writes it for --profile FILE. --verify measures the advised \
        uniform net with ONNX Runtime here (batch 1) and prints predicted against measured: \
        meaningful for a profile of this machine.
        """
    )

    @Option(name: .long, help: "The net.")
    var model: Architecture?

    @Option(name: .long, help: "The dataset, for input channels, image size and classes.")
    var dataset: DatasetKind = .cifar10

    @Option(name: .long, help: "Target latency in ms per image (batch 1).")
    var latencyMs: Double?

    @Option(name: .long, help: "Target memory in MB.")
    var memoryMb: Double?

    @Option(name: .long, help: "A built-in profile (see --list-profiles) or a profile JSON file (--save-profile writes one).")
    var profile = "cortex-a72-fp32"

    @Option(name: .long, parsing: .upToNextOption, help: "Fit the profile to these `bench infer` JSON files instead.")
    var fit: [String] = []

    @Option(name: .long, help: "With --fit: the batch size of the measurements to fit.")
    var batch = 1

    @Option(name: .long, help: "With --fit: the backend to fit ('ort' or 'swift') when the files hold both.")
    var backend: String?

    @Option(name: .long, help: "With --fit: the precision to fit ('fp32' or 'int8') when the files hold both.")
    var precision: String?

    @Option(name: .long, help: "With --fit: write the fitted profile to this JSON file.")
    var saveProfile: String?

    @Option(name: .long, help: "A descent.json of `neuralscale descend`: also the NeuralScale widths of the same P.")
    var descent: String?

    @Flag(name: .long, help: "Measure the advised uniform net with ONNX Runtime on this machine (batch 1).")
    var verify = false

    @Flag(name: .long, help: "List the built-in profiles and exit.")
    var listProfiles = false

    @Flag(name: .long, help: "Print one JSON object.")
    var json = false

    @OptionGroup(title: "Resource budgets met exactly by both scalings' widths (instead of TECS Eq. 1's ratio)")
    var budget: BudgetFlags

    func validate() throws {
        if listProfiles { return }
        guard model != nil else { throw ValidationError("give --model") }
        if budget.given {
            guard latencyMs == nil, memoryMb == nil, fit.isEmpty, !verify else {
                throw ValidationError("a --target-... budget is solved on its own; leave out --latency-ms, --memory-mb, --fit and --verify")
            }
            return
        }
        guard (latencyMs == nil) != (memoryMb == nil) else {
            throw ValidationError("give one target: --latency-ms or --memory-mb (TECS Eq. 1), or --target-mflops, --target-latency-ms or --target-memory-mb")
        }
        for (flag, v) in [("--latency-ms", latencyMs), ("--memory-mb", memoryMb)] {
            if let v, !(v.isFinite && v > 0) { throw ValidationError("\(flag) must be > 0, got \(v)") }
        }
        guard (1...4096).contains(batch) else { throw ValidationError("--batch must be in 1...4096, got \(batch)") }
        if saveProfile != nil, fit.isEmpty { throw ValidationError("--save-profile saves the profile of --fit") }
        if fit.isEmpty, backend != nil || precision != nil { throw ValidationError("--backend and --precision choose what --fit fits") }
    }

    func run() throws {
        if listProfiles {
            print("profile           latency m   latency b (ms)  r      memory m   memory b (MB)  r      device")
            for p in DeviceProfile.builtIn {
                func cells(_ l: DeviceProfile.Line?) -> String {
                    l.map { String(format: "%-11.2g %-15.3g %-6.3f ", $0.m, $0.b, $0.r ?? .nan) } ?? "-           -               -      "
                }
                print(p.name.padding(toLength: 18, withPad: " ", startingAt: 0) + cells(p.latency) + cells(p.memory) + p.description)
            }
            return
        }
        // A search of another net or dataset is refused by name before anything is solved.
        if let descent, let model { _ = try ScaledNet.searched(descent, for: model, dataset) }
        if budget.given { return try runBudget() }
        let device: DeviceProfile
        if fit.isEmpty {
            device = try DeviceProfile.named(profile, using: latencyMs != nil ? "latency" : "memory")
        } else {
            device = try DeviceProfile.fit(fit, batch: batch, backend: backend, precision: precision)
            if let saveProfile {
                let encoder = JSONEncoder()
                encoder.outputFormatting = [.sortedKeys, .prettyPrinted]
                try FileManager.default.createDirectory(atPath: URL(fileURLWithPath: saveProfile).deletingLastPathComponent().path,
                                                        withIntermediateDirectories: true)
                try AtomicFile.write(try encoder.encode(device), to: saveProfile)
            }
        }
        let model = model!
        let advice = try Advice.make(model, dataset, profile: device, latency: latencyMs, memory: memoryMb, descent: descent)
        var measured: InferenceTiming?
        if verify, let widths = advice.uniform?.widths, let ratio = advice.ratio {
            let d = NetDescription.uniform(model, ratio: min(ratio, 1), inChannels: dataset.channels, imageSize: dataset.imageSize,
                                           classes: dataset.classes)
            precondition(d.widths == widths)
            let net = try makeNetwork(d, initialization: .random(RandomGenerator(seed: 0)))
            let path = TemporaryFiles.makePath("advise", suffix: ".onnx")
            defer { TemporaryFiles.remove(path) }
            try ONNXExport.write(net, to: path, opset: 13)
            measured = try ORTInference.measure(path, name: "\(model.rawValue) x\(String(format: "%.3f", min(ratio, 1)))", batch: 1,
                                                warmup: 20, runs: 80, trials: 3, threads: 0, budget: latencyMs ?? 16.67).timing
        }
        // A target no net reaches is refused: the advice says why, and the exit status is 1.
        defer { if advice.verdict == "unreachable" { Foundation.exit(ExitCode.failure.rawValue) } }
        if json {
            struct Report: Encodable { let advice: Advice; let measured: InferenceTiming? }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(Report(advice: advice, measured: measured)), as: UTF8.self))
            return
        }
        print(advice.text, terminator: "")
        if let measured, let uniform = advice.uniform {
            let value = latencyMs != nil ? measured.median_ms : measured.memory_mb
            print(String(format: "measured here (ONNX Runtime, batch 1): %.4g %@ against %.4g predicted (%+.1f%%)", value, advice.unit,
                         uniform.predicted, 100 * (value - uniform.predicted) / uniform.predicted))
        }
    }

    /// The widths of both scalings at a resource budget, and the uniform ratio they amount to.
    func runBudget() throws {
        let model = model!
        let template = NetDescription.uniform(model, ratio: 1, inChannels: dataset.channels, imageSize: dataset.imageSize,
                                              classes: dataset.classes)
        let fit = try descent.map { try ScaledNet.searched($0, for: model, dataset).fit() }
        let (b, uniform, neuralscale) = try budget.solve(ratio: 1, template: template, fit: fit)
        let solved = [uniform] + (neuralscale.map { [$0] } ?? [])
        if json {
            struct Report: Encodable { let model: String; let dataset: String; let measure: String; let target: Double; let cost_model: String; let nets: [BudgetedWidths] }
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.sortedKeys]
            print(String(decoding: try encoder.encode(Report(model: model.rawValue, dataset: dataset.rawValue, measure: b.measure.rawValue,
                                                             target: b.target, cost_model: b.model, nets: solved)), as: UTF8.self))
            return
        }
        print("\(model.rawValue) on \(dataset.rawValue) at \(b.target) \(b.measure.unit) (\(b.model))")
        print(String(format: "  uniform ratio %.4f", uniform.knob))
        for s in solved {
            print("  " + s.summary)
            print("    widths \(s.widths)")
        }
    }
}
