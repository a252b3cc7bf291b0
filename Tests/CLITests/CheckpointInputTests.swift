import Autodiff
import Checkpoint
import Foundation
import Nets
import PythonBridge
import Training
import XCTest

/// Checkpoints that are damaged, edited or of another kind, given to `eval`, `export`, `stats`
/// and `train --resume`: each refused by name, never a trap, never a "fine" result.
final class CheckpointInputTests: XCTestCase {
    var root: String!
    var data: String!
    var run: String!

    override func setUpWithError() throws {
        (root, data) = try CLI.trainedRun("ckpt")
        run = root + "/run"
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: root) }

    /// `train --resume` with another --data-dir (other files) is refused naming last.h5; with
    /// the data it started on it goes on.
    func testResumeWithOtherDataIsRefused() throws {
        let other = root + "/other-fashion"
        try FileManager.default.createDirectory(atPath: other, withIntermediateDirectories: true)
        try CLI.writeFashionMNIST(in: other, train: 40, test: 13)
        try CLI.fails(CLI.quickTrain(data: other, out: run, extra: ["--resume"]), mentions: [run + "/last.h5", "trained on other data"])
        XCTAssertEqual(try CLI.run(CLI.quickTrain(data: data, out: run, extra: ["--resume"])).status, 0)
    }

    /// A copy of the run's `last.h5` whose training state is changed by `change`.
    private func edited(_ name: String, _ change: (inout TrainingState) -> Void) throws -> String {
        let loaded = try Checkpoint.load(run + "/last.h5")
        var state = try XCTUnwrap(try loaded.training(as: TrainingState.self))
        change(&state)
        let opt = SGD(parameters: loaded.network.parameters, schedule: .constant(0.1), momentum: 0.9, weightDecay: 5e-4)
        try opt.load(try XCTUnwrap(loaded.optimizer))
        let folder = root + "/" + name
        try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        try Checkpoint.save(loaded.network, optimizer: opt, training: String(decoding: try JSONEncoder().encode(state), as: UTF8.self),
                            to: folder + "/last.h5")
        return folder + "/last.h5"
    }

    /// The commands that read a checkpoint's net and normalization.
    private func readers(_ file: String) -> [[String]] {
        [["eval", "--checkpoint", file, "--data-dir", data],
         ["export", "--checkpoint", file, "--onnx", root + "/x.onnx", "--data-dir", data]]
    }

    func testBadInputNormalizationIsRefusedByEveryReaderAndByResume() throws {
        let cases: [(String, (inout TrainingState) -> Void, String)] = [
            ("std0", { $0.inputNormalization?.std = [0] }, "std"),
            ("stdnegative", { $0.inputNormalization?.std = [-0.3] }, "std"),
            ("rgb", { $0.inputNormalization = InputNormalization(mean: [0.5, 0.5, 0.5], std: [0.2, 0.2, 0.2]) }, "channel"),
        ]
        for (name, change, word) in cases {
            let file = try edited(name, change)
            for command in readers(file) { try CLI.fails(command, mentions: [file, word]) }
            let resumed = CLI.quickTrain(data: data, out: URL(fileURLWithPath: file).deletingLastPathComponent().path, epochs: 1,
                                         extra: ["--resume"])
            try CLI.fails(resumed, mentions: [file, word])
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/x.onnx"))
    }

    /// A wall time no run has (a damaged or hand-edited state) is refused by name on resume: it went
    /// into the ETA's formatting, where it trapped.
    func testAnAbsurdElapsedTimeIsRefusedOnResume() throws {
        let file = try edited("elapsed", { $0.elapsedSeconds = 1e300 })
        let resumed = CLI.quickTrain(data: data, out: URL(fileURLWithPath: file).deletingLastPathComponent().path, epochs: 1,
                                     extra: ["--resume"])
        try CLI.fails(resumed, mentions: [file, "elapsedSeconds"])
    }

    /// `export` and `quantize` refuse to write the model over their own checkpoint.
    func testAModelIsNotWrittenOverItsCheckpoint() throws {
        let best = run + "/best.h5", before = try Data(contentsOf: URL(fileURLWithPath: best))
        try CLI.fails(["export", "--checkpoint", best, "--onnx", best, "--no-verify"], status: 64, mentions: ["--onnx", best, "--checkpoint"])
        try CLI.fails(["quantize", "--checkpoint", best, "--onnx", run + "/../run/best.h5", "--no-verify"], status: 64,
                      mentions: ["--onnx", "--checkpoint"])
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: best)), before)
    }

    /// Finite weights whose products overflow (a weight of 3e38): eval names the file instead of
    /// printing a NaN loss and a chance accuracy, or an encoder's error with --json.
    func testWeightsThatOverflowAreReportedNotEvaluated() throws {
        let loaded = try Checkpoint.load(run + "/best.h5")
        let w = try XCTUnwrap(loaded.network.parameters.first)
        w.data[0] = 3e38
        let file = root + "/overflow.h5"
        try Checkpoint.save(loaded.network, optimizer: nil, training: try XCTUnwrap(loaded.training), to: file)
        for extra in [[], ["--json"]] {
            try CLI.fails(["eval", "--checkpoint", file, "--data-dir", data] + extra, mentions: [file, "overflow"])
        }
    }

    func testAHugeWidthInTheNetAttributeIsRefused() throws {
        // 1e30 does not decode as an integer at all: the `net` attribute is named instead.
        for (name, value, word) in [("wide", "1000000000", "width"), ("zero", "0", "width"), ("negative", "-5", "width"),
                                    ("huge", "1e30", "attribute net")] {
            let file = root + "/\(name).h5"
            try FileManager.default.copyItem(atPath: run + "/best.h5", toPath: file)
            // Rewrite the first width of the `net` attribute, as a hand edit would.
            let code = """
            import h5py, json, sys
            with h5py.File(sys.argv[1], 'r+') as f:
                raw = f.attrs['net']
                text = raw.decode() if isinstance(raw, bytes) else str(raw)
                net = json.loads(text)
                text = json.dumps(net).replace('"widths": [%d' % net['widths'][0], '"widths": [' + sys.argv[2], 1)
                f.attrs['net'] = text
            """
            let (status, _, errors) = try Python.run(["-c", code, file, value])
            XCTAssertEqual(status, 0, errors)
            for command in readers(file) + [["stats", "--checkpoint", file]] {
                try CLI.fails(command, mentions: [file, word])
            }
        }
    }

    func testEvalOfASearchStateSaysWhatToDo() throws {
        // A search's state.h5: a few pruning steps of a tiny search.
        let search = root + "/search"
        let r = try CLI.run(["descend", "--model", "vgg11", "--dataset", "fashion-mnist", "--data-dir", data, "--out", search,
                             "--iterations", "1", "--warmup", "0", "--prune-every", "2", "--prune-count", "4", "--batch-size", "8",
                             "--base-ratio", "0.0625"], timeout: 300)
        XCTAssertEqual(r.status, 0, r.text)
        // The file's kind, not a flag: exit 1 without the usage, as export and quantize say it.
        let refused = try CLI.fails(["eval", "--checkpoint", search + "/state.h5", "--data-dir", data],
                                    status: 1, mentions: ["state of a search", "neuralscale train --scaling neuralscale"])
        XCTAssertFalse(refused.errors.contains("Usage:"), refused.errors)

        // A state saved during an iteration (stopped as by a Ctrl-C) quantizes as its help says:
        // the normalization its search trained with is fitted again as descend fitted it (the
        // state records none, and quantize once refused every state for that).
        let stopped = root + "/stopped"
        let s = try CLI.run(["descend", "--model", "vgg11", "--dataset", "fashion-mnist", "--data-dir", data, "--out", stopped,
                             "--iterations", "1", "--warmup", "0", "--prune-every", "2", "--prune-count", "4", "--batch-size", "8",
                             "--base-ratio", "0.0625"], timeout: 300, environment: ["NEURALSCALE_STOP_AT": "0:1:1"])
        XCTAssertTrue(s.status == 1 && s.errors.contains("interrupted at epoch 2, step 1"), s.text)
        let q = try CLI.run(["quantize", "--checkpoint", stopped + "/state.h5", "--onnx", root + "/state-int8.onnx", "--data-dir", data,
                             "--calibration", "8", "--no-verify"])
        XCTAssertEqual(q.status, 0, q.text)
        XCTAssertTrue(FileManager.default.fileExists(atPath: root + "/state-int8.onnx"), q.text)
    }

    func testSubsetLargerThanTheDataAndEmptyDataAreRefused() throws {
        try CLI.fails(CLI.quickTrain(data: data, out: root + "/sub", extra: ["--subset", "1000"]),
                      status: 64, mentions: ["--subset 1000", "training images", "Usage: neuralscale train"])
        let empty = root + "/empty"
        try FileManager.default.createDirectory(atPath: empty, withIntermediateDirectories: true)
        try CLI.writeFashionMNIST(in: empty, train: 0, test: 4)
        try CLI.fails(CLI.quickTrain(data: empty, out: root + "/e"), mentions: [empty])
        XCTAssertFalse(FileManager.default.fileExists(atPath: root + "/e/result.json"))
        try CLI.writeFashionMNIST(in: empty, train: 20, test: 0)
        try CLI.fails(CLI.quickTrain(data: empty, out: root + "/e2"), mentions: [empty])
        try CLI.fails(["eval", "--checkpoint", run + "/best.h5", "--data-dir", empty], mentions: [empty])
    }
}
