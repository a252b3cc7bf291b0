import ArchDescent
import Foundation
import XCTest

/// Random and mutated `descent.json` and `result.json` files fed to their readers and to what
/// runs on what they return: each either loads into something usable or is refused with an
/// error naming the file; never a trap, and in bounded time.
final class JSONFuzzTests: XCTestCase {
    var folder: URL!

    override func setUpWithError() throws {
        folder = FileManager.default.temporaryDirectory.appendingPathComponent("ns-jsonfuzz-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: folder, withIntermediateDirectories: true)
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: folder) }

    /// Values a damaged or hand-edited file may hold where a number was.
    private let extremes = ["0", "-1", "1e308", "-1e308", "1e999", "-1e999", "1e-320", "9223372036854775807", "-9223372036854775808",
                            "18446744073709551616", "1e19", "0.5", "NaN", "null", "\"x\"", "[]", "{}", "true", "2147483648", "16385"]

    /// `text` with one random change: a number replaced by an extreme, a byte flipped, a cut, or
    /// a span deleted or repeated.
    private func mutate(_ text: String, _ rng: inout RandomGenerator) -> String {
        var bytes = Array(text.utf8)
        func pick(_ n: Int) -> Int { Int(rng.next() % UInt64(max(n, 1))) }
        switch pick(5) {
        case 0, 1:
            // Replace the k-th number with an extreme value.
            let numbers = try! NSRegularExpression(pattern: "-?[0-9][0-9.eE+-]*").matches(in: text, range: NSRange(text.startIndex..., in: text))
            guard !numbers.isEmpty else { return text }
            let m = numbers[pick(numbers.count)]
            let r = Range(m.range, in: text)!
            return text.replacingCharacters(in: r, with: extremes[pick(extremes.count)])
        case 2:
            let i = pick(bytes.count)
            bytes[i] ^= UInt8(1 << pick(8))
        case 3:
            bytes = Array(bytes.prefix(pick(bytes.count)))
        default:
            let i = pick(bytes.count), n = min(pick(40) + 1, bytes.count - i)
            if pick(2) == 0 { bytes.removeSubrange(i..<(i + n)) } else { bytes.insert(contentsOf: bytes[i..<(i + n)], at: i) }
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A valid descent.json: a VGG-11 search with a real power-law fit of a synthetic trajectory.
    private func descentJSON() throws -> String {
        let template = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 1, imageSize: 32, classes: 10)
        var rows: [TrajectoryRow] = []
        for k in 0..<12 {
            var d = template
            d.widths = template.widths.enumerated().map { g, w in max(1, Int(Double(w) * pow(0.85, Double(k) * (0.5 + 0.1 * Double(g))))) }
            rows.append(TrajectoryRow(widths: d.widths, params: d.parameterCount))
        }
        let fit = try PowerLawFit.fit(rows)
        let it = DescentIteration(index: 0, startWidths: template.widths, startParams: template.parameterCount, trajectory: rows,
                                  fit: fit, stop: .reachedMaxFraction, epochs: 2)
        var result = DescentResult(config: DescentConfig(model: .vgg11, dataset: "fashion-mnist"), template: template,
                                   groupNames: Architecture.vgg11.groupNames, iterations: [it], ratios: [])
        result.ratios = try [0.25, 1.0].map { try result.scaled(ratio: $0) }
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return String(decoding: try encoder.encode(result), as: UTF8.self)
    }

    func testMutatedDescentFilesAreLoadedOrRefused() throws {
        let valid = try descentJSON()
        var rng = RandomGenerator(seed: 7)
        let started = Date()
        var loaded = 0, refused = 0
        for k in 0..<400 {
            let text = k == 0 ? valid : mutate(mutate(valid, &rng), &rng)
            let path = folder.appendingPathComponent("descent-\(k).json").path
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            do {
                let result = try DescentResult.load(path)
                // What `widths`, `stats` and `train` then do with it.
                for ratio in [0.05, 0.25, 1.0, 4.0] {
                    if let s = try? result.scaled(ratio: ratio) {
                        var d = result.template
                        d.widths = s.neuralscaleWidths
                        XCTAssertNoThrow(try d.validate(), "descent-\(k): scaled widths \(s.neuralscaleWidths) at \(ratio)")
                    }
                }
                loaded += 1
            } catch let error as FitError {
                XCTAssertTrue(error.description.contains(path), "descent-\(k): the error does not name the file: \(error)")
                refused += 1
            }
        }
        XCTAssertGreaterThan(loaded, 10)
        XCTAssertGreaterThan(refused, 100)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60, "bounded time")
    }

    func testMutatedResultFilesAreLoadedOrRefused() throws {
        let widths = Architecture.vgg11.uniformWidths(ratio: 0.25)
        let object: [String: Any] = ["model": "vgg11", "dataset": "fashion-mnist", "scaling": "uniform", "ratio": 0.25, "widths": widths,
                                     "params": 579_498, "testAccuracy": 0.86, "testLoss": 0.4, "validationAccuracy": 0.85,
                                     "bestEpoch": 3, "epochs": 3, "seed": 0, "wallSeconds": 12.5]
        let valid = String(decoding: try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]), as: UTF8.self)
        var rng = RandomGenerator(seed: 8)
        let started = Date()
        var loaded = 0, refused = 0
        for k in 0..<400 {
            let text = k == 0 ? valid : mutate(valid, &rng)
            let path = folder.appendingPathComponent("result-\(k).json").path
            try text.write(toFile: path, atomically: false, encoding: .utf8)
            do {
                let report = try ResultsReport.load([path])
                XCTAssertTrue(report.rows.allSatisfy { ($0.testAccuracyMean ?? 0) <= 1 && $0.ratio > 0 }, "result-\(k)")
                _ = report.markdown()
                _ = report.accuracyChart(against: .params)
                _ = report.widthsChart()
                loaded += 1
            } catch let error as ReportError {
                XCTAssertEqual(error.path, path, "result-\(k): \(error)")
                refused += 1
            }
        }
        XCTAssertGreaterThan(loaded, 10)
        XCTAssertGreaterThan(refused, 100)
        XCTAssertLessThan(Date().timeIntervalSince(started), 60, "bounded time")
    }
}
