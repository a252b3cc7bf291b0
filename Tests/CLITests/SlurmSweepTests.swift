import Foundation
import TestSupport
import XCTest

/// `sweep --executor slurm` on a real single-node Slurm brought up by scripts/slurm-local.sh
/// (Debian's slurm-wlm and munge, daemons started directly): a 4-entry sweep submitted as a job
/// array, every result arriving, `--status` following it, and a second submission finding
/// nothing left to run. Needs root (apt, /etc/slurm, the daemons); skipped without it, or when
/// NEURALSCALE_SKIP_SLURM is set.
final class SlurmSweepTests: XCTestCase {
    private var root = "", data = "", script = ""

    override func setUpWithError() throws {
        if ProcessInfo.processInfo.environment["NEURALSCALE_SKIP_SLURM"] != nil { throw XCTSkip("NEURALSCALE_SKIP_SLURM is set") }
        guard getuid() == 0 else { throw XCTSkip("bringing up a local Slurm needs root") }
        script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("scripts/slurm-local.sh").path
        let up = try CLI.runTool("/bin/bash", [script, "up"], timeout: 600)
        guard up.status == 0 else { throw XCTSkip("scripts/slurm-local.sh up failed: \(up.text.suffix(600))") }
        root = try CLI.folder("slurm")
        data = root + "/fashion"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try CLI.writeFashionMNIST(in: data)
    }

    override func tearDownWithError() throws {
        guard !script.isEmpty else { return }
        _ = try? CLI.runTool("/bin/bash", [script, "down"])
        try? FileManager.default.removeItem(atPath: root)
    }

    func testFourEntrySweepRunsAsAJobArray() throws {
        let out = root + "/study"
        let sweep = ["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--ratios", "0.0625,0.125", "--scalings", "uniform",
                     "--seeds", "0-1", "--epochs", "1", "--batch-size", "8", "--steps", "train", "--data-dir", data, "--out", out,
                     "--executor", "slurm", "--cpus-per-task", "1", "--jobs", "2", "--time", "00:10:00"]
        let submitted = try CLI.run(sweep)
        XCTAssertEqual(submitted.status, 0, submitted.text)
        XCTAssertTrue(submitted.output.contains("4 entries (array 0-3)"), submitted.output)
        let arrayScript = try FileManager.default.contentsOfDirectory(atPath: out + "/slurm").first { $0.hasPrefix("array-") }
        let text = try String(contentsOfFile: out + "/slurm/" + XCTUnwrap(arrayScript), encoding: .utf8)
        XCTAssertTrue(text.contains("#SBATCH --array=0-3%2") && text.contains("#SBATCH --time=00:10:00"), text)
        // Every result arrives.
        let results = ["r0.0625-s0", "r0.0625-s1", "r0.125-s0", "r0.125-s1"].map { "\(out)/vgg11-uniform-\($0)/train/result.json" }
        let started = Date()
        while !results.allSatisfy(FileManager.default.fileExists) && Date().timeIntervalSince(started) < 600 { sleep(1) }
        for r in results { XCTAssertTrue(FileManager.default.fileExists(atPath: r), "\(r) never arrived") }
        let status = try CLI.run(["sweep", "--out", out, "--status"])
        XCTAssertEqual(status.status, 0, status.text)
        XCTAssertTrue(status.output.contains("4 entries: 4 done"), status.output)
        XCTAssertTrue(status.output.contains("(job "), status.output)
        // Submitting again runs no entry: only the report.
        let again = try CLI.run(sweep)
        XCTAssertEqual(again.status, 0, again.text)
        XCTAssertTrue(again.output.contains("every entry is done"), again.output)
        // --status needs the plan, and says so.
        try CLI.fails(["sweep", "--out", root + "/nothing", "--status"], status: 64, mentions: ["sweep.json", "does not exist"])
    }
}
