import Datasets
import Foundation
import Nets
import Reporting
import TestSupport
import Training
import XCTest

/// `report --bench --quantize`: bench figures matched to their runs, int8 accuracy, the lines
/// against params, relative speed.
final class DeviceReportTests: XCTestCase {
    /// Runs with a bench file of the checkpoint (ORT fp32, latency = slope * P + 0.2 with slope
    /// 1e-6 for uniform and half of it for NeuralScale; also a batch-8 row) and of its int8 model
    /// (half the latency), and a quantize.json naming the checkpoint.
    /// With `oddNeuralScale`, the NeuralScale nets' widths are off multiples of 8 and their latency
    /// twice the uniform slope's (as ONNX Runtime's slower paths make them).
    func makeRuns(_ folder: URL, _ list: [(String, Double)], model: Architecture = .vgg11,
                  oddNeuralScale: Bool = false) throws -> (results: [(path: String, result: TrainResult)], bench: [String], quantize: [String]) {
        var results: [(path: String, result: TrainResult)] = [], benches: [String] = [], quantized: [String] = []
        for (scaling, ratio) in list {
            let dir = folder.appendingPathComponent("\(model.rawValue)-\(scaling)-\(ratio)/train")
            try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
            let widths = model.uniformWidths(ratio: ratio).map { oddNeuralScale && scaling == "neuralscale" ? $0 + 3 : $0 }
            let params = try ResultsReport.measure(model, .fashionMNIST, widths: widths).params
            let object: [String: Any] = ["model": model.rawValue, "dataset": "fashion-mnist", "scaling": scaling, "ratio": ratio, "widths": widths,
                                         "params": params, "epochs": 1, "seed": 0, "wallSeconds": 1.0, "testAccuracy": 0.8]
            let path = dir.appendingPathComponent("result.json").path
            try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: path))
            results.append((path, try ResultsReport.readResult(path)))
            let checkpoint = dir.appendingPathComponent("best.h5").path, int8 = dir.deletingLastPathComponent().appendingPathComponent("int8.onnx").path
            let slope = scaling == "uniform" ? 1e-6 : oddNeuralScale ? 2e-6 : 0.5e-6
            func timing(_ model: String, _ precision: String, _ latency: Double, batch: Int = 1) -> [String: Any] {
                ["model": model, "backend": "ort", "precision": precision, "input_size": 32, "batch": batch, "threads": 2, "params": params,
                 "memory_mb": 2e-6 * Double(params) + 5, "memory_in_child": true, "warmup": 1, "runs": 1,
                 "trials": [["mean_ms": latency, "median_ms": latency, "p90_ms": latency]], "mean_ms": latency, "median_ms": latency,
                 "p90_ms": latency, "images_per_s": 1000 / latency, "budget_ms": 16.67, "budget_share": latency / 16.67]
            }
            let latency = slope * Double(params) + 0.2
            let bench = dir.deletingLastPathComponent().appendingPathComponent("bench-infer.json").path
            try JSONSerialization.data(withJSONObject: ["timings": [timing(checkpoint, "fp32", latency), timing(checkpoint, "fp32", 9 * latency, batch: 8),
                                                                    timing(int8, "int8", latency / 2)]]).write(to: URL(fileURLWithPath: bench))
            benches.append(bench)
            let q = dir.deletingLastPathComponent().appendingPathComponent("quantize.json").path
            try JSONSerialization.data(withJSONObject: ["onnx": int8, "checkpoint": checkpoint, "verification": ["int8_top1": 0.79]])
                .write(to: URL(fileURLWithPath: q))
            quantized.append(q)
        }
        return (results, benches, quantized)
    }

    func testDeviceSectionFromBenchAndQuantizeFiles() throws {
        let folder = try temporaryFolder("device")
        let (results, benches, quantized) = try makeRuns(folder, [("uniform", 0.25), ("uniform", 0.5), ("neuralscale", 0.25), ("neuralscale", 0.5)])
        let report = try DeviceReport.make(results: results, bench: benches, quantize: quantized, budget: 10)
        XCTAssertEqual(report.runs.count, 8, "batch 1 only, fp32 and int8 of each run")
        XCTAssertTrue(report.notes.isEmpty, "\(report.notes)")
        for r in report.runs {
            XCTAssertEqual(r.top1, r.precision == "int8" ? 0.79 : 0.8)
            XCTAssertEqual(r.mb_per_mparam, r.memory_mb / (Double(r.params) / 1e6), accuracy: 1e-9)
            XCTAssertEqual(r.budget_share, r.latency_ms / 10, accuracy: 1e-12)
        }
        // Memory is one exact line over all runs; latency mixes two slopes.
        let memory = try XCTUnwrap(report.fits.first { $0.precision == "fp32" && $0.measure == "memory" }?.line)
        XCTAssertEqual(memory.slope, 2e-6, accuracy: 1e-15)
        XCTAssertEqual(memory.intercept, 5, accuracy: 1e-9)
        XCTAssertEqual(memory.r, 1, accuracy: 1e-12)
        // Relative speed: uniform latency / NeuralScale latency at each ratio.
        let fp32 = report.speeds.filter { $0.precision == "fp32" }
        XCTAssertEqual(fp32.map(\.ratio), [0.25, 0.5])
        for s in fp32 { XCTAssertEqual(s.relative_speed, s.uniform_ms / s.neuralscale_ms, accuracy: 1e-12); XCTAssertGreaterThan(s.relative_speed, 1) }
        XCTAssertTrue(report.markdown().contains("Relative speed") && report.markdown().contains("| ort | int8 | latency |"))
        XCTAssertTrue(report.chart("latency").contains("budget 10 ms"))
        // A bench file of a run not given is left out with a note; a bad file is named.
        let partial = try DeviceReport.make(results: Array(results.prefix(1)), bench: benches, quantize: quantized, budget: 10)
        XCTAssertEqual(partial.runs.count, 2)
        XCTAssertEqual(partial.notes.count, 6)
        let bad = folder.appendingPathComponent("bad.json").path
        try Data("[]".utf8).write(to: URL(fileURLWithPath: bad))
        XCTAssertThrowsError(try DeviceReport.make(results: results, bench: [bad], quantize: [], budget: 10)) { XCTAssertTrue("\($0)".contains(bad)) }
        // Figures no measurement gives (an edited file): named with the file and field, not
        // charted as a -1 ms latency or a 200% accuracy.
        func edited(_ file: String, _ from: String, _ to: String) throws -> String {
            let copy = folder.appendingPathComponent("edited-\(from.filter(\.isLetter))-\(URL(fileURLWithPath: file).lastPathComponent)").path
            let text = try String(contentsOfFile: file, encoding: .utf8)
            XCTAssertTrue(text.contains(from), text)
            try text.replacingOccurrences(of: from, with: to).write(toFile: copy, atomically: true, encoding: .utf8)
            return copy
        }
        for (from, to, field) in [("\"median_ms\":", "\"median_ms\":-1,\"x\":", "median_ms"), ("\"memory_mb\":", "\"memory_mb\":-5,\"x\":", "memory_mb")] {
            let file = try edited(benches[0], from, to)
            XCTAssertThrowsError(try DeviceReport.make(results: results, bench: [file], quantize: quantized, budget: 10)) {
                XCTAssertTrue("\($0)".contains(file) && "\($0)".contains(field), "\($0)")
            }
        }
        let q = try edited(quantized[0], "0.79", "2.0")
        XCTAssertThrowsError(try DeviceReport.make(results: results, bench: benches, quantize: [q], budget: 10)) {
            XCTAssertTrue("\($0)".contains(q) && "\($0)".contains("int8_top1"), "\($0)")
        }
    }

    /// NeuralScale slower on ONNX Runtime with widths off its channel blocks: a note says why and
    /// what to train instead (once per net and ratio); none when the widths are multiples of 8.
    func testSlowerNeuralScaleWithOddWidthsIsExplained() throws {
        let folder = try temporaryFolder("device-odd")
        let (results, benches, quantized) = try makeRuns(folder, [("uniform", 0.25), ("neuralscale", 0.25)], oddNeuralScale: true)
        let report = try DeviceReport.make(results: results, bench: benches, quantize: quantized, budget: 10)
        XCTAssertLessThan(try XCTUnwrap(report.speeds.first { $0.precision == "fp32" }).relative_speed, 1)
        XCTAssertEqual(report.notes.count, 1, "\(report.notes)")
        let note = try XCTUnwrap(report.notes.first)
        XCTAssertTrue(note.contains("NeuralScale x0.25") && note.contains("[19, 35, 67, 67, 131, 131, 131, 131]")
                      && note.contains("--channel-multiple"), note)
        XCTAssertTrue(report.markdown().contains(note))
    }

    /// Two models: relative speed and the comparison per model, one line per backend over all
    /// nets (as the studies fit a device), chart series named by model.
    func testSeveralModelsKeepTheirOwnRows() throws {
        let folder = try temporaryFolder("device-models")
        let list = [("uniform", 1.0), ("uniform", 0.5), ("neuralscale", 0.5)]
        let vgg = try makeRuns(folder, list), mobile = try makeRuns(folder, list, model: .mobilenetv2)
        let report = try DeviceReport.make(results: vgg.results + mobile.results, bench: vgg.bench + mobile.bench,
                                           quantize: vgg.quantize + mobile.quantize, budget: 16.67)
        XCTAssertEqual(report.runs.count, 12)
        XCTAssertEqual(report.speeds.filter { $0.precision == "fp32" }.map { "\($0.model) \($0.ratio)" }, ["vgg11 0.5", "mobilenetv2 0.5"])
        XCTAssertEqual(report.comparison.filter { $0.model == "mobilenetv2" }.count, 4, "its own base, int8 and two scaled nets")
        let mobileBase = try XCTUnwrap(report.comparison.first { $0.model == "mobilenetv2" && $0.ratio == 1 && $0.precision == "fp32" })
        let mobileLatency = report.runs.first { $0.model == "mobilenetv2" && $0.ratio == 1 && $0.precision == "fp32" }!.latency_ms
        XCTAssertEqual(mobileBase.latency_ms, mobileLatency, "the base is MobileNetV2's own unscaled net, not a mean over models")
        XCTAssertEqual(report.fits.first { $0.precision == "fp32" && $0.measure == "memory" }?.line?.n, 6, "one fit over both models' nets")
        let md = report.markdown()
        XCTAssertTrue(md.contains("| mobilenetv2 | fashion-mnist | 0.5 | ort | fp32 |"), md)
        let charts = Dictionary(uniqueKeysWithValues: report.charts())
        XCTAssertEqual(Set(charts.keys), ["latency-vs-params.svg", "memory-vs-params.svg", "accuracy-vs-latency.svg", "accuracy-vs-memory.svg"])
        for (name, svg) in charts {
            XCTAssertTrue(svg.contains(">mobilenetv2 fashion-mnist NeuralScale ORT fp32</text>") && svg.contains(">vgg11 fashion-mnist uniform ORT int8</text>"), name)
        }
        XCTAssertTrue(charts["accuracy-vs-latency.svg"]!.contains(">budget 16.67 ms</text>"))
        XCTAssertFalse(charts["accuracy-vs-memory.svg"]!.contains("budget"))
    }

    /// The comparison with the unscaled fp32 net: int8 of it, and the scaled nets.
    func testComparisonWithTheUnscaledNet() throws {
        let folder = try temporaryFolder("device-base")
        let (results, benches, quantized) = try makeRuns(folder, [("uniform", 1.0), ("uniform", 0.5), ("neuralscale", 0.5)])
        let report = try DeviceReport.make(results: results, bench: benches, quantize: quantized, budget: 16.67)
        XCTAssertEqual(report.comparison.map { "\($0.net) \($0.precision) \($0.ratio)" },
                       ["uniform fp32 1.0", "uniform int8 1.0", "uniform fp32 0.5", "neuralscale fp32 0.5"])
        let base = report.comparison[0], int8 = report.comparison[1], half = report.comparison[2]
        XCTAssertEqual(base.speedup, 1)
        XCTAssertEqual(int8.speedup, 2, accuracy: 1e-12, "int8 runs at half the latency")
        XCTAssertEqual(int8.top1, 0.79)
        XCTAssertEqual(half.speedup, base.latency_ms / half.latency_ms, accuracy: 1e-12)
        XCTAssertGreaterThan(half.speedup, 1)
        XCTAssertEqual(half.memory_ratio, base.memory_mb / half.memory_mb, accuracy: 1e-12)
        XCTAssertTrue(report.markdown().contains("Against the unscaled fp32 net"))
    }
}
