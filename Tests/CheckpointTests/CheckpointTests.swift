import Autodiff
import Checkpoint
import Foundation
import Nets
import TestSupport
import XCTest

final class CheckpointTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder("ckpt") }

    /// A small trained-for-one-step net and its optimizer, so BN statistics and momentum are set.
    private func trainedNet(_ arch: Architecture = .mobilenetv2) throws -> (Network, SGD) {
        let net = try makeNetwork(.uniform(arch, ratio: 0.125, inChannels: 3, imageSize: 32, classes: 5),
                                  initialization: .random(RandomGenerator(seed: 3)))
        let opt = SGD(parameters: net.parameters, schedule: .constant(0.1), momentum: 0.9, weightDecay: 5e-4)
        var rng = RandomGenerator(seed: 4)
        let x = Tensor.randn([4, 3, 32, 32], using: &rng)
        crossEntropy(net.logits(x, training: true), labels: [0, 1, 2, 3]).backward()
        opt.step()
        opt.beginEpoch(1)
        return (net, opt)
    }

    func testRoundTripRestoresEverythingBitForBit() throws {
        for arch in Architecture.allCases {
            let (net, opt) = try trainedNet(arch)
            let path = folder.appendingPathComponent("\(arch.rawValue).h5").path
            try Checkpoint.save(net, optimizer: opt, training: #"{"epoch":1}"#, to: path)
            let loaded = try Checkpoint.load(path)
            XCTAssertEqual(loaded.network.netDescription, net.netDescription)
            let before = net.state, after = loaded.network.state
            XCTAssertEqual(before.map(\.name), after.map(\.name))
            for (a, b) in zip(before, after) {
                XCTAssertEqual(a.tensor.shape, b.tensor.shape, a.name)
                XCTAssertEqual(a.tensor.values.map(\.bitPattern), b.tensor.values.map(\.bitPattern), a.name)
            }
            XCTAssertEqual(loaded.optimizer, opt.state, "\(arch): optimizer state")
            XCTAssertEqual(loaded.training, #"{"epoch":1}"#)
        }
    }

    /// The same contents saved in different seconds are the same bytes: HDF5 keeps no creation
    /// times in the object headers (it does by default), so a checkpoint's md5 names its contents.
    func testSameContentsGiveTheSameBytesWhenever() throws {
        let (net, opt) = try trainedNet(.vgg11)
        let first = folder.appendingPathComponent("first.h5").path, second = folder.appendingPathComponent("second.h5").path
        try Checkpoint.save(net, optimizer: opt, training: #"{"epoch":1}"#, to: first)
        Thread.sleep(forTimeInterval: 1.1)
        try Checkpoint.save(net, optimizer: opt, training: #"{"epoch":1}"#, to: second)
        let a = try XCTUnwrap(FileManager.default.contents(atPath: first)), b = try XCTUnwrap(FileManager.default.contents(atPath: second))
        XCTAssertEqual(a.count, b.count)
        XCTAssertTrue(a == b, "\(zip(a, b).filter { $0 != $1 }.count) bytes differ")
    }

    func testWithoutOptimizerOrTrainingState() throws {
        let (net, _) = try trainedNet(.vgg11)
        let path = folder.appendingPathComponent("weights.h5").path
        try Checkpoint.save(net, to: path)
        let loaded = try Checkpoint.load(path)
        XCTAssertNil(loaded.optimizer)
        XCTAssertNil(loaded.training)
        XCTAssertEqual(loaded.network.parameterCount, net.parameterCount)
    }

    /// A save that fails midway leaves the previous checkpoint intact and no temporary file.
    func testFailedSaveKeepsThePreviousFile() throws {
        let (net, opt) = try trainedNet(.vgg11)
        let path = folder.appendingPathComponent("last.h5").path
        try Checkpoint.save(net, optimizer: opt, to: path)
        let good = try Data(contentsOf: URL(fileURLWithPath: path))
        // An optimizer over a different parameter list: the save throws after writing the weights.
        let wrong = SGD(parameters: Array(net.parameters.prefix(3)), schedule: .constant(0.1), momentum: 0.9)
        XCTAssertThrowsError(try Checkpoint.save(net, optimizer: wrong, to: path)) { error in
            XCTAssertTrue("\(error)".contains(path), "\(error)")
        }
        XCTAssertEqual(try Data(contentsOf: URL(fileURLWithPath: path)), good, "previous checkpoint changed")
        XCTAssertEqual(try FileManager.default.contentsOfDirectory(atPath: folder.path), ["last.h5"], "temporary file left")
        XCTAssertNoThrow(try Checkpoint.load(path))
    }

    func testCorruptOrForeignFilesAreRejectedByName() throws {
        let (net, opt) = try trainedNet(.preactResNet18)
        let path = folder.appendingPathComponent("ok.h5").path
        try Checkpoint.save(net, optimizer: opt, to: path)
        let bytes = try Data(contentsOf: URL(fileURLWithPath: path))

        let truncated = folder.appendingPathComponent("truncated.h5").path
        try bytes.prefix(bytes.count / 2).write(to: URL(fileURLWithPath: truncated))
        XCTAssertThrowsError(try Checkpoint.load(truncated)) { XCTAssertTrue("\($0)".contains(truncated), "\($0)") }

        let text = folder.appendingPathComponent("notes.h5").path
        try Data("not a checkpoint".utf8).write(to: URL(fileURLWithPath: text))
        XCTAssertThrowsError(try Checkpoint.load(text)) {
            XCTAssertTrue("\($0)".contains(text) && "\($0)".contains("not an HDF5 file"), "\($0)")
        }

        let missing = folder.appendingPathComponent("missing.h5").path
        XCTAssertThrowsError(try Checkpoint.load(missing)) { XCTAssertTrue("\($0)".contains("no such file"), "\($0)") }
    }
}
