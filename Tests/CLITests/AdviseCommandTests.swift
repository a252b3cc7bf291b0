import Foundation
import XCTest

/// `neuralscale advise` through the binary: the answer, the refusal, a profile fitted to a real
/// `bench infer` file and saved, and bad flags.
final class AdviseCommandTests: XCTestCase {
    func testAdviseFitSaveAndRefuse() throws {
        let root = try CLI.folder("advise")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let ok = try CLI.run(["advise", "--model", "vgg11", "--latency-ms", "25", "--json"])
        XCTAssertEqual(ok.status, 0, ok.text)
        let advice = try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(ok.output.utf8)) as? [String: Any])?["advice"] as? [String: Any])
        XCTAssertEqual(advice["verdict"] as? String, "scale")
        XCTAssertEqual(advice["ratio"] as? Double ?? 0, ((25 - 17.9) / 5.7e-6 / 9_231_114).squareRoot(), accuracy: 0.005)
        let refused = try CLI.run(["advise", "--model", "vgg11", "--latency-ms", "10"])
        XCTAssertEqual(refused.status, 1)
        XCTAssertTrue(refused.output.contains("at or below the profile's intercept") && refused.output.contains("cortex-a72-int8"), refused.text)
        let list = try CLI.run(["advise", "--list-profiles"])
        XCTAssertEqual(list.status, 0)
        XCTAssertEqual(list.output.split(separator: "\n").count, 6, list.text)

        // A profile of this machine from two fresh nets measured by bench infer.
        let bench = root + "/bench.json"
        let b = try CLI.run(["bench", "infer", "--model", "vgg11", "--ratios", "0.0625,0.125", "--backend", "ort", "--batch-sizes", "1",
                             "--warmup", "1", "--runs", "3", "--trials", "1", "--json"])
        XCTAssertEqual(b.status, 0, b.text)
        try Data(b.output.utf8).write(to: URL(fileURLWithPath: bench))
        let saved = root + "/profile.json"
        let fitted = try CLI.run(["advise", "--model", "vgg11", "--memory-mb", "500", "--fit", bench, "--save-profile", saved])
        XCTAssertEqual(fitted.status, 0, fitted.text)
        XCTAssertTrue(fitted.output.contains("memory model: y ="), fitted.text)
        let again = try CLI.run(["advise", "--model", "vgg11", "--memory-mb", "500", "--profile", saved])
        XCTAssertEqual(again.status, 0, again.text)
        XCTAssertEqual(again.output.split(separator: "\n").dropFirst().first, fitted.output.split(separator: "\n").dropFirst().first)

        try CLI.fails(["advise", "--model", "vgg11"], status: 64, mentions: ["--latency-ms or --memory-mb"])
        try CLI.fails(["advise", "--model", "vgg11", "--latency-ms", "5", "--memory-mb", "5"], status: 64, mentions: ["one target"])
        try CLI.fails(["advise", "--model", "vgg11", "--latency-ms", "-1"], status: 64, mentions: ["--latency-ms"])
        try CLI.fails(["advise", "--model", "vgg11", "--latency-ms", "5", "--profile", "pi5"], mentions: ["pi5", "cortex-a72-fp32"])
        // A profile file's numbers are checked, the file named.
        for (line, word) in [("\"m\": 0, \"b\": 1", "slope"), ("\"m\": -1e-6, \"b\": 1", "slope"), ("\"m\": 1e-6, \"b\": 1, \"r\": 5", "Pearson r"),
                             ("\"m\": 1e-6, \"b\": 1, \"p\": 2", "p-value")] {
            let bad = root + "/bad-profile.json"
            try Data("{\"name\": \"x\", \"description\": \"x\", \"latency\": {\(line)}}".utf8).write(to: URL(fileURLWithPath: bad))
            try CLI.fails(["advise", "--model", "vgg11", "--latency-ms", "5", "--profile", bad], mentions: [bad, word])
        }
        // The slope is checked on the line used: a memory line of noisy readings that does not grow
        // does not stop latency advice.
        let mixed = root + "/mixed-profile.json"
        try Data("{\"name\": \"x\", \"description\": \"x\", \"latency\": {\"m\": 5.7e-6, \"b\": 17.9}, \"memory\": {\"m\": -1.2e-5, \"b\": 9}}".utf8)
            .write(to: URL(fileURLWithPath: mixed))
        XCTAssertEqual(try CLI.run(["advise", "--model", "vgg11", "--latency-ms", "25", "--profile", mixed]).status, 0)
        try CLI.fails(["advise", "--model", "vgg11", "--memory-mb", "50", "--profile", mixed], mentions: [mixed, "slope"])
        try CLI.fails(["advise", "--model", "vgg11", "--latency-ms", "5", "--fit", root + "/none.json"], mentions: [root + "/none.json"])
        try CLI.fails(["advise", "--model", "vgg11", "--latency-ms", "5", "--save-profile", saved], status: 64, mentions: ["--fit"])
    }
}
