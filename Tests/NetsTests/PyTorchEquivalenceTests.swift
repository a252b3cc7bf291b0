import Autodiff
import Foundation
import Nets
import XCTest

/// The nets compute what the PyTorch reference nets compute, given the same weights
/// (Reference/make_net_reference.py wrote the weights, inputs and outputs).
final class PyTorchEquivalenceTests: XCTestCase {
    struct Entry: Decodable { let shape: [Int]; let offset: Int; let count: Int }
    struct Case: Decodable {
        let model: String, ratio: Double, size: Int
        let state: [String: Entry]
        let x: Entry, labels: [Int32]
        let eval_logits: Entry, train_logits: Entry
        let loss: Double
        let grads: [String: Entry]
        /// PyTorch's own float32 error on each output (against the float64 expected values).
        let noise: [String: Double]
    }
    struct Manifest: Decodable { let cases: [Case] }

    /// The reference VGG is one Sequential (`0.weight` ... `30.weight`); ours names the same
    /// positions `features.<i>` and the final linear `classifier`.
    private func ourName(_ reference: String, _ model: String) -> String {
        guard model == "vgg11" else { return reference }
        return reference.hasPrefix("30.") ? "classifier." + reference.dropFirst(3) : "features." + reference
    }

    func testForwardAndGradientsMatchPyTorch() throws {
        let folder = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Reference")
        let manifest = try JSONDecoder().decode(Manifest.self, from: Data(contentsOf: folder.appendingPathComponent("nets.json")))
        let blob = try Data(contentsOf: folder.appendingPathComponent("nets.bin"))
        let floats: [Float] = blob.withUnsafeBytes { raw in
            (0..<(blob.count / 4)).map { Float(bitPattern: UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: $0 * 4, as: UInt32.self))) }
        }
        func tensor(_ e: Entry) -> Tensor { Tensor(shape: e.shape, values: Array(floats[e.offset..<(e.offset + e.count)])) }

        XCTAssertEqual(manifest.cases.count, 5)
        for c in manifest.cases {
            let arch = try XCTUnwrap(Architecture(rawValue: c.model))
            let net = try makeNetwork(.uniform(arch, ratio: c.ratio, inChannels: 3, imageSize: c.size, classes: 10),
                                      initialization: .none)
            let ours = Dictionary(uniqueKeysWithValues: net.state.map { ($0.name, $0.tensor) })
            XCTAssertEqual(Set(c.state.keys.map { ourName($0, c.model) }), Set(ours.keys), "\(c.model): state names")
            for (name, entry) in c.state {
                let t = try XCTUnwrap(ours[ourName(name, c.model)], name)
                XCTAssertEqual(t.shape, entry.shape, "\(c.model) \(name)")
                t.copy(from: tensor(entry))
            }
            let x = tensor(c.x)
            let eval = Tape.withoutGradients { net.logits(x, training: false) }
            assertClose(eval, tensor(c.eval_logits), noise: c.noise["eval_logits"], "\(c.model) \(c.size) eval logits")
            let train = net.logits(x, training: true)
            assertClose(train, tensor(c.train_logits), noise: c.noise["train_logits"], "\(c.model) \(c.size) train logits")
            let loss = crossEntropy(train, labels: c.labels)
            XCTAssertEqual(Double(loss.scalar), c.loss, accuracy: 1e-4 * max(1, abs(c.loss)), "\(c.model) loss")
            loss.backward()
            // The generator stores the gradients of the first and the last weight; one missing
            // from the file must fail, not shrink the check.
            XCTAssertEqual(c.grads.count, 2, "\(c.model): reference gradients \(c.grads.keys.sorted())")
            for (name, entry) in c.grads {
                assertClose(ours[ourName(name, c.model)]?.grad, tensor(entry), noise: c.noise[name], "\(c.model) \(c.size) d\(name)")
            }
        }
    }

    /// Within 1e-4 of the largest expected value, plus four times PyTorch's own float32 error on
    /// the same output (large only where train-mode batch norm over a tiny map amplifies rounding).
    private func assertClose(_ actual: Tensor?, _ expected: Tensor, noise: Double?, _ what: String, line: UInt = #line) {
        guard let actual else { return XCTFail("\(what): missing", line: line) }
        guard let noise else { return XCTFail("\(what): no noise figure in nets.json", line: line) }
        XCTAssertEqual(actual.shape, expected.shape, what, line: line)
        let scale = expected.values.map(abs).max() ?? 1
        var worst: Float = 0, at = 0
        for i in 0..<min(actual.count, expected.count) {
            let d = abs(actual.data[i] - expected.data[i])
            if d > worst { worst = d; at = i }
        }
        let tolerance = 1e-4 * max(scale, 1e-3) + 4 * Float(noise)
        XCTAssertLessThanOrEqual(worst, tolerance, "\(what): element \(at) is \(actual.data[at]), "
                                 + "expected \(expected.data[at]) (max abs diff \(worst), scale \(scale), PyTorch float32 error \(noise))",
                                 line: line)
    }
}
