import ArchDescent
import Foundation
import Nets
import Pruning
import XCTest

/// `stats` and `widths` with a resource budget through the binary: the bar (the
/// NeuralScale VGG-11 at uniform 0.5x's MFLOPs, within 1% from below), channel multiples, a
/// latency table file, and the bad flags.
final class BudgetCommandTests: XCTestCase {
    var root: String!

    override func setUpWithError() throws { root = try CLI.folder("budget") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: root) }

    /// A descent.json of VGG-11 on CIFAR-10 whose fit gives the original widths at P0 with
    /// exponents from 0.3 to 0.7.
    func descentFile() throws -> String {
        let template = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 3, imageSize: 32, classes: 10)
        let p0 = Double(template.parameterCount)
        let fit = PowerLawFit(groups: template.widths.enumerated().map { g, w in
            let beta = 0.3 + 0.4 * Double(g) / 7
            return GroupFit(alpha: Double(w) / pow(p0, beta), beta: beta, rSquared: 0.99)
        }, rows: 10, fallbackReason: nil)
        let it = DescentIteration(index: 0, startWidths: template.widths, startParams: template.parameterCount, trajectory: [], fit: fit,
                                  stop: .reachedMaxFraction, epochs: 1)
        let result = DescentResult(config: DescentConfig(model: .vgg11, dataset: "cifar10"), template: template,
                                   groupNames: Architecture.vgg11.groupNames, iterations: [it], ratios: [])
        let path = root + "/descent.json"
        try JSONEncoder().encode(result).write(to: URL(fileURLWithPath: path))
        return path
    }

    func json(_ r: CLIRun) throws -> [String: Any] {
        XCTAssertEqual(r.status, 0, r.text)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any], r.text)
    }

    func testMFLOPsBudgetOfBothScalings() throws {
        let descent = try descentFile()
        let half = NetDescription.uniform(.vgg11, ratio: 0.5, inChannels: 3, imageSize: 32, classes: 10).mflops
        let report = try json(CLI.run(["widths", "--descent", descent, "--target-mflops", String(half), "--json"]))
        let nets = try XCTUnwrap(report["nets"] as? [[String: Any]])
        XCTAssertEqual(nets.map { $0["scaling"] as? String }, ["uniform", "neuralscale"])
        for net in nets {
            let achieved = try XCTUnwrap(net["achieved"] as? Double)
            XCTAssertLessThanOrEqual(achieved, half, "\(net)")
            XCTAssertGreaterThanOrEqual(achieved, 0.99 * half, "\(net)")
        }
        XCTAssertEqual(nets[0]["widths"] as? [Int], Architecture.vgg11.uniformWidths(ratio: 0.5))
        XCTAssertNotEqual(nets[1]["widths"] as? [Int], nets[0]["widths"] as? [Int])
        // stats measures the same net: its MFLOPs are the solver's.
        let stats = try json(CLI.run(["stats", "--model", "vgg11", "--dataset", "cifar10", "--scaling", "neuralscale", "--descent", descent,
                                      "--target-mflops", String(half), "--json"]))
        XCTAssertEqual(stats["widths"] as? [Int], nets[1]["widths"] as? [Int])
        XCTAssertEqual(try XCTUnwrap(stats["mflops"] as? Double), try XCTUnwrap(nets[1]["achieved"] as? Double), accuracy: 1e-9)
        // Channel multiples of 16, still within the budget.
        let k16 = try json(CLI.run(["widths", "--descent", descent, "--target-mflops", String(half), "--channel-multiple", "16", "--json"]))
        for net in try XCTUnwrap(k16["nets"] as? [[String: Any]]) {
            let widths = try XCTUnwrap(net["widths"] as? [Int])
            XCTAssertTrue(widths.allSatisfy { $0 % 16 == 0 }, "\(widths)")
            XCTAssertLessThanOrEqual(try XCTUnwrap(net["achieved"] as? Double), half)
        }
        // advise gives the same widths, and the uniform ratio.
        let advice = try json(CLI.run(["advise", "--model", "vgg11", "--target-mflops", String(half), "--descent", descent, "--json"]))
        let advised = try XCTUnwrap(advice["nets"] as? [[String: Any]])
        XCTAssertEqual(advised.map { $0["widths"] as? [Int] }, nets.map { $0["widths"] as? [Int] })
        XCTAssertEqual(try XCTUnwrap(advised[0]["knob"] as? Double), 0.5, accuracy: 1e-3)
        try CLI.fails(["advise", "--model", "vgg11", "--target-mflops", "10", "--latency-ms", "3"], status: 64, mentions: ["--latency-ms"])
        let text = try CLI.run(["widths", "--descent", descent, "--target-memory-mb", "30"])
        XCTAssertEqual(text.status, 0, text.text)
        XCTAssertTrue(text.output.contains("profile cortex-a72-fp32") && text.output.contains("features.25"), text.output)
    }

    func testLatencyTableFileAndBadFlags() throws {
        // A table whose every layer takes 0.01 ms per 1000 MACs: latency is then proportional to MACs.
        let template = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 3, imageSize: 32, classes: 10)
        var entries = LatencyTable.grid(for: template, maxRatio: 1, multiple: 8, points: 4)
        for i in entries.indices {
            let e = entries[i]
            entries[i].ms = e.inChannels.map { cin in
                e.outChannels.map { cout in
                    1e-5 * Double(LayerShape(inChannels: cin, outChannels: e.depthwise ? cin : cout, inputSize: e.inputSize, kernel: e.kernel,
                                             stride: e.stride, groups: e.depthwise ? cin : 1, linear: e.linear).macs) / 1000
                }
            }
        }
        let table = LatencyTable(model: .vgg11, inChannels: 3, imageSize: 32, classes: 10, device: "test", multiple: 8, entries: entries)
        let file = root + "/table.json"
        try JSONEncoder().encode(table).write(to: URL(fileURLWithPath: file))
        let full = try table.predictMs(template)
        let r = try json(CLI.run(["stats", "--model", "vgg11", "--dataset", "cifar10", "--target-latency-ms", String(full / 4),
                                  "--latency-table", file, "--json"]))
        let budget = try XCTUnwrap(r["budget"] as? [String: Any])
        XCTAssertLessThanOrEqual(try XCTUnwrap(budget["achieved"] as? Double), full / 4)
        XCTAssertEqual(budget["multiple"] as? Int, 8, "a latency table's step is the default multiple")
        XCTAssertTrue(try XCTUnwrap(r["widths"] as? [Int]).allSatisfy { $0 % 8 == 0 })

        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--target-latency-ms", "1"], status: 64, mentions: ["--latency-table"])
        try CLI.fails(["stats", "--model", "mobilenetv2", "--dataset", "cifar10", "--target-latency-ms", "1", "--latency-table", file],
                      status: 64, mentions: [file, "vgg11"])
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--target-latency-ms", "1", "--latency-table", root + "/none.json"],
                      mentions: ["none.json", "no such file"])
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--target-mflops", "nan"], status: 64, mentions: ["--target-mflops"])
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--target-mflops", "10", "--target-memory-mb", "5"], status: 64,
                      mentions: ["one of"])
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--target-mflops", "10", "--ratio", "0.5"], status: 64,
                      mentions: ["--ratio"])
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--target-mflops", "0.00001"], status: 64, mentions: ["smallest"])
        // Past the largest net: refused by every command that solves a budget (advise's parameter count overflowed).
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--target-mflops", "1e12"], status: 64, mentions: ["largest"])
        try CLI.fails(["advise", "--model", "vgg11", "--dataset", "cifar10", "--target-latency-ms", "1e6", "--latency-table", file], status: 64,
                      mentions: ["largest"])
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--channel-multiple", "0"], status: 64, mentions: ["--channel-multiple"])
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--target-memory-mb", "30", "--memory-profile", "nope"], status: 64,
                      mentions: ["--memory-profile nope", "cortex-a72-fp32"])
    }

    /// `bench infer --latency-table` on a tiny grid: a table file that `stats` reads, with its
    /// calibration and checks, every layer kind of the net timed.
    func testLatencyTableIsMeasured() throws {
        let file = root + "/vgg.json"
        let r = try CLI.run(["bench", "infer", "--latency-table", file, "--model", "vgg11", "--dataset", "fashion-mnist",
                             "--table-max-ratio", "0.125", "--table-points", "2", "--layer-runs", "2", "--warmup", "1", "--runs", "2",
                             "--trials", "1", "--calibration-random", "1", "--table-checks", "2", "--threads", "1"], timeout: 600)
        XCTAssertEqual(r.status, 0, r.text)
        XCTAssertTrue(r.output.contains("random nets: mean |error|"), r.output)
        let table = try LatencyTable.load(file)
        XCTAssertEqual(table.entries.count, 6)
        XCTAssertEqual(table.calibration.count, 7)
        XCTAssertEqual(table.checks.count, 2)
        XCTAssertTrue(table.entries.allSatisfy { e in e.ms.joined().allSatisfy { $0 >= 0 } })
        for c in table.checks { XCTAssertGreaterThan(c.measuredMs, 0) }
        // The predictions stored are the ones the saved table makes (its floor included).
        var net = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 1, imageSize: 32, classes: 10)
        for c in table.calibration + table.checks {
            net.widths = c.widths
            XCTAssertEqual(try table.predictMs(net), c.predictedMs, accuracy: 1e-12, c.name)
        }
        let stats = try json(CLI.run(["stats", "--model", "vgg11", "--dataset", "fashion-mnist", "--target-latency-ms",
                                      String(table.calibration[2].predictedMs), "--latency-table", file, "--json"]))
        XCTAssertNotNil(stats["budget"])
        try CLI.fails(["bench", "infer", "--latency-table", file, "--model", "vgg11,resnet50"], status: 64, mentions: ["one net"])
        try CLI.fails(["bench", "infer", "--latency-table", file, "--model", "vgg11", "--table-points", "1"], status: 64,
                      mentions: ["--table-points"])
    }

    /// `train --target-mflops`: the net trained is the one sized to the budget, its ratio the
    /// uniform net's of the same P, the budget recorded (and a resume with another refused).
    func testTrainToABudget() throws {
        let data = root + "/fashion"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try CLI.writeFashionMNIST(in: data)
        let run = ["train", "--model", "vgg11", "--dataset", "fashion-mnist", "--target-mflops", "5", "--channel-multiple", "4",
                   "--epochs", "1", "--batch-size", "8", "--data-dir", data, "--out", root + "/t"]
        let r = try CLI.run(run)
        XCTAssertEqual(r.status, 0, r.text)
        XCTAssertTrue(r.errors.contains("budget: uniform: target 5 MFLOPs"), r.errors)
        let result = try json(CLI.run(["stats", "--checkpoint", root + "/t/best.h5", "--json"]))
        XCTAssertLessThanOrEqual(try XCTUnwrap(result["mflops"] as? Double), 5)
        XCTAssertGreaterThanOrEqual(try XCTUnwrap(result["mflops"] as? Double), 4.8)
        XCTAssertTrue(try XCTUnwrap(result["widths"] as? [Int]).allSatisfy { $0 % 4 == 0 })
        let record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: root + "/t/result.json"))) as? [String: Any])
        let params = try XCTUnwrap(result["params"] as? Int)
        let p0 = Double(NetDescription.uniform(.vgg11, ratio: 1, inChannels: 1, imageSize: 32, classes: 10).parameterCount)
        XCTAssertEqual(try XCTUnwrap(record["ratio"] as? Double), (Double(params) / p0).squareRoot(), accuracy: 1e-4)
        // Optional settings read as their values in the refusal.
        try CLI.fails(run.map { $0 == "5" ? "6" : $0 } + ["--resume"], mentions: ["budget: stored mflops 5, multiple 4, given mflops 6, multiple 4"])
        try CLI.fails(["train", "--model", "vgg11", "--dataset", "fashion-mnist", "--out", root + "/u"], status: 64, mentions: ["--ratio"])
    }
}
