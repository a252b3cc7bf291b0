import Foundation
import XCTest

/// `neuralscale sweep` through the binary on a tiny Fashion-MNIST: stopped by a signal in the
/// middle and run again, it finishes every entry exactly once; a failing entry does not stop the
/// others.
final class SweepTests: XCTestCase {
    var root: String!
    var data: String!

    override func setUpWithError() throws {
        root = try CLI.folder("sweep")
        data = root + "/fashion"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try CLI.writeFashionMNIST(in: data)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: root) }

    /// Installed under another name (a copy in another folder), the tool still runs its child
    /// processes with itself: a sweep's steps here (the engine's measurements of `bench infer`
    /// likewise). It used to look for a file named `neuralscale` and refuse to start.
    func testRenamedExecutableRunsItsChildren() throws {
        // Three folders deep in the test's own folder: the old search for a `neuralscale` up to
        // three folders above it finds none there.
        let renamed = root + "/a/b/bin/ns"
        try FileManager.default.createDirectory(atPath: root + "/a/b/bin", withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: CLI.executable, toPath: renamed)
        let r = try CLI.runTool(renamed, ["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--ratios", "0.125",
                                          "--scalings", "uniform", "--epochs", "1", "--steps", "train", "--data-dir", data,
                                          "--out", root + "/sweep"])
        XCTAssertEqual(r.status, 0, r.text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/sweep/vgg11-uniform-r0.125-s0/train/best.h5"), r.text)
    }

    /// A sweep given `NEURALSCALE_THREADS` divides those threads among its jobs, not the cores, and
    /// its bench step runs both backends on them (the steps once had the cores over --jobs, and
    /// ONNX Runtime every core).
    func testStepsShareTheThreadsTheSweepWasGiven() throws {
        let out = root + "/threads"
        let r = try CLI.run(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--ratios", "0.0625", "--scalings", "uniform",
                             "--epochs", "1", "--batch-size", "8", "--steps", "train,bench", "--data-dir", data, "--bench-trials", "1",
                             "--jobs", "2", "--out", out], timeout: 300, environment: ["NEURALSCALE_THREADS": "4"])
        XCTAssertEqual(r.status, 0, r.text)
        let bench = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath:
            out + "/vgg11-uniform-r0.0625-s0/bench/bench-infer.json"))) as? [String: Any])
        // 4 threads over 2 jobs: 2 a step, whatever this machine's cores.
        XCTAssertEqual((bench["machine"] as? [String: Any])?["threads"] as? Int, 2, "\(bench)")
        let timings = try XCTUnwrap(bench["timings"] as? [[String: Any]])
        XCTAssertEqual(Set(timings.compactMap { $0["backend"] as? String }), ["swift", "ort"])
        XCTAssertEqual(timings.map { $0["threads"] as? Int }, timings.map { _ in 2 }, "\(timings)")
    }

    func sweep(_ out: String, _ extra: [String] = []) -> [String] {
        ["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--ratios", "0.0625,0.125", "--scalings", "uniform", "--seeds", "0-1",
         "--epochs", "2", "--batch-size", "8", "--data-dir", data, "--calibration", "10", "--bench-trials", "1", "--out", out] + extra
    }

    func testStoppedAndResumedFinishesEveryEntryOnce() throws {
        let out = root + "/study"
        let dry = try CLI.run(sweep(out, ["--dry-run"]))
        XCTAssertEqual(dry.status, 0, dry.text)
        XCTAssertTrue(dry.output.contains("sweep: 4 entries"), dry.text)
        let entries = ["vgg11-uniform-r0.0625-s0", "vgg11-uniform-r0.0625-s1", "vgg11-uniform-r0.125-s0", "vgg11-uniform-r0.125-s1"]
        XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/\(entries[0])/train"), "a dry run runs nothing")

        // Start, wait for the first entry to finish, then stop it with SIGTERM.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.executable)
        p.arguments = sweep(out)
        let errors = root + "/sweep.err"
        _ = FileManager.default.createFile(atPath: errors, contents: nil)
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle(forWritingAtPath: errors)
        try p.run()
        let started = Date()
        func finished() -> [String] { entries.filter { FileManager.default.fileExists(atPath: "\(out)/\($0)/bench/bench-infer.json") } }
        while finished().isEmpty && p.isRunning && Date().timeIntervalSince(started) < 300 { usleep(100_000) }
        let first = try XCTUnwrap(finished().first, "no entry finished: " + ((try? String(contentsOfFile: errors, encoding: .utf8)) ?? ""))
        let firstResult = try Data(contentsOf: URL(fileURLWithPath: "\(out)/\(first)/train/result.json"))
        p.terminate()
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "ends as SIGTERM would")
        // No step goes on running after the sweep ended (each holds its run folder's lock).
        usleep(300_000)
        for e in entries {
            let lock = "\(out)/\(e)/train/.neuralscale.lock"
            if let fd = Optional(open(lock, O_RDWR)), fd >= 0 {
                XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0, "\(e)'s training still runs")
                close(fd)
            }
        }

        let again = try CLI.run(sweep(out), timeout: 600)
        XCTAssertEqual(again.status, 0, again.text)
        XCTAssertTrue(again.output.contains("4 of 4 entries done, 0 failed"), again.text)
        XCTAssertTrue(again.errors.contains("\(first) skipped"), again.text)
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: "\(out)/\(first)/train/result.json")), firstResult, "a finished entry is not run again")
        for e in entries {
            for file in ["train/result.json", "fp32.onnx", "int8.onnx", "quantize.json", "bench/bench-infer.json"] {
                XCTAssertTrue(FileManager.default.fileExists(atPath: "\(out)/\(e)/\(file)"), "\(e)/\(file)")
            }
            // Each step ran to its end once: one successful run per log.
            for step in ["export", "quantize", "bench"] {
                let log = try String(contentsOfFile: "\(out)/\(e)/logs/\(step).log", encoding: .utf8)
                XCTAssertEqual(log.components(separatedBy: "exit status 0").count - 1, 1, "\(e) \(step): \(log)")
            }
        }
        let status = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/sweep-status.json"))) as? [String: Any])
        XCTAssertEqual((status["entries"] as? [[String: Any]])?.compactMap { $0["state"] as? String }.filter { $0 == "failed" }, [])
        let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report/report.json"))) as? [String: Any])
        let tables = try XCTUnwrap(report["reports"] as? [[String: Any]], "\(report.keys)")
        XCTAssertEqual(tables.count, 1, "one model on one dataset")
        XCTAssertEqual((tables.first?["rows"] as? [[String: Any]])?.compactMap { $0["runs"] as? Int }, [2, 2], "two ratios, two seeds each")
        // The device section: every entry's fp32 and int8 figures, on both backends.
        let device = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/report/device.json"))) as? [String: Any])
        XCTAssertEqual((device["runs"] as? [Any])?.count, 4 * 3, "\(device)")
        XCTAssertTrue(try String(contentsOfFile: out + "/report/report.md", encoding: .utf8).contains("## Devices"))
        // Another plan into the same folder is refused.
        try CLI.fails(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--ratios", "0.5", "--scalings", "uniform", "--out", out],
                      status: 64, mentions: ["another plan"])
    }

    func testAFailedEntryDoesNotStopTheOthers() throws {
        let out = root + "/failing"
        // Ratio 0.001 gives widths of 0: its training fails; the other entry goes on.
        let r = try CLI.run(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--ratios", "0.001,0.0625", "--scalings", "uniform",
                             "--epochs", "1", "--batch-size", "8", "--steps", "train", "--data-dir", data, "--jobs", "2", "--out", out], timeout: 300)
        XCTAssertEqual(r.status, 1, r.text)
        XCTAssertTrue(r.output.contains("1 of 2 entries done, 1 failed") && r.output.contains("vgg11-uniform-r0.001-s0: failed at train"), r.text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/vgg11-uniform-r0.0625-s0/train/result.json"))
        let log = try String(contentsOfFile: out + "/vgg11-uniform-r0.001-s0/logs/train.log", encoding: .utf8)
        XCTAssertTrue(log.contains("--ratio 0.001"), log)
        // A record left "running" by a killed sweep: --status says interrupted when its process
        // is gone from this host, running while it lives.
        let recordPath = out + "/vgg11-uniform-r0.001-s0/sweep-entry.json"
        var record = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: recordPath))) as? [String: Any])
        XCTAssertNotNil(record["pid"], "\(record)")
        for (pid, state) in [(Int32(999_999_999), "interrupted"), (ProcessInfo.processInfo.processIdentifier, "running")] {
            record["state"] = "running"
            record["pid"] = pid
            try JSONSerialization.data(withJSONObject: record).write(to: URL(fileURLWithPath: recordPath))
            let status = try CLI.run(["sweep", "--out", out, "--status"])
            let line = status.output.split(separator: "\n").first { $0.contains("vgg11-uniform-r0.001-s0") }.map(String.init) ?? ""
            XCTAssertTrue(line.contains(state), status.text)
        }
    }

    /// A step's folder still held by another process (the step a killed sweep left behind,
    /// finishing its epoch): the sweep run again waits for it instead of failing the entry.
    /// The run waited for may write the checkpoint that makes the step a --resume (a step killed
    /// in its first epoch's validation pass): the step's command is decided after the wait.
    func testAStepWaitsForItsFolderToBeLetGo() throws {
        let out = root + "/held", folder = out + "/vgg11-uniform-r0.0625-s0/train", aside = root + "/aside"
        let sweep = ["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--ratios", "0.0625", "--scalings", "uniform",
                     "--epochs", "1", "--batch-size", "8", "--steps", "train", "--data-dir", data!, "--out", out]
        XCTAssertEqual(try CLI.run(sweep, timeout: 300).status, 0)
        // The folder as the leftover run found it, before its checkpoint.
        let fm = FileManager.default
        try fm.createDirectory(atPath: aside, withIntermediateDirectories: true)
        for name in ["last.h5", "best.h5"] { try fm.moveItem(atPath: folder + "/" + name, toPath: aside + "/" + name) }
        try fm.removeItem(atPath: folder + "/result.json")
        let fd = open(folder + "/.neuralscale.lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        XCTAssertGreaterThanOrEqual(fd, 0)
        XCTAssertEqual(flock(fd, LOCK_EX | LOCK_NB), 0)
        let holder = "\(getpid())\n"
        _ = ftruncate(fd, 0)
        _ = holder.withCString { pwrite(fd, $0, strlen($0), 0) }
        DispatchQueue.global().asyncAfter(deadline: .now() + 3) {
            for name in ["best.h5", "last.h5"] { try? fm.copyItem(atPath: aside + "/" + name, toPath: folder + "/" + name) }
            flock(fd, LOCK_UN)
            close(fd)
        }
        let r = try CLI.run(sweep, timeout: 300)
        XCTAssertEqual(r.status, 0, r.text)
        let log = try String(contentsOfFile: out + "/vgg11-uniform-r0.0625-s0/logs/train.log", encoding: .utf8)
        XCTAssertTrue(log.contains("waiting for the run in \(folder) (PID \(getpid()))"), log)
        let after = log.components(separatedBy: "waiting for the run in").last ?? ""
        XCTAssertTrue(after.contains("--resume"), "the step resumes what the run waited for left: \(log)")
        XCTAssertTrue(fm.fileExists(atPath: folder + "/result.json"))
    }

    /// A sweep that runs its own search hands the search's descent.json to report (for the
    /// time per iteration); int8 accuracy goes to report only with bench files to go with it.
    func testPlanPassesSearchesAndQuantizeToReport() throws {
        let out = root + "/plan"
        let r = try CLI.run(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--ratios", "0.5", "--scalings", "uniform,neuralscale",
                             "--steps", "train,export,quantize", "--data-dir", data, "--out", out, "--dry-run"])
        XCTAssertEqual(r.status, 0, r.text)
        let plan = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/sweep.json"))) as? [String: Any])
        let report = try XCTUnwrap((plan["report"] as? [String: Any])?["arguments"] as? [String], "\(plan.keys)")
        let descent = try XCTUnwrap(report.firstIndex(of: "--descent"), "\(report)")
        XCTAssertEqual(report[descent + 1], out + "/search-vgg11/descent.json")
        XCTAssertFalse(report.contains("--quantize"), "no bench step: \(report)")
        // The default search is descend's own defaults (it has no preset named "paper"); quick adds its preset.
        let search = try XCTUnwrap((plan["entries"] as? [[String: Any]])?.first { ($0["id"] as? String) == "search-vgg11" }, "\(plan)")
        let descend = try XCTUnwrap((search["steps"] as? [[String: Any]])?.first?["arguments"] as? [String], "\(search)")
        XCTAssertEqual(Array(descend.prefix(5)), ["descend", "--model", "vgg11", "--dataset", "fashion-mnist"])
        XCTAssertFalse(descend.contains("--preset"), "\(descend)")
        let quick = try CLI.run(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--scalings", "neuralscale", "--search-preset", "quick",
                                 "--out", root + "/quick", "--dry-run"])
        XCTAssertTrue(quick.text.contains("descend --model vgg11 --dataset fashion-mnist --preset quick --out"), quick.text)
    }

    /// A sweep's steps end with it, even when it is SIGKILLed: each is started with the sweep's
    /// PID (NEURALSCALE_PARENT_PID) and asks to be sent SIGTERM when its parent dies; one whose
    /// named parent is not its parent (already gone) ends at once, and with its own parent named
    /// it runs as ever (the sweeps above run every step that way).
    func testAStepEndsWithItsSweep() throws {
        let orphan = try CLI.run(["stats", "--model", "vgg11", "--dataset", "cifar10", "--ratio", "0.5"],
                                 environment: ["NEURALSCALE_PARENT_PID": "1"])
        XCTAssertTrue(orphan.signaled && orphan.status == SIGTERM, "status \(orphan.status), signaled \(orphan.signaled)")
        let child = try CLI.run(["stats", "--model", "vgg11", "--dataset", "cifar10", "--ratio", "0.5"],
                                environment: ["NEURALSCALE_PARENT_PID": String(getpid())])
        XCTAssertEqual(child.status, 0, child.text)
    }

    func testBadFlags() throws {
        let out = root + "/bad"
        try CLI.fails(["sweep", "--models", "vgg12", "--dataset", "fashion-mnist", "--out", out], status: 64, mentions: ["--models", "vgg12"])
        try CLI.fails(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--seeds", "x", "--out", out], status: 64, mentions: ["--seeds"])
        try CLI.fails(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--steps", "train,fly", "--out", out], status: 64, mentions: ["--steps"])
        try CLI.fails(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--descent", "resnet50=x.json", "--out", out], status: 64,
                      mentions: ["--descent"])
        try CLI.fails(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--descent", "vgg11=\(root!)/none.json", "--out", out], status: 64,
                      mentions: ["none.json", "no such file"])
        try CLI.fails(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--jobs", "0", "--out", out], status: 64, mentions: ["--jobs"])
        try CLI.fails(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--search-preset", "paper2", "--out", out], status: 64,
                      mentions: ["--search-preset", "paper2"])
        // A value twice would plan two entries into one folder.
        try CLI.fails(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--seeds", "1,1", "--out", out], status: 64, mentions: ["--seeds", "twice"])
        try CLI.fails(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--ratios", "0.25,0.250", "--out", out], status: 64,
                      mentions: ["--ratios", "twice"])
        try CLI.fails(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--batch-size", "1", "--out", out], status: 64, mentions: ["--batch-size"])
        // A file that is not a descent.json, refused when the sweep is planned.
        try Data("{}".utf8).write(to: URL(fileURLWithPath: root + "/not-descent.json"))
        try CLI.fails(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--descent", "vgg11=\(root!)/not-descent.json", "--out", out],
                      status: 64, mentions: ["--descent", "not-descent.json"])
        // A damaged plan is named, not replaced: a file's error (1, no usage), not a flag's.
        let damaged = root + "/damaged"
        try FileManager.default.createDirectory(atPath: damaged, withIntermediateDirectories: true)
        try Data("{\"entries\":[".utf8).write(to: URL(fileURLWithPath: damaged + "/sweep.json"))
        try CLI.fails(["sweep", "--models", "vgg11", "--dataset", "fashion-mnist", "--out", damaged, "--dry-run"], status: 1,
                      mentions: ["sweep.json", "not a sweep plan"])
        XCTAssertEqual(try String(contentsOfFile: damaged + "/sweep.json", encoding: .utf8), "{\"entries\":[")
        try CLI.fails(["sweep", "--out", damaged, "--status"], status: 1, mentions: ["sweep.json", "not a sweep plan"])
        // A plan of another format version: refused by --status as by a run.
        let future = root + "/future"
        try FileManager.default.createDirectory(atPath: future, withIntermediateDirectories: true)
        try Data("{\"version\": 2, \"entries\": []}".utf8).write(to: URL(fileURLWithPath: future + "/sweep.json"))
        for arguments in [["--status"], ["--models", "vgg11", "--dataset", "fashion-mnist", "--dry-run"]] {
            try CLI.fails(["sweep", "--out", future] + arguments, status: 1, mentions: ["sweep.json", "version 2"])
        }
    }
}
