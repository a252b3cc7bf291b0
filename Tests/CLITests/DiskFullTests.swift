import Foundation
import XCTest

/// Writing to a full disk: the error says so (the system's reason, not only what failed), exits
/// 1, and leaves neither a partial file nor a temporary one.
final class DiskFullTests: XCTestCase {
    var root: String!
    var full: String!

    override func setUpWithError() throws {
        root = try CLI.folder("full")
        full = root + "/small"
        try FileManager.default.createDirectory(atPath: full, withIntermediateDirectories: true)
        // A 256 KiB file system: needs root (CI runs as root).
        let mount = Process()
        mount.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        mount.arguments = ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", full]
        mount.standardError = FileHandle.nullDevice
        try mount.run()
        mount.waitUntilExit()
        guard mount.terminationStatus == 0 else { throw XCTSkip("cannot mount a small tmpfs here (not root?)") }
    }

    override func tearDownWithError() throws {
        let umount = Process()
        umount.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        umount.arguments = ["umount", full]
        try? umount.run()
        umount.waitUntilExit()
        try? FileManager.default.removeItem(atPath: root)
    }

    func testTrainAndExportToAFullDiskSaySo() throws {
        let data = root + "/fashion"
        try FileManager.default.createDirectory(atPath: data, withIntermediateDirectories: true)
        try CLI.writeFashionMNIST(in: data)
        // Ratio 0.5: 2.3M parameters, far more than 256 KiB.
        let train = ["train", "--model", "vgg11", "--dataset", "fashion-mnist", "--ratio", "0.5", "--epochs", "1",
                     "--batch-size", "8", "--data-dir", data]
        try CLI.fails(train + ["--out", full + "/run"], mentions: ["No space left on device"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: full + "/run").filter { $0 != ".neuralscale.lock" }, [],
                       "nothing partial is left")
        XCTAssertEqual(try CLI.run(train + ["--out", root + "/run"]).status, 0)
        try CLI.fails(["export", "--checkpoint", root + "/run/best.h5", "--onnx", full + "/model.onnx", "--no-verify"],
                      mentions: ["No space left on device", full + "/model.onnx"])
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: full).filter { $0 != "run" }, [])
    }
}
