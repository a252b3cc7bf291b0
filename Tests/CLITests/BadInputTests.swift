import ArchDescent
import Foundation
import Nets
import Pruning
import XCTest

/// Bad numbers from flags and files: each is refused with a message naming the flag or the file,
/// never a runtime trap.
final class BadInputTests: XCTestCase {
    var root: String!

    override func setUpWithError() throws { root = try CLI.folder("bad") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: root) }

    private func path(_ name: String) -> String { URL(fileURLWithPath: root).appendingPathComponent(name).path }

    func testNonFiniteAndHugeFlagsAreUsageErrors() throws {
        for ratio in ["nan", "inf", "-inf", "1e300", "-1", "0"] {
            let r = try CLI.fails(["train", "--model", "vgg11", "--dataset", "fashion-mnist", "--ratio", ratio, "--out", path("x")],
                                  status: 64, mentions: ["--ratio"])
            XCTAssertTrue(r.errors.contains("Usage: neuralscale train"), "train's own usage: \(r.errors)")
        }
        for (flag, value) in [("--lr", "nan"), ("--momentum", "nan"), ("--weight-decay", "nan"), ("--val-split", "nan"),
                              ("--val-split", "inf"), ("--epochs", "0"), ("--subset", "1")] {
            try CLI.fails(["train", "--model", "vgg11", "--dataset", "fashion-mnist", "--ratio", "0.25", flag, value, "--out", path("x")],
                          status: 64, mentions: [flag])
        }
        for (flag, value) in [("--base-ratio", "nan"), ("--base-ratio", "1e300"), ("--prune-max", "nan"), ("--lr", "inf")] {
            try CLI.fails(["descend", "--model", "vgg11", "--dataset", "fashion-mnist", flag, value, "--out", path("d")],
                          status: 64, mentions: [flag])
        }
        // A thread count that cannot be used is said, once.
        for value in ["0", "-1", "abc", "1.5"] {
            let r = try CLI.run(["stats", "--model", "vgg11", "--dataset", "cifar10", "--ratio", "0.25"], environment: ["NEURALSCALE_THREADS": value])
            XCTAssertEqual(r.status, 0, r.text)
            XCTAssertEqual(r.errors.components(separatedBy: "NEURALSCALE_THREADS='\(value)' is not a thread count").count, 2, r.errors)
        }
        // An empty item in a list is refused, not skipped.
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--ratios", "0.25,,0.5"], status: 64, mentions: ["--ratios"])
        try CLI.fails(["bench", "infer", "--model", "vgg11", "--batch-sizes", "1,,2"], status: 64, mentions: ["--batch-sizes"])
        // An unknown dataset is the flag's error, not the checkpoint's.
        try CLI.fails(["eval", "--checkpoint", path("none.h5"), "--dataset", "bogus"], status: 64, mentions: ["--dataset", "fashion-mnist"])
        // Sizes past any machine's memory: refused, not a failed allocation's trap.
        try CLI.fails(["bench", "ops", "--batch-size", "1000000000000", "--iterations", "1"], status: 64, mentions: ["--batch-size"])
        try CLI.fails(["bench", "ops", "--size", "100000000000", "--iterations", "1"], status: 64, mentions: ["--size"])
        try CLI.fails(["bench", "conv", "--batch-size", "1000000000000", "--layers", "1"], status: 64, mentions: ["--batch-size"])
        try CLI.fails(["bench", "conv", "--gemm-size", "100000000"], status: 64, mentions: ["--gemm-size"])
        try CLI.fails(["bench", "train", "--model", "vgg11", "--batch-size", "1000000000000"], status: 64, mentions: ["--batch-size"])
        try CLI.fails(["stats", "--model", "resnet50", "--dataset", "cifar10", "--ratio", "nan"], status: 64, mentions: ["--ratio"])
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--ratio", "0.0001"], status: 64, mentions: ["--ratio"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: path("x")), "a refused run creates no folder")
    }

    /// A descent.json of VGG-11 on Fashion-MNIST whose last fit is `groups` (alpha, beta).
    private func descentFile(_ groups: [(Double, Double)], name: String) throws -> String {
        let template = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 1, imageSize: 32, classes: 10)
        let fit = PowerLawFit(groups: groups.map { GroupFit(alpha: $0.0, beta: $0.1, rSquared: 0.99) }, rows: 10, fallbackReason: nil)
        let it = DescentIteration(index: 0, startWidths: template.widths, startParams: template.parameterCount,
                                  trajectory: [], fit: fit, stop: .reachedMaxFraction, epochs: 1)
        let result = DescentResult(config: DescentConfig(model: .vgg11, dataset: "fashion-mnist"), template: template,
                                   groupNames: Architecture.vgg11.groupNames, iterations: [it], ratios: [])
        var text = String(decoding: try JSONEncoder().encode(result), as: UTF8.self)
        // JSONEncoder cannot write the infinities a damaged file may hold.
        text = text.replacingOccurrences(of: "\"alpha\":1e+999", with: "\"alpha\":1e999")
        let p = path(name)
        try text.write(toFile: p, atomically: false, encoding: .utf8)
        return p
    }

    func testDamagedFitsAreRefusedByEveryReader() throws {
        let good = (0..<8).map { _ in (0.5, 0.5) }
        var cases: [(String, [(Double, Double)], String)] = [
            ("huge-alpha.json", good.enumerated().map { $0 == 3 ? (1e300, 0.5) : $1 }, "width 3"),
            ("zero-alpha.json", good.enumerated().map { $0 == 0 ? (0, 0.5) : $1 }, "alpha"),
            ("negative-alpha.json", good.enumerated().map { $0 == 0 ? (-2, 0.5) : $1 }, "alpha"),
            ("absurd-beta.json", good.enumerated().map { $0 == 5 ? (0.5, 1e6) : $1 }, "beta"),
            ("negative-beta.json", good.enumerated().map { $0 == 5 ? (0.5, -3) : $1 }, "beta"),
        ]
        // A fit whose numbers are each plausible but whose widths overflow a net at ratio 4.
        cases.append(("wide.json", good.enumerated().map { $0 == 0 ? (1e5, 0.9) : $1 }, "width"))
        for (name, groups, word) in cases {
            let file = try descentFile(groups, name: name)
            try CLI.fails(["widths", "--descent", file, "--ratio", "4"], mentions: [file, word])
            try CLI.fails(["stats", "--model", "vgg11", "--dataset", "fashion-mnist", "--ratio", "4", "--scaling", "neuralscale",
                           "--descent", file], mentions: [file, word])
            try CLI.fails(["train", "--model", "vgg11", "--dataset", "fashion-mnist", "--ratio", "4", "--scaling", "neuralscale",
                           "--descent", file, "--out", path("t-\(name)")], mentions: [file, word])
        }
        // Not JSON at all, a missing file, a folder.
        try "{\"config\": 3".write(toFile: path("broken.json"), atomically: false, encoding: .utf8)
        try CLI.fails(["widths", "--descent", path("broken.json")], mentions: [path("broken.json"), "not a descent.json"])
        try CLI.fails(["widths", "--descent", path("missing.json")], mentions: [path("missing.json"), "no such file"])
        try CLI.fails(["widths", "--descent", root], mentions: [root, "a folder, not a file"])
    }

    /// A folder where a file is expected is called one (it read as "unknown read error" or "no
    /// such file").
    func testFoldersWhereFilesAreExpected() throws {
        let folder = path("folder")
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        for command in [["report", folder, "--out", path("r")],
                        ["fit", "--model", "vgg11", "--dataset", "fashion-mnist", "--trajectory", folder, "--out", path("fit.json")],
                        ["bench", "infer", "--onnx", folder, "--warmup", "1", "--runs", "1", "--trials", "1"],
                        ["advise", "--model", "vgg11", "--latency-ms", "25", "--profile", folder]] {
            try CLI.fails(command, mentions: [folder, "a folder"])
        }
        // Output files that cannot be: refused before any work, naming the flag and the path.
        let file = path("plain.txt")
        try Data("x".utf8).write(to: URL(fileURLWithPath: file))
        let exportLike = ["--checkpoint", path("none.h5"), "--onnx"]
        for (output, words) in [("", ["--onnx needs a file name"]), (folder, ["is a folder"]), (file + "/x.onnx", [file, "is a file, not a folder"]),
                                (path("nowhere/x.onnx"), [path("nowhere"), "does not exist"])] {
            for command in ["export", "quantize"] {
                try CLI.fails([command] + exportLike + [output], status: 64, mentions: words)
            }
        }
        try CLI.fails(["fit", "--model", "vgg11", "--dataset", "fashion-mnist", "--trajectory", file, "--out", file + "/x.json"],
                      status: 64, mentions: ["--out", "is a file, not a folder"])
        try CLI.fails(["fit", "--model", "vgg11", "--dataset", "fashion-mnist", "--trajectory", file, "--out", ""], status: 64,
                      mentions: ["--out needs a file name"])
    }

    func testFitClampedToWidthOneIsReported() throws {
        // Group 7's alpha makes it less than half a channel at every ratio.
        let groups = (0..<8).map { $0 == 7 ? (1e-9, 0.5) : (0.5, 0.5) }
        let file = try descentFile(groups, name: "clamped.json")
        let r = try CLI.run(["widths", "--descent", file, "--ratio", "1"])
        XCTAssertEqual(r.status, 0, r.text)
        XCTAssertTrue(r.text.contains("warning") && r.text.contains(Architecture.vgg11.groupNames[7]), r.text)
        XCTAssertFalse(r.text.contains("from the uniform net's"), "P is met: \(r.text)")
        // A fit that gives every group almost nothing: the net far from the target P is said.
        let starved = try descentFile([0.20, 0.44, 0.53, 0.61, 0.69, 0.58, 0.61, 0.44].map { (1e-30, $0) }, name: "starved.json")
        for command in [["widths", "--descent", starved, "--ratio", "0.25"],
                        ["stats", "--model", "vgg11", "--dataset", "fashion-mnist", "--ratio", "0.25", "--scaling", "neuralscale", "--descent", starved]] {
            let s = try CLI.run(command)
            XCTAssertEqual(s.status, 0, s.text)
            XCTAssertTrue(s.text.contains("from the uniform net's") && s.text.contains("check the search"), s.text)
        }
    }

    /// A result.json of a uniform VGG-11 on Fashion-MNIST with `change` applied to its JSON.
    private func resultFile(_ name: String, _ change: (inout [String: Any]) -> Void) throws -> String {
        var object: [String: Any] = ["model": "vgg11", "dataset": "fashion-mnist", "scaling": "uniform", "ratio": 0.25,
                                     "widths": Architecture.vgg11.uniformWidths(ratio: 0.25), "params": 579_498, "testAccuracy": 0.86,
                                     "testLoss": 0.4, "validationAccuracy": 0.85, "bestEpoch": 3, "epochs": 3, "seed": 0, "wallSeconds": 12.5]
        change(&object)
        let p = path(name)
        try JSONSerialization.data(withJSONObject: object).write(to: URL(fileURLWithPath: p))
        return p
    }

    func testReportRefusesImpossibleResults() throws {
        let good = try resultFile("good.json") { _ in }
        // A killed report's temporary (its process gone) is removed by the next one.
        try FileManager.default.createDirectory(atPath: path("report-ok"), withIntermediateDirectories: true)
        let stale = path("report-ok/.report.md.tmp-999999999")
        try Data("half".utf8).write(to: URL(fileURLWithPath: stale))
        let r = try CLI.run(["report", good, "--out", path("report-ok")])
        XCTAssertEqual(r.status, 0, r.text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
        let cases: [(String, (inout [String: Any]) -> Void, String)] = [
            ("accuracy.json", { $0["testAccuracy"] = 7.5 }, "testAccuracy"),
            ("negative-accuracy.json", { $0["validationAccuracy"] = -0.1 }, "validationAccuracy"),
            ("ratio0.json", { $0["ratio"] = 0 }, "ratio"),
            ("ratio-1.json", { $0["ratio"] = -1 }, "ratio"),
            ("width.json", { $0["widths"] = [1_000_000_000, 32, 64, 64, 128, 128, 128, 128] }, "widths"),
            ("widths-count.json", { $0["widths"] = [16, 32] }, "widths"),
            ("params.json", { $0["params"] = -5 }, "params"),
            ("epoch.json", { $0["bestEpoch"] = 9 }, "bestEpoch"),
        ]
        for (name, change, word) in cases {
            let file = try resultFile(name, change)
            try CLI.fails(["report", good, file, "--out", path("report-\(name)")], mentions: [file, word])
        }
        try CLI.fails(["report", path("nothing.json"), "--out", path("r")], mentions: [path("nothing.json"), "no such file"])
        try CLI.fails(["report", good, "--quantize", good, "--out", path("r")], status: 64, mentions: ["--quantize needs --bench"])
        try CLI.fails(["report", good, "--descent", path("nothing.json"), "--out", path("r")], mentions: [path("nothing.json"), "no such file"])
        // Another model and another dataset: a table each, in one report.
        let cifar = try resultFile("cifar.json") { $0["dataset"] = "cifar10"; $0["params"] = 579_786 }
        let both = try CLI.run(["report", good, cifar, "--out", path("report-two")])
        XCTAssertEqual(both.status, 0, both.text)
        XCTAssertTrue(both.output.contains("## vgg11 on fashion-mnist: 1 runs") && both.output.contains("## vgg11 on cifar10: 1 runs"), both.text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: path("report-two/widths-vgg11-cifar10.svg")))
    }

    /// Flags that cannot go together with a search's file, refused before any work.
    func testSearchFlagsThatCannotWork() throws {
        let vgg = try descentFile((0..<8).map { _ in (0.5, 0.5) }, name: "vgg.json")
        // A search of another net: named as such, not blamed on the target.
        try CLI.fails(["advise", "--model", "mobilenetv2", "--latency-ms", "25", "--descent", vgg], status: 64, mentions: [vgg, "vgg11", "mobilenetv2"])
        try CLI.fails(["widths", "--descent", vgg, "--target-mflops", "1", "--ratio", "0.5"], status: 64, mentions: ["--ratio"])
        // More channels a step than the net has: the search would end at once with no trajectory.
        try CLI.fails(["descend", "--model", "vgg11", "--dataset", "fashion-mnist", "--preset", "quick", "--prune-count", "100000",
                       "--out", path("d"), "--data-dir", path("no-data")], status: 64, mentions: ["--prune-count", "688"])
        // bench infer's --out is checked before the measurements.
        let blocker = path("blocker")
        try Data("x".utf8).write(to: URL(fileURLWithPath: blocker))
        try CLI.fails(["bench", "infer", "--model", "vgg11", "--ratios", "0.0625", "--warmup", "1", "--runs", "1", "--trials", "1", "--out", blocker],
                      status: 64, mentions: ["--out", blocker])
    }

    func testUnwritableOutputIsFoundBeforeAnyWork() throws {
        // A file where the folder should be: no permission trick, so it holds for root too.
        let blocker = path("blocker")
        try Data("x".utf8).write(to: URL(fileURLWithPath: blocker))
        try CLI.fails(["train", "--model", "vgg11", "--dataset", "fashion-mnist", "--ratio", "0.25", "--out", blocker + "/run",
                       "--data-dir", path("no-data")], mentions: [blocker])
        try CLI.fails(["descend", "--model", "vgg11", "--dataset", "fashion-mnist", "--out", blocker + "/run",
                       "--data-dir", path("no-data")], mentions: [blocker])
    }

    /// A dataset whose files cannot be trained on is an error of those files, not of the command
    /// line: exit status 1, the folder named, no usage text (flag errors get the usage and 64).
    func testUnusableDataIsAFileErrorNotAUsageError() throws {
        let data = path("fashion-one")
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try CLI.writeFashionMNIST(in: data, train: 1, test: 2)
        // With the default validation split too (its checks come after this one).
        let r = try CLI.fails(["train", "--model", "vgg11", "--dataset", "fashion-mnist", "--ratio", "0.25", "--epochs", "1",
                               "--data-dir", data, "--out", path("run")],
                              status: 1, mentions: [data, "holds 1 training image"])
        XCTAssertFalse(r.errors.contains("Usage:"), "a data error printed the usage: \(r.errors)")
    }
}
