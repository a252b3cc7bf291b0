import Foundation
import XCTest

/// `neuralscale prune` through the binary on a tiny Fashion-MNIST: a trained VGG-11 pruned to
/// half its MFLOPs, the checkpoint `stats`, `eval` and `export` read, and the bad inputs.
final class PruneCommandTests: XCTestCase {
    var root: String!

    override func setUpWithError() throws { root = try CLI.folder("prune") }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: root) }

    func testPruneToHalfTheMFLOPs() throws {
        let data = root + "/fashion"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try CLI.writeFashionMNIST(in: data, train: 80, test: 16)
        let train = try CLI.run(["train", "--model", "vgg11", "--dataset", "fashion-mnist", "--ratio", "0.125", "--epochs", "1",
                                 "--batch-size", "8", "--data-dir", data, "--out", root + "/run"])
        XCTAssertEqual(train.status, 0, train.text)
        let before = try json(CLI.run(["stats", "--checkpoint", root + "/run/best.h5", "--json"]))
        let mflops = try XCTUnwrap(before["mflops"] as? Double)
        let r = try CLI.run(["prune", "--checkpoint", root + "/run/best.h5", "--target-mflops", String(mflops / 2), "--prune-every", "2",
                             "--step-count", "4", "--batch-size", "8", "--data-dir", data, "--fine-tune-epochs", "1", "--no-latency",
                             "--json"], timeout: 600)
        let report = try json(r)
        let after = try json(CLI.run(["stats", "--checkpoint", root + "/run/pruned/pruned.h5", "--json"]))
        XCTAssertLessThanOrEqual(try XCTUnwrap(after["mflops"] as? Double), mflops / 2)
        XCTAssertEqual(after["widths"] as? [Int], (report["after"] as? [String: Any])?["widths"] as? [Int])
        XCTAssertGreaterThan(report["pruningSteps"] as? Int ?? 0, 0)
        XCTAssertNotNil(report["testAccuracyFineTuned"] as? Double)
        XCTAssertNotNil(report["testAccuracyPruned"] as? Double)
        // With a channel multiple every group ends a multiple of it (or narrower), still in budget.
        let k4 = try json(CLI.run(["prune", "--checkpoint", root + "/run/best.h5", "--target-mflops", String(mflops / 2), "--prune-every", "2",
                                   "--step-count", "4", "--batch-size", "8", "--data-dir", data, "--fine-tune-epochs", "0", "--no-latency",
                                   "--channel-multiple", "4", "--out", root + "/k4", "--json"], timeout: 600))
        let widths = try XCTUnwrap((k4["after"] as? [String: Any])?["widths"] as? [Int])
        XCTAssertTrue(widths.allSatisfy { $0 % 4 == 0 || $0 < 4 }, "\(widths)")
        XCTAssertLessThanOrEqual(try XCTUnwrap((k4["after"] as? [String: Any])?["mflops"] as? Double), mflops / 2)
        XCTAssertNil(k4["testAccuracyFineTuned"] as? Double)
        // L1-magnitude importance reaches the target too. Into a folder a killed prune left a
        // temporary file and an old pruned.h5 in: the temporary file goes, the checkpoint is new.
        try FileManager.default.createDirectory(atPath: root + "/l1", withIntermediateDirectories: true)
        let stale = root + "/l1/.pruned.h5.tmp-999999999"
        try Data("x".utf8).write(to: URL(fileURLWithPath: stale))
        try Data("old".utf8).write(to: URL(fileURLWithPath: root + "/l1/pruned.h5"))
        let l1 = try json(CLI.run(["prune", "--checkpoint", root + "/run/best.h5", "--keep", "0.6", "--importance", "magnitude",
                                   "--prune-every", "2", "--step-count", "3", "--batch-size", "8", "--data-dir", data,
                                   "--fine-tune-epochs", "0", "--no-latency", "--out", root + "/l1", "--json"], timeout: 600))
        XCTAssertEqual(l1["importance"] as? String, "magnitude")
        let kept = try XCTUnwrap((l1["after"] as? [String: Any])?["widths"] as? [Int]).reduce(0, +)
        let all = try XCTUnwrap((l1["before"] as? [String: Any])?["widths"] as? [Int]).reduce(0, +)
        XCTAssertLessThanOrEqual(Double(kept), 0.6 * Double(all))
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale), "a killed prune's temporary file is removed")
        XCTAssertNotEqual(try Data(contentsOf: URL(fileURLWithPath: root + "/l1/pruned.h5")), Data("old".utf8))
        try CLI.fails(["prune", "--checkpoint", root + "/run/best.h5", "--keep", "0.5", "--importance", "random"], status: 64,
                      mentions: ["--importance"])
        // Pruning a pruned.h5 again into its own folder would remove it before the new one is written.
        try CLI.fails(["prune", "--checkpoint", root + "/l1/pruned.h5", "--keep", "0.9", "--data-dir", data, "--out", root + "/l1"], status: 64,
                      mentions: ["--out", "--checkpoint"])
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/l1/pruned.h5"))
        // Every command reads the pruned checkpoint as a trained net.
        let eval = try CLI.run(["eval", "--checkpoint", root + "/run/pruned/pruned.h5", "--data-dir", data])
        XCTAssertEqual(eval.status, 0, eval.text)
        let export = try CLI.run(["export", "--checkpoint", root + "/run/pruned/pruned.h5", "--onnx", root + "/p.onnx", "--data-dir", data])
        XCTAssertEqual(export.status, 0, export.text)
        XCTAssertTrue(export.text.contains("verification passed"), export.text)

        try CLI.fails(["prune", "--checkpoint", root + "/run/best.h5", "--target-mflops", "1e9", "--data-dir", data, "--no-latency"],
                      status: 64, mentions: ["already meets"])
        try CLI.fails(["prune", "--checkpoint", root + "/run/best.h5"], status: 64, mentions: ["one target"])
        try CLI.fails(["prune", "--checkpoint", root + "/run/best.h5", "--keep", "1.5"], status: 64, mentions: ["--keep"])
        try CLI.fails(["prune", "--checkpoint", root + "/none.h5", "--keep", "0.5"], mentions: ["none.h5"])
        // One prune per folder: another holding it is named; under mpirun it is refused (each
        // process would prune into the same folder).
        let held = root + "/held"
        try FileManager.default.createDirectory(atPath: held, withIntermediateDirectories: true)
        let fd = open(held + "/.neuralscale.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0)
        defer { close(fd) }
        let keep = ["prune", "--checkpoint", root + "/run/best.h5", "--keep", "0.9", "--data-dir", data, "--no-latency"]
        try CLI.fails(keep + ["--out", held], mentions: [held, "in use by another run"])
        let mpi = try CLI.run(keep + ["--out", root + "/mpi"], environment: ["OMPI_COMM_WORLD_SIZE": "2"])
        XCTAssertEqual(mpi.status, 64, mpi.text)
        XCTAssertTrue(mpi.text.contains("prune runs in one process, not under mpirun"), mpi.text)
        // Slurm's srun with PMIx sets no Open MPI variable: its task count says it.
        let srun = try CLI.run(keep + ["--out", root + "/srun"], environment: ["PMIX_RANK": "0", "SLURM_STEP_NUM_TASKS": "3"])
        XCTAssertEqual(srun.status, 64, srun.text)
        XCTAssertTrue(srun.text.contains("not under mpirun or srun (3 processes"), srun.text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/srun/prune.json"))
        let pmi = try CLI.run(keep + ["--out", root + "/pmi"], environment: ["PMI_SIZE": "2"])
        XCTAssertEqual(pmi.status, 64, pmi.text)
        XCTAssertTrue(pmi.text.contains("(2 processes"), pmi.text)
    }

    /// A residual net pruned as it comes turns identity shortcuts whose ends lost different
    /// channels into selections (1x1 0/1 convs in the exported graph); with --couple-residuals
    /// every identity shortcut stays one and the exported graph has no selection.
    func testCoupledPruneKeepsIdentityShortcuts() throws {
        let data = root + "/fashion"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try CLI.writeFashionMNIST(in: data, train: 64, test: 16)
        let train = try CLI.run(["train", "--model", "preact_resnet18", "--dataset", "fashion-mnist", "--ratio", "0.125", "--epochs", "1",
                                 "--batch-size", "8", "--data-dir", data, "--out", root + "/run"], timeout: 600)
        XCTAssertEqual(train.status, 0, train.text)
        var selections: [Bool: Int] = [:]
        for coupled in [false, true] {
            let out = root + (coupled ? "/coupled" : "/plain")
            let report = try json(CLI.run(["prune", "--checkpoint", root + "/run/best.h5", "--keep", "0.6", "--prune-every", "2",
                                           "--step-count", "3", "--batch-size", "8", "--data-dir", data, "--fine-tune-epochs", "0",
                                           "--no-latency", "--out", out, "--json"] + (coupled ? ["--couple-residuals"] : []), timeout: 600))
            XCTAssertEqual(report["coupledResiduals"] as? Bool, coupled ? true : nil)
            let stats = try json(CLI.run(["stats", "--checkpoint", out + "/pruned.h5", "--json"]))
            let shortcuts = try XCTUnwrap(stats["shortcuts"] as? [String: Int])
            selections[coupled] = shortcuts["selection"]
            let widths = try XCTUnwrap(stats["widths"] as? [Int])
            if coupled {
                XCTAssertEqual(shortcuts, ["identity": 5, "projection": 3, "selection": 0], "\(widths)")
                for stream in [[0, 2, 4], [6, 8], [10, 12], [14, 16]] {
                    XCTAssertEqual(Set(stream.map { widths[$0] }).count, 1, "stream \(stream): \(widths)")
                }
            }
            let export = try CLI.run(["export", "--checkpoint", out + "/pruned.h5", "--onnx", out + "/p.onnx", "--data-dir", data])
            XCTAssertTrue(export.text.contains("verification passed"), export.text)
            let names = try CLI.runTool("/usr/bin/env", ["python3", "-c",
                "import onnx, sys; print(sum('shortcut.select' in i.name for i in onnx.load(sys.argv[1]).graph.initializer))", out + "/p.onnx"])
            XCTAssertEqual(Int(names.output.trimmingCharacters(in: .whitespacesAndNewlines)), shortcuts["selection"], names.text)
        }
        XCTAssertGreaterThan(selections[false] ?? 0, 0, "pruned as it comes, some identity shortcut's ends differ")
    }

    func json(_ r: CLIRun) throws -> [String: Any] {
        XCTAssertEqual(r.status, 0, r.text)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any], r.text)
    }
}
