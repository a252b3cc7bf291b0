import Foundation
import TestSupport
import XCTest

/// What a run of the `neuralscale` binary did.
struct CLIRun {
    let status: Int32
    /// True when the process ended by a signal (a Swift runtime trap is SIGILL/SIGTRAP).
    let signaled: Bool
    let output: String
    let errors: String
    let seconds: Double
    var text: String { output + errors }
}

/// Runs the `neuralscale` executable built beside this test bundle, and makes the small inputs
/// the tests feed it.
enum CLI {
    /// The executable in the build folder this test binary runs from.
    static let executable: String = {
        let me = URL(fileURLWithPath: (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        var dir = me.deletingLastPathComponent()
        // The test binary sits in <build>/neuralscalePackageTests.xctest (a file on Linux).
        for _ in 0..<3 {
            let candidate = dir.appendingPathComponent("neuralscale").path
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            dir = dir.deletingLastPathComponent()
        }
        return URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent(".build/debug/neuralscale").path
    }()

    /// Runs `neuralscale arguments...`; a run longer than `timeout` seconds is killed and fails
    /// the test (every bad input must end in bounded time).
    @discardableResult
    static func run(_ arguments: [String], timeout: Double = 120, environment: [String: String] = [:],
                    file: StaticString = #filePath, line: UInt = #line) throws -> CLIRun {
        try runTool(executable, arguments, environment: environment, timeout: timeout, file: file, line: line)
    }

    /// Runs `tool arguments...` (the tool itself, or `mpirun` around it) like `run`.
    @discardableResult
    static func runTool(_ tool: String, _ arguments: [String], environment: [String: String] = [:], timeout: Double = 120,
                        file: StaticString = #filePath, line: UInt = #line) throws -> CLIRun {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: tool)
        p.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        let folder = FileManager.default.temporaryDirectory.appendingPathComponent("ns-cli-out-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: folder) }
        let outPath = folder.appendingPathComponent("out").path, errPath = folder.appendingPathComponent("err").path
        _ = FileManager.default.createFile(atPath: outPath, contents: nil)
        _ = FileManager.default.createFile(atPath: errPath, contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: outPath)
        p.standardError = FileHandle(forWritingAtPath: errPath)
        p.standardInput = FileHandle.nullDevice
        let started = Date()
        try p.run()
        while p.isRunning && Date().timeIntervalSince(started) < timeout { usleep(20_000) }
        let timedOut = p.isRunning
        if timedOut {
            p.terminate()
            p.waitUntilExit()
        }
        p.waitUntilExit()
        let run = CLIRun(status: p.terminationStatus, signaled: p.terminationReason == .uncaughtSignal,
                         output: String(decoding: FileManager.default.contents(atPath: outPath) ?? Data(), as: UTF8.self),
                         errors: String(decoding: FileManager.default.contents(atPath: errPath) ?? Data(), as: UTF8.self),
                         seconds: Date().timeIntervalSince(started))
        if timedOut { XCTFail("\(tool) \(arguments.joined(separator: " ")) ran over \(timeout) s", file: file, line: line) }
        return run
    }

    /// Runs and requires a clean failure: no signal (a trap), the given exit status, and an
    /// `Error:` line containing every one of `mentions`.
    @discardableResult
    static func fails(_ arguments: [String], status: Int32 = 1, mentions: [String], timeout: Double = 120,
                      file: StaticString = #filePath, line: UInt = #line) throws -> CLIRun {
        let r = try run(arguments, timeout: timeout, file: file, line: line)
        let command = "neuralscale " + arguments.joined(separator: " ")
        XCTAssertFalse(r.signaled, "\(command) crashed (signal \(r.status)): \(r.errors)", file: file, line: line)
        XCTAssertEqual(r.status, status, "\(command): exit status; output: \(r.text)", file: file, line: line)
        XCTAssertTrue(r.errors.contains("Error: "), "\(command): no error line in \(r.errors)", file: file, line: line)
        for m in mentions {
            XCTAssertTrue(r.errors.contains(m), "\(command): the error does not mention '\(m)': \(r.errors)", file: file, line: line)
        }
        XCTAssertFalse(r.errors.contains("Error Domain="), "\(command): a raw NSError dump: \(r.errors)", file: file, line: line)
        return r
    }

    /// A fresh folder, removed by the caller's tearDown.
    static func folder(_ name: String) throws -> String {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ns-cli-\(name)-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        return url.path
    }

    /// A fresh folder holding a tiny Fashion-MNIST (`<root>/fashion`) and a tiny VGG-11 trained
    /// on it for one epoch (`<root>/run`, see `quickTrain`).
    static func trainedRun(_ name: String, file: StaticString = #filePath, line: UInt = #line) throws -> (root: String, data: String) {
        let root = try folder(name), data = root + "/fashion"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try writeFashionMNIST(in: data)
        let r = try run(quickTrain(data: data, out: root + "/run"))
        XCTAssertEqual(r.status, 0, r.text, file: file, line: line)
        return (root, data)
    }

    /// A tiny Fashion-MNIST in `directory` (TestSupport's `writeFashionMNIST`).
    static func writeFashionMNIST(in directory: String, train: Int = 40, test: Int = 12) throws {
        try TestSupport.writeFashionMNIST(in: directory, train: train, test: test)
    }

    /// Arguments of a quick training run of a tiny VGG-11 on the tiny Fashion-MNIST in `data`.
    static func quickTrain(data: String, out: String, epochs: Int = 1, extra: [String] = []) -> [String] {
        ["train", "--model", "vgg11", "--dataset", "fashion-mnist", "--ratio", "0.0625", "--epochs", "\(epochs)",
         "--batch-size", "8", "--data-dir", data, "--out", out] + extra
    }
}
