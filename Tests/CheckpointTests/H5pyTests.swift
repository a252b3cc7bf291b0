import Autodiff
import Checkpoint
import Foundation
import Nets
import PythonBridge
import TestSupport
import XCTest

/// Checkpoints read by another program: h5py, through `scripts/inspect_checkpoint.py --json`.
final class H5pyTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws { folder = try temporaryFolder("h5py") }

    /// The repository's `scripts/` folder, found from this file.
    private let scripts = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("scripts")

    /// A small net of `arch` with random weights after one SGD step (momentum buffers and BN
    /// running statistics set).
    private func trainedNet(_ arch: Architecture) throws -> (Network, SGD) {
        let net = try makeNetwork(.uniform(arch, ratio: 0.125, inChannels: 3, imageSize: 32, classes: 10),
                                  initialization: .random(RandomGenerator(seed: 11)))
        let opt = SGD(parameters: net.parameters, schedule: .constant(0.1), momentum: 0.9, weightDecay: 5e-4)
        var rng = RandomGenerator(seed: 12)
        crossEntropy(net.logits(Tensor.randn([2, 3, 32, 32], using: &rng), training: true), labels: [3, 8]).backward()
        opt.step()
        return (net, opt)
    }

    /// Checks the script's summary of one dataset against `values` of `shape`: the shape, the
    /// first values exactly, and the sum and position-weighted checksum (see the script) within
    /// float64 rounding.
    private func check(_ summary: [String: Any]?, _ name: String, shape: [Int], values: [Float], file: StaticString = #filePath,
                       line: UInt = #line) {
        guard let summary else { return XCTFail("\(name): no such dataset in the file", file: file, line: line) }
        XCTAssertEqual(summary["shape"] as? [Int], shape, "\(name): shape", file: file, line: line)
        XCTAssertEqual(summary["dtype"] as? String, "float32", "\(name): dtype", file: file, line: line)
        let head = (summary["head"] as? [Double] ?? []).map { Float($0) }
        XCTAssertEqual(head.map(\.bitPattern), values.prefix(4).map(\.bitPattern), "\(name): first values", file: file, line: line)
        var sum = 0.0, checksum = 0.0, scale = 0.0
        for (i, v) in values.enumerated() {
            let w = Double(1 + i % 1000)
            sum += Double(v)
            checksum += Double(v) * w
            scale += abs(Double(v)) * w
        }
        // Only the summation order differs (numpy sums pairwise, this loop in sequence): at most
        // n * 1.1e-16 of the magnitudes for n < 1e6 values, so 1e-10 holds; a value moved or
        // changed by more than that share of the total fails.
        let tolerance = 1e-10 * scale + 1e-30
        for (key, expected) in [("sum", sum), ("checksum", checksum)] {
            let got = summary[key] as? Double ?? .nan
            XCTAssertLessThanOrEqual(abs(got - expected), tolerance, "\(name): \(key) \(got) in h5py, \(expected) here", file: file, line: line)
        }
    }

    /// Every dotted name of the net's state (parameters, BN buffers) is a dataset of exactly
    /// the tensor's shape and values, every momentum buffer is under `momentum/<name>`, the
    /// training state is the dataset `meta/training`, nothing else is in the file, and the
    /// attributes are exactly `format`, `version`, `net` and `optimizer` and say what
    /// `Checkpoint` wrote.
    func testH5pyReadsEveryTensorOfAllFourNets() throws {
        try requirePython(modules: ["h5py", "numpy"])
        let script = scripts.appendingPathComponent("inspect_checkpoint.py").path
        for arch in Architecture.allCases {
            let (net, opt) = try trainedNet(arch)
            let path = folder.appendingPathComponent("\(arch.rawValue).h5").path
            let training = #"{"arch":"\#(arch.rawValue)","history":[1,2,3]}"#
            try Checkpoint.save(net, optimizer: opt, training: training, to: path)
            let (status, out, err) = try Python.run([script, path, "--json"])
            XCTAssertEqual(status, 0, "\(arch): \(err)")
            let report = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(out.utf8)) as? [String: Any], "\(arch): \(err)")
            let attributes = try XCTUnwrap(report["attributes"] as? [String: Any])
            let datasets = try XCTUnwrap(report["datasets"] as? [String: [String: Any]])

            XCTAssertEqual(Set(attributes.keys), ["format", "version", "net", "optimizer"], "\(arch): attributes")
            let state = try XCTUnwrap(report["training"] as? [String: Any], "\(arch): no training state")
            XCTAssertEqual(state["arch"] as? String, arch.rawValue)
            XCTAssertEqual(state["history"] as? [Int], [1, 2, 3])
            XCTAssertEqual(attributes["format"] as? String, "neuralscale-checkpoint")
            XCTAssertEqual(attributes["version"] as? String, "1")
            let netJSON = try JSONSerialization.data(withJSONObject: try XCTUnwrap(attributes["net"], "\(arch): no net attribute"))
            XCTAssertEqual(try JSONDecoder().decode(NetDescription.self, from: netJSON), net.netDescription, "\(arch): net attribute")
            let optimizer = try XCTUnwrap(attributes["optimizer"] as? [String: Any], "\(arch): no optimizer attribute")
            XCTAssertEqual(optimizer["stepCount"] as? Int, 1)

            let tensors = net.state
            let momentum = Dictionary(uniqueKeysWithValues: zip(tensors.filter { $0.kind == .parameter }.map(\.name), opt.state.momentumBuffers))
            XCTAssertFalse(momentum.values.contains { $0 == nil }, "\(arch): every parameter has momentum after a step")
            XCTAssertEqual(Set(datasets.keys), Set(tensors.map(\.name) + momentum.keys.map { "momentum/" + $0 } + [Checkpoint.trainingDataset]),
                           "\(arch): the file holds exactly the state, the momentum buffers and the training state")
            XCTAssertEqual(datasets[Checkpoint.trainingDataset]?["dtype"] as? String, "uint8")
            XCTAssertTrue(tensors.contains { $0.name.hasSuffix("running_var") }, "\(arch): buffers are part of the state")
            for entry in tensors {
                check(datasets[entry.name], "\(arch) \(entry.name)", shape: entry.tensor.shape, values: entry.tensor.values)
                if let buffer = momentum[entry.name] ?? nil {
                    check(datasets["momentum/" + entry.name], "\(arch) momentum/\(entry.name)", shape: entry.tensor.shape, values: buffer)
                }
            }
        }
    }
}
