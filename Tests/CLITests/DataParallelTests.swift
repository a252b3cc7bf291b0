import Autodiff
import Checkpoint
import Foundation
import Nets
import TestSupport
import XCTest

/// `train` and `descend` under `mpirun` (Open MPI, 2 and 3 processes on this host): what one
/// process computes, to rounding; bit-identical reruns with as many processes; resumption with
/// another number of processes; a process killed ends the job.
///
/// Skipped where `mpirun` or an MPI build is missing, except under CI (scripts/install-deps.sh
/// installs Open MPI there).
final class DataParallelTests: XCTestCase {
    private var root = "", data = ""

    override func setUpWithError() throws {
        try requireMPI()
        root = try CLI.folder("mpi")
        data = root + "/fashion"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try CLI.writeFashionMNIST(in: data, train: 96, test: 24)
    }

    override func tearDown() { try? FileManager.default.removeItem(atPath: root) }

    /// `mpirun` on PATH and a `neuralscale` built with MPI, or a skip (a failure under CI).
    private func requireMPI() throws {
        let which = try CLI.runTool("/usr/bin/env", ["which", "mpirun"])
        var missing: String?
        if which.status != 0 {
            missing = "mpirun is not on PATH"
        } else {
            let probe = try mpirun(1, ["bench", "conv", "--help"])
            if probe.status != 0 || probe.text.contains("built without MPI") { missing = "neuralscale runs no MPI: \(probe.text.prefix(300))" }
        }
        guard let missing else { return }
        if isContinuousIntegration { XCTFail("CI is set, but \(missing); scripts/install-deps.sh installs Open MPI"); return }
        throw XCTSkip(missing)
    }

    private func mpirun(_ n: Int, _ arguments: [String], environment: [String: String] = [:], timeout: Double = 300) throws -> CLIRun {
        try CLI.runTool("/usr/bin/env", ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "\(n)", CLI.executable] + arguments,
                        environment: environment, timeout: timeout)
    }

    private func train(out: String, epochs: Int = 1, extra: [String] = []) -> [String] {
        ["train", "--model", "vgg11", "--dataset", "fashion-mnist", "--ratio", "0.125", "--epochs", "\(epochs)",
         "--batch-size", "12", "--lr", "0.01", "--data-dir", data, "--out", out] + extra
    }

    /// The largest relative difference, max|a - b| / max|a|, over the weights of two
    /// checkpoints (the conv biases before batch norm aside: their gradient is zero, their
    /// values rounding noise), and whether every tensor is bit-identical.
    private func compare(_ a: String, _ b: String) throws -> (weights: Double, identical: Bool) {
        let x = try Checkpoint.load(a).network.state, y = try Checkpoint.load(b).network.state
        XCTAssertEqual(x.map(\.name), y.map(\.name))
        var worst = 0.0, identical = true
        for (s, t) in zip(x, y) {
            identical = identical && s.tensor.values == t.tensor.values
            guard s.name.hasSuffix("weight") else { continue }
            let scale = Double(s.tensor.values.map(abs).max() ?? 0)
            let diff = zip(s.tensor.values, t.tensor.values).map { Double(abs($0 - $1)) }.max() ?? 0
            worst = max(worst, diff / max(scale, 1e-12))
        }
        return (worst, identical)
    }

    func testTwoAndThreeProcessesTrainAsOne() throws {
        let one = try CLI.run(train(out: root + "/one", epochs: 2))
        XCTAssertEqual(one.status, 0, one.text)
        for n in [2, 3] {
            let r = try mpirun(n, train(out: root + "/n\(n)", epochs: 2))
            XCTAssertEqual(r.status, 0, r.text)
            XCTAssertTrue(r.errors.contains("data-parallel: \(n) processes"), r.errors)
            // Process 0 alone reports: one line per epoch, not n.
            for epoch in ["epoch 1/2", "epoch 2/2"] { XCTAssertEqual(r.text.components(separatedBy: epoch).count - 1, 1, r.text) }
            let (worst, _) = try compare(root + "/one/last.h5", root + "/n\(n)/last.h5")
            // 12 steps (2 epochs of 6): 3.1e-6 with 2 processes, 3.2e-6 with 3 (the summation order).
            XCTAssertLessThan(worst, 1e-5, "\(n) processes against one: weights differ by \(worst) (relative)")
            XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/n\(n)/result.json"))
        }
    }

    /// Reruns with 2 processes are bit-identical, and so is the gradient sum however it is cut
    /// into buckets and overlapped with the backward pass: one bucket (this net's 0.6 MB under
    /// the default 4 MB), buckets of 10 KB (about 30, started while the pass goes on), or none
    /// (the sum after the pass).
    func testRerunWithAsManyProcessesIsBitIdentical() throws {
        for (out, mb) in [("a", nil), ("b", nil), ("small-buckets", "0.01"), ("after-backward", "0")] {
            let r = try mpirun(2, train(out: root + "/" + out, epochs: 2), environment: mb.map { ["NEURALSCALE_GRADIENT_BUCKET_MB": $0] } ?? [:])
            XCTAssertEqual(r.status, 0, r.text)
        }
        XCTAssertTrue(try compare(root + "/a/last.h5", root + "/b/last.h5").identical, "two runs with 2 processes differ")
        for out in ["small-buckets", "after-backward"] {
            XCTAssertTrue(try compare(root + "/a/last.h5", root + "/\(out)/last.h5").identical, "\(out): not the bits of the default sum")
        }
        XCTAssertEqual(FileManager.default.contents(atPath: root + "/a/result.json").map { String(decoding: $0, as: UTF8.self) }?
                           .replacingOccurrences(of: #""wallSeconds" : [0-9.e+-]+"#, with: "", options: .regularExpression),
                       FileManager.default.contents(atPath: root + "/b/result.json").map { String(decoding: $0, as: UTF8.self) }?
                           .replacingOccurrences(of: #""wallSeconds" : [0-9.e+-]+"#, with: "", options: .regularExpression))
    }

    /// Stopped after epoch 1 with 2 processes (as a Ctrl-C would: NEURALSCALE_STOP_AT), resumed
    /// with 3: the same as a run resumed with 2, to rounding.
    func testResumeWithAnotherNumberOfProcesses() throws {
        for out in ["three", "two"] {
            let stopped = try mpirun(2, train(out: root + "/" + out, epochs: 2), environment: ["NEURALSCALE_STOP_AT": "2:0"])
            XCTAssertNotEqual(stopped.status, 0)
            XCTAssertTrue(stopped.errors.contains("interrupted at epoch 2, step 0"), stopped.errors)
            XCTAssertEqual(stopped.errors.components(separatedBy: "interrupted at epoch 2").count - 1, 1,
                           "process 0 alone reports the stop: \(stopped.errors)")
        }
        let three = try mpirun(3, train(out: root + "/three", epochs: 2, extra: ["--resume"]))
        XCTAssertEqual(three.status, 0, three.text)
        let two = try mpirun(2, train(out: root + "/two", epochs: 2, extra: ["--resume"]))
        XCTAssertEqual(two.status, 0, two.text)
        let (worst, _) = try compare(root + "/two/last.h5", root + "/three/last.h5")
        XCTAssertLessThan(worst, 1e-4, "resumed with 3 processes against 2: weights differ by \(worst)")
        let metrics = try String(contentsOfFile: root + "/three/metrics.jsonl", encoding: .utf8)
        XCTAssertEqual(metrics.split(separator: "\n").count, 2, metrics)
    }

    /// A search with 2 processes: every process prunes the same channels (the run checks the
    /// gates agree after every pruning step), a rerun writes the same trajectory and
    /// descent.json, and a search stopped mid-iteration resumes with 3 processes.
    func testSearchReproducesAndResumesWithAnotherNumberOfProcesses() throws {
        let search = ["descend", "--model", "vgg11", "--dataset", "fashion-mnist", "--data-dir", data, "--iterations", "2",
                      "--warmup", "0", "--prune-every", "2", "--prune-count", "8", "--batch-size", "12", "--base-ratio", "0.125"]
        for out in ["a", "b"] {
            let r = try mpirun(2, search + ["--out", root + "/" + out])
            XCTAssertEqual(r.status, 0, r.text)
        }
        for file in ["iteration-0-trajectory.csv", "iteration-1-trajectory.csv", "iteration-1-fit.json", "descent.json"] {
            XCTAssertEqual(FileManager.default.contents(atPath: root + "/a/" + file), FileManager.default.contents(atPath: root + "/b/" + file),
                           "\(file) differs between two searches with 2 processes")
        }
        let stopped = try mpirun(2, search + ["--out", root + "/c"], environment: ["NEURALSCALE_STOP_AT": "1:0:3"])
        XCTAssertNotEqual(stopped.status, 0, stopped.text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/c/state.h5"))
        let resumed = try mpirun(3, search + ["--out", root + "/c", "--resume"])
        XCTAssertEqual(resumed.status, 0, resumed.text)
        XCTAssertEqual(FileManager.default.contents(atPath: root + "/a/iteration-0-trajectory.csv"),
                       FileManager.default.contents(atPath: root + "/c/iteration-0-trajectory.csv"),
                       "iteration 0 (finished before the stop) as the uninterrupted search wrote it")
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/c/descent.json"))
    }

    /// A search with 2 processes prunes the channels one process prunes, while rounding leaves
    /// the Taylor ranks apart: the same gates after 4 pruning steps (stopped after 9 batches), weights
    /// within 1e-4. (Scores summed from each process's own gate gradients instead of the summed
    /// ones would pick other channels from the first step.) Later the runs part: the weights
    /// differ in the 6th digit by then, enough to swap two channels whose scores are that close,
    /// and every later step depends on the swap; each process count reproduces its own search.
    func testSearchPrunesAsOneProcessWhileRanksAreApart() throws {
        let search = ["descend", "--model", "vgg11", "--dataset", "fashion-mnist", "--data-dir", data, "--iterations", "1",
                      "--warmup", "0", "--prune-every", "2", "--prune-count", "8", "--batch-size", "12", "--base-ratio", "0.125"]
        // 8 batches an epoch: stopped before the 10th.
        let stop = ["NEURALSCALE_STOP_AT": "0:1:1"]
        let one = try CLI.run(search + ["--out", root + "/one"], environment: stop)
        XCTAssertTrue(one.errors.contains("interrupted at epoch 2, step 1"), one.text + one.errors)
        let two = try mpirun(2, search + ["--out", root + "/two"], environment: stop)
        XCTAssertTrue(two.errors.contains("interrupted at epoch 2, step 1"), two.text + two.errors)
        let a = try Checkpoint.load(root + "/one/state.h5").network.state, b = try Checkpoint.load(root + "/two/state.h5").network.state
        XCTAssertEqual(a.map(\.name), b.map(\.name))
        var gates = 0, pruned = 0
        for (s, t) in zip(a, b) where s.kind == .channelScale {
            gates += 1
            pruned += s.tensor.values.filter { $0 == 0 }.count
            XCTAssertEqual(s.tensor.values, t.tensor.values, "\(s.name): 2 processes pruned other channels than one")
        }
        XCTAssertEqual(gates, 8)
        XCTAssertEqual(pruned, 32, "4 pruning steps of 8 channels")
        XCTAssertLessThan(try compare(root + "/one/state.h5", root + "/two/state.h5").weights, 1e-4)
    }

    /// Batches smaller than the process count are refused up front (a search ran empty epochs
    /// without end, a training trained nothing and reported success, a benchmark trapped), and a
    /// training set too small to give every process an image stops the run instead of looping.
    func testBatchesSmallerThanTheProcessesAreRefused() throws {
        try requireMPI()
        let search = ["descend", "--model", "vgg11", "--dataset", "fashion-mnist", "--preset", "quick", "--base-ratio", "0.125",
                      "--iterations", "1", "--data-dir", data]
        for (arguments, out) in [(train(out: root + "/b2", extra: ["--batch-size", "2"]), root + "/b2"),
                                 (search + ["--batch-size", "2", "--out", root + "/d2"], root + "/d2"),
                                 (["bench", "train", "--model", "vgg11", "--ratio", "0.125", "--batch-size", "2", "--steps", "1"], "")] {
            let r = try mpirun(3, arguments, timeout: 120)
            XCTAssertNotEqual(r.status, 0, r.text)
            XCTAssertTrue(r.text.contains("--batch-size 2 is smaller than the 3 processes"), r.text)
            if !out.isEmpty { XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/result.json")) }
        }
        let r = try mpirun(3, train(out: root + "/s2", extra: ["--subset", "2"]), timeout: 120)
        XCTAssertNotEqual(r.status, 0, r.text)
        XCTAssertTrue(r.text.contains("no batch of the training set has 3 images"), r.text)
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/s2/result.json"))
    }

    /// A NEURALSCALE_THREADS that is not a thread count leaves each process its share of the
    /// cores (it gave every process all of them).
    func testAnUnusableThreadCountKeepsTheShare() throws {
        try requireMPI()
        let r = try mpirun(2, ["bench", "train", "--model", "vgg11", "--ratio", "0.0625", "--batch-size", "4", "--steps", "1"],
                           environment: ["NEURALSCALE_THREADS": "abc"], timeout: 120)
        XCTAssertEqual(r.status, 0, r.text)
        let share = max(1, ProcessInfo.processInfo.activeProcessorCount / 2)
        XCTAssertTrue(r.text.contains("2 processes, \(share) threads each"), r.text)
    }

    /// A process killed mid-run ends the job with an error, no hang, and the last checkpoint
    /// stays valid (and resumes).
    func testKilledProcessEndsTheJob() throws {
        let out = root + "/killed"
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", CLI.executable]
            + train(out: out, epochs: 200)
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        // Wait for a first checkpoint, then kill process 1.
        let started = Date()
        while !FileManager.default.fileExists(atPath: out + "/last.h5") && Date().timeIntervalSince(started) < 120 { usleep(100_000) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/last.h5"), "no checkpoint within 120 s")
        let pids = try CLI.runTool("/usr/bin/env", ["pgrep", "-f", "--", "--out \(out)"])
        let ranks = pids.output.split(separator: "\n").compactMap { Int32($0) }.filter { $0 != p.processIdentifier }
        XCTAssertGreaterThanOrEqual(ranks.count, 2, "processes: \(pids.output)")
        if let victim = ranks.last { kill(victim, SIGKILL) }
        let killedAt = Date()
        while p.isRunning && Date().timeIntervalSince(killedAt) < 60 { usleep(100_000) }
        XCTAssertFalse(p.isRunning, "the job still runs 60 s after a process died")
        if p.isRunning { p.terminate() }
        p.waitUntilExit()
        XCTAssertNotEqual(p.terminationStatus, 0)
        XCTAssertNoThrow(try Checkpoint.load(out + "/last.h5"), "the last checkpoint must stay valid")
    }
}
