import Checkpoint
import Foundation
import Training
import XCTest

/// One run per folder, and no leftovers: the lock on --out, stale temporaries of killed runs,
/// and the temporary files of an interrupted export.
final class RunFolderTests: XCTestCase {
    var root: String!
    var data: String!

    override func setUpWithError() throws {
        root = try CLI.folder("runs")
        data = URL(fileURLWithPath: root).appendingPathComponent("fashion").path
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try CLI.writeFashionMNIST(in: data)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: root) }

    private func path(_ name: String) -> String { URL(fileURLWithPath: root).appendingPathComponent(name).path }

    /// The PID of a process that has ended (a child that was started and reaped).
    private func deadPID() throws -> Int32 {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["true"]
        try p.run()
        p.waitUntilExit()
        return p.processIdentifier
    }

    func testALockedFolderRefusesASecondRunNamingTheHolder() throws {
        let out = path("run")
        let held = try RunFolder.acquire(out)
        try CLI.fails(CLI.quickTrain(data: data, out: out), mentions: ["in use by another run", "PID \(getpid())"])
        try CLI.fails(["descend", "--model", "vgg11", "--dataset", "fashion-mnist", "--preset", "quick", "--data-dir", data, "--out", out],
                      mentions: ["in use by another run", "PID \(getpid())"])
        XCTAssertFalse(FileManager.default.fileExists(atPath: URL(fileURLWithPath: out).appendingPathComponent("last.h5").path))
        held.release()
        // The lock file stays, naming a process that no longer holds it: no obstacle.
        let r = try CLI.run(CLI.quickTrain(data: data, out: out))
        XCTAssertEqual(r.status, 0, r.text)
    }

    func testTwoRunsStartedTogetherNeverShareAFolder() throws {
        let out = path("race")
        func start() throws -> (Process, String) {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: CLI.executable)
            p.arguments = CLI.quickTrain(data: data, out: out, epochs: 3)
            let log = path("log-\(UUID().uuidString)")
            _ = FileManager.default.createFile(atPath: log, contents: nil)
            p.standardOutput = FileHandle(forWritingAtPath: log)
            p.standardError = FileHandle(forWritingAtPath: log)
            try p.run()
            return (p, log)
        }
        let (a, logA) = try start()
        let (b, logB) = try start()
        a.waitUntilExit()
        b.waitUntilExit()
        let statuses = [a.terminationStatus, b.terminationStatus]
        let logs = [logA, logB].map { String(decoding: FileManager.default.contents(atPath: $0) ?? Data(), as: UTF8.self) }
        XCTAssertEqual(statuses.filter { $0 == 0 }.count, 1, "exactly one run succeeds: \(statuses) \(logs)")
        let loser = statuses[0] == 0 ? logs[1] : logs[0]
        XCTAssertTrue(loser.contains("in use by another run") || loser.contains("already exists"), loser)
        let result = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/result.json"))) as? [String: Any]
        XCTAssertEqual(result?["epochs"] as? Int, 3)
    }

    func testStaleTemporariesOfKilledRunsAreRemovedOnTheNextRun() throws {
        let out = path("stale")
        XCTAssertEqual(try CLI.run(CLI.quickTrain(data: data, out: out)).status, 0)
        let dead = try deadPID()
        let live = getpid()
        let stale = [".last.h5.tmp-\(dead)", ".metrics.jsonl.tmp-\(dead)", ".datnosync-not-ours", ".dat.nosyncA1B2"]
        for name in stale + [".best.h5.tmp-\(live)"] {
            try Data("x".utf8).write(to: URL(fileURLWithPath: out).appendingPathComponent(name))
        }
        let r = try CLI.run(CLI.quickTrain(data: data, out: out, epochs: 2, extra: ["--resume"]))
        XCTAssertNotEqual(r.status, 0, "epochs differ from the stored run")  // refused, but after the lock
        // A refused resume still had the folder: it removes what dead runs left.
        let left = Set(try FileManager.default.contentsOfDirectory(atPath: out))
        XCTAssertFalse(left.contains(".last.h5.tmp-\(dead)"), "\(left)")
        XCTAssertFalse(left.contains(".metrics.jsonl.tmp-\(dead)"), "\(left)")
        XCTAssertFalse(left.contains(".dat.nosyncA1B2"), "\(left)")
        XCTAssertTrue(left.contains(".best.h5.tmp-\(live)"), "a live process's file stays: \(left)")
        XCTAssertTrue(left.contains(".datnosync-not-ours"), "other files stay: \(left)")
    }

    func testExportLeavesNoTemporaryFilesWhenInterruptedOrFinished() throws {
        let out = path("exp")
        XCTAssertEqual(try CLI.run(CLI.quickTrain(data: data, out: out)).status, 0)
        let onnxFolder = path("onnx")
        try FileManager.default.createDirectory(atPath: onnxFolder, withIntermediateDirectories: true)
        let model = onnxFolder + "/model.onnx"
        let dead = try deadPID()
        let temp = FileManager.default.temporaryDirectory
        let staleVerify = temp.appendingPathComponent("neuralscale-verify-\(dead)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: staleVerify, withIntermediateDirectories: true)
        try Data("x".utf8).write(to: URL(fileURLWithPath: onnxFolder + "/.model.onnx.tmp-\(dead)"))

        // Interrupted while the verifier runs.
        let p = Process()
        p.executableURL = URL(fileURLWithPath: CLI.executable)
        p.arguments = ["export", "--checkpoint", out + "/best.h5", "--onnx", model, "--data-dir", data]
        p.standardOutput = FileHandle.nullDevice
        p.standardError = FileHandle.nullDevice
        try p.run()
        let pid = p.processIdentifier
        func mine() -> [String] {
            let inTemp = ((try? FileManager.default.contentsOfDirectory(atPath: temp.path)) ?? []).filter { $0.hasPrefix("neuralscale-") && $0.contains("-\(pid)-") }
            let beside = ((try? FileManager.default.contentsOfDirectory(atPath: onnxFolder)) ?? []).filter { $0.hasSuffix("tmp-\(pid)") || $0.hasPrefix(".dat.nosync") }
            return inTemp + beside
        }
        let started = Date()
        while p.isRunning && mine().count < 2 && Date().timeIntervalSince(started) < 60 { usleep(5_000) }
        XCTAssertTrue(p.isRunning, "export finished before it could be interrupted")
        kill(pid, SIGINT)
        p.waitUntilExit()
        XCTAssertEqual(p.terminationReason, .uncaughtSignal, "ends as Ctrl-C ends a process")
        XCTAssertEqual(mine(), [], "temporary files left after Ctrl-C")
        XCTAssertFalse(FileManager.default.fileExists(atPath: model), "an interrupted export publishes nothing")
        XCTAssertFalse(FileManager.default.fileExists(atPath: staleVerify.path), "a dead run's verify folder is removed")
        XCTAssertFalse(FileManager.default.fileExists(atPath: onnxFolder + "/.model.onnx.tmp-\(dead)"), "a dead run's model is removed")

        // Finished: the model and nothing else.
        let r = try CLI.run(["export", "--checkpoint", out + "/best.h5", "--onnx", model, "--data-dir", data])
        XCTAssertEqual(r.status, 0, r.text)
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: onnxFolder), ["model.onnx"])
    }
}
