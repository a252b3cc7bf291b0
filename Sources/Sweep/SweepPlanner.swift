import Foundation

/// What a sweep covers, as the command line said it.
public struct SweepSpec: Sendable {
    public var models: [String]
    public var dataset: String
    public var ratios: [Double]
    public var scalings: [String]
    public var seeds: [UInt64]
    /// model -> descent.json given with `--descent M=FILE`; the others' searches are entries.
    public var descents: [String: String]
    public var epochs: Int
    /// Of "train", "export", "quantize", "bench", in that order.
    public var steps: [String]
    public var out: String
    /// Passed to every command that reads data.
    public var dataDir: String?
    public var subset: Int?
    /// `descend --preset` for the searches the sweep runs.
    public var searchPreset: String
    public var benchTrials: Int
    /// More flags for every `train` (e.g. --batch-size 64 --lr 0.05).
    public var trainArguments: [String] = []
    /// Training images `quantize` calibrates on.
    public var calibration = 1000

    public init(models: [String], dataset: String, ratios: [Double], scalings: [String], seeds: [UInt64], descents: [String: String],
                epochs: Int, steps: [String], out: String, dataDir: String?, subset: Int?, searchPreset: String, benchTrials: Int) {
        self.models = models
        self.dataset = dataset
        self.ratios = ratios
        self.scalings = scalings
        self.seeds = seeds
        self.descents = descents
        self.epochs = epochs
        self.steps = steps
        self.out = out
        self.dataDir = dataDir
        self.subset = subset
        self.searchPreset = searchPreset
        self.benchTrials = benchTrials
    }
}

public enum SweepPlanner {
    public static let stepOrder = ["train", "export", "quantize", "bench"]

    /// One entry per (model, scaling, ratio, seed) in `<out>/<model>-<scaling>-r<ratio>-s<seed>`,
    /// a search entry `<out>/search-<model>` before the NeuralScale entries of a model without a
    /// given descent.json, and `report` over every train result.
    public static func plan(_ spec: SweepSpec) -> SweepPlan {
        func path(_ parts: String...) -> String { parts.reduce(URL(fileURLWithPath: spec.out)) { $0.appendingPathComponent($1) }.path }
        let data = spec.dataDir.map { ["--data-dir", $0] } ?? []
        var entries: [SweepEntry] = []
        var descents = spec.descents
        for model in spec.models where spec.scalings.contains("neuralscale") && descents[model] == nil {
            let folder = path("search-\(model)")
            // "paper": descend's own defaults, the papers' settings (it has no preset of that name).
            let preset = spec.searchPreset == "paper" ? [] : ["--preset", spec.searchPreset]
            entries.append(SweepEntry(id: "search-\(model)", folder: folder, steps: [
                SweepStep(name: "descend", arguments: ["descend", "--model", model, "--dataset", spec.dataset] + preset
                                                      + ["--out", folder] + data,
                          output: folder + "/descent.json", resumeArguments: ["--resume"], resumeFrom: folder + "/state.h5"),
            ]))
            descents[model] = folder + "/descent.json"
        }
        var results: [String] = [], extras: [String] = []
        for model in spec.models {
            for scaling in spec.scalings {
                for ratio in spec.ratios {
                    for seed in spec.seeds {
                        let id = "\(model)-\(scaling)-r\(ratio)-s\(seed)", folder = path(id)
                        let best = folder + "/train/best.h5"
                        var steps: [SweepStep] = []
                        if spec.steps.contains("train") {
                            var a = ["train", "--model", model, "--dataset", spec.dataset, "--ratio", "\(ratio)", "--scaling", scaling,
                                     "--epochs", "\(spec.epochs)", "--seed", "\(seed)", "--out", folder + "/train"] + data
                            if scaling == "neuralscale" { a += ["--descent", descents[model]!] }
                            if let subset = spec.subset { a += ["--subset", "\(subset)"] }
                            a += spec.trainArguments
                            steps.append(SweepStep(name: "train", arguments: a, output: folder + "/train/result.json",
                                                   resumeArguments: ["--resume"], resumeFrom: folder + "/train/last.h5"))
                            results.append(folder + "/train/result.json")
                        }
                        if spec.steps.contains("export") {
                            steps.append(SweepStep(name: "export", arguments: ["export", "--checkpoint", best, "--onnx", folder + "/fp32.onnx"] + data,
                                                   output: folder + "/fp32.onnx"))
                        }
                        // int8 accuracy goes into report's device section, which needs the bench files.
                        if spec.steps.contains("quantize"), spec.steps.contains("bench") { extras += ["--quantize", folder + "/quantize.json"] }
                        if spec.steps.contains("bench") { extras += ["--bench", folder + "/bench/bench-infer.json"] }
                        if spec.steps.contains("quantize") {
                            steps.append(SweepStep(name: "quantize", arguments: ["quantize", "--checkpoint", best, "--onnx", folder + "/int8.onnx",
                                                                                 "--calibration", "\(spec.calibration)", "--json"] + data,
                                                   output: folder + "/quantize.json", stdout: true))
                        }
                        if spec.steps.contains("bench") {
                            let int8 = spec.steps.contains("quantize") ? ["--onnx", folder + "/int8.onnx"] : []
                            steps.append(SweepStep(name: "bench", arguments: ["bench", "infer", "--checkpoint", best] + int8
                                                   + ["--batch-sizes", "1", "--trials", "\(spec.benchTrials)", "--out", folder + "/bench"],
                                                   output: folder + "/bench/bench-infer.json"))
                        }
                        entries.append(SweepEntry(id: id, folder: folder, steps: steps,
                                                  after: scaling == "neuralscale" && spec.descents[model] == nil ? ["search-\(model)"] : []))
                    }
                }
            }
        }
        // The searches this plan runs: their time per iteration goes into the report.
        for model in spec.models where spec.scalings.contains("neuralscale") && spec.descents[model] == nil {
            extras += ["--descent", descents[model]!]
        }
        let report = results.isEmpty ? nil
            : SweepStep(name: "report", arguments: ["report"] + results + extras + ["--out", path("report")], output: path("report", "report.json"))
        return SweepPlan(entries: entries, report: report)
    }
}
