import Foundation
import XCTest

/// `neuralscale bench infer` on a tiny checkpoint, its int8 model and fresh nets: figures for
/// both backends, profiles, input sizes, the files of --out, and bad inputs refused.
final class BenchInferTests: XCTestCase {
    var root: String!
    var data: String!

    override func setUpWithError() throws {
        (root, data) = try CLI.trainedRun("infer")
    }

    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: root) }

    func report(_ r: CLIRun, file: StaticString = #filePath, line: UInt = #line) throws -> [String: Any] {
        XCTAssertEqual(r.status, 0, r.text, file: file, line: line)
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.output.utf8)) as? [String: Any], file: file, line: line)
    }

    func testBothBackendsProfilesAndFiles() throws {
        let best = root + "/run/best.h5", int8 = root + "/int8.onnx", out = root + "/bench"
        XCTAssertEqual(try CLI.run(["quantize", "--checkpoint", best, "--onnx", int8, "--data-dir", data, "--calibration", "10", "--no-verify"]).status, 0)
        // A killed bench's temporary (its process gone) is removed by the next one into the folder.
        try FileManager.default.createDirectory(atPath: out, withIntermediateDirectories: true)
        let stale = out + "/.latency-vs-batch.svg.tmp-999999999"
        try Data("half".utf8).write(to: URL(fileURLWithPath: stale))
        let r = try report(try CLI.run(["bench", "infer", "--checkpoint", best, "--onnx", int8, "--batch-sizes", "1,4", "--warmup", "1",
                                        "--runs", "3", "--trials", "2", "--budget-ms", "10", "--profile", "--out", out, "--json"]))
        let timings = try XCTUnwrap(r["timings"] as? [[String: Any]])
        XCTAssertFalse(FileManager.default.fileExists(atPath: stale))
        // The checkpoint's trials in pairs (engine, ONNX Runtime), batch by batch; the int8 model on ONNX Runtime alone.
        XCTAssertEqual(timings.map { $0["backend"] as? String }, ["swift", "ort", "swift", "ort", "ort", "ort"])
        XCTAssertEqual(timings.map { $0["model"] as? String }, [best, best, best, best, int8, int8])
        XCTAssertEqual(timings.map { $0["precision"] as? String }, ["fp32", "fp32", "fp32", "fp32", "int8", "int8"])
        XCTAssertEqual(timings.map { $0["batch"] as? Int }, [1, 1, 4, 4, 1, 4])
        // Each pair's ratio is its engine trial's median over its ONNX Runtime trial's.
        let paired = try XCTUnwrap(r["paired"] as? [[String: Any]])
        XCTAssertEqual(paired.map { $0["batch"] as? Int }, [1, 4])
        for (p, at) in zip(paired, [0, 2]) {
            XCTAssertEqual(p["model"] as? String, best)
            let medians = { (t: [String: Any]) in (t["trials"] as! [[String: Any]]).map { $0["median_ms"] as! Double } }
            let expected = zip(medians(timings[at]), medians(timings[at + 1])).map { $0 / $1 }
            let ratios = try XCTUnwrap(p["ratios"] as? [Double])
            XCTAssertEqual(ratios.count, 2)
            for (a, b) in zip(ratios, expected) { XCTAssertEqual(a, b, accuracy: 1e-12 * b) }
            XCTAssertEqual(p["median_ratio"] as? Double ?? -1, (expected[0] + expected[1]) / 2, accuracy: 1e-12)
        }
        for t in timings {
            XCTAssertEqual((t["trials"] as? [Any])?.count, 2)
            let mean = t["mean_ms"] as? Double ?? -1, p90 = t["p90_ms"] as? Double ?? -1
            XCTAssertGreaterThan(mean, 0)
            XCTAssertGreaterThanOrEqual(p90, t["median_ms"] as? Double ?? .infinity)
            XCTAssertEqual(t["images_per_s"] as? Double ?? 0, 1000 * Double(t["batch"] as! Int) / mean, accuracy: 1e-6 * mean)
            XCTAssertEqual(t["budget_share"] as? Double ?? 0, mean / 10, accuracy: 1e-9)
            XCTAssertEqual(t["memory_in_child"] as? Bool, true, "\(t)")
            XCTAssertEqual(t["input_size"] as? Int, 32)
            // The tiny net's parameters, from the checkpoint and from the int8 model's metadata.
            let params = try XCTUnwrap(t["params"] as? Int), memory = try XCTUnwrap(t["memory_mb"] as? Double)
            XCTAssertEqual(t["memory_mb_per_mparam"] as? Double ?? 0, memory / (Double(params) / 1e6), accuracy: 1e-9 * abs(memory) * 1e6)
        }
        XCTAssertEqual(Set(timings.map { $0["params"] as? Int }).count, 1)
        XCTAssertEqual(Set(timings.map { $0["macs"] as? Int }).count, 1)

        // One profile per backend and model; the engine's and ONNX Runtime's MACs are counted
        // apart (the folded graph in Swift, shape inference on the model in Python) and agree.
        let profiles = try XCTUnwrap(r["profiles"] as? [[String: Any]])
        XCTAssertEqual(profiles.map { $0["backend"] as? String }, ["swift", "ort", "ort"])
        var macs: [Int] = []
        for p in profiles {
            let layers = try XCTUnwrap(p["layers"] as? [[String: Any]])
            let ms = layers.map { $0["ms"] as! Double }
            XCTAssertEqual(ms, ms.sorted(by: >), "sorted slowest first")
            XCTAssertEqual(ms.reduce(0, +), p["layers_ms"] as? Double ?? -1, accuracy: 1e-6)
            XCTAssertEqual(layers.map { $0["share"] as! Double }.reduce(0, +), 1, accuracy: 1e-9)
            XCTAssertTrue(layers.contains { $0["layer"] as? String == "features.0" && ($0["macs"] as? Int ?? 0) > 0 }, "\(layers)")
            macs.append(layers.reduce(0) { $0 + ($1["macs"] as! Int) })
        }
        // The engine's convolutions name the algorithm they run.
        let engineLayers = try XCTUnwrap(profiles[0]["layers"] as? [[String: Any]])
        let first = try XCTUnwrap(engineLayers.first { $0["layer"] as? String == "features.0" })
        XCTAssertTrue((first["ops"] as? [String] ?? []).contains { $0.hasPrefix("Conv (") && $0.hasSuffix(")") }, "\(first)")
        XCTAssertEqual(macs[0], macs[1])
        XCTAssertEqual(macs[1], macs[2])

        let files = try FileManager.default.contentsOfDirectory(atPath: out).sorted()
        XCTAssertEqual(files, ["bench-infer.csv", "bench-infer.json", "latency-vs-batch.svg", "memory-vs-batch.svg", "profile-1-swift.svg",
                               "profile-2-ort.svg", "profile-3-ort.svg", "profile.csv"])
        let csv = try String(contentsOfFile: out + "/bench-infer.csv", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(csv.count, 7)
        XCTAssertTrue(csv[0].hasPrefix("model,backend,precision,input_size,batch,"))
        for svg in files where svg.hasSuffix(".svg") {
            let text = try String(contentsOfFile: out + "/" + svg, encoding: .utf8)
            XCTAssertTrue(text.hasPrefix("<svg") && text.hasSuffix("</svg>\n"), svg)
        }
        let saved = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/bench-infer.json"))) as? [String: Any])
        let machine = try XCTUnwrap(saved["machine"] as? [String: Any])
        XCTAssertNotNil(machine["onnxruntime"] as? String)
        XCTAssertTrue((machine["openblas"] as? String ?? "").contains("OpenBLAS"))
        XCTAssertEqual((saved["timings"] as? [Any])?.count, 6)
        XCTAssertEqual((saved["paired"] as? [Any])?.count, 2)

        // --no-alternate: all of the engine's trials, then all of ONNX Runtime's; no pairs.
        let apart = try report(try CLI.run(["bench", "infer", "--checkpoint", best, "--batch-sizes", "1,2", "--warmup", "0", "--runs", "1",
                                            "--trials", "1", "--no-alternate", "--json"]))
        XCTAssertEqual((apart["timings"] as? [[String: Any]])?.map { $0["backend"] as? String }, ["swift", "swift", "ort", "ort"])
        XCTAssertEqual((apart["paired"] as? [Any])?.count, 0)
        // The table says where the ratio comes from.
        let table = try CLI.run(["bench", "infer", "--checkpoint", best, "--batch-sizes", "1", "--warmup", "0", "--runs", "1", "--trials", "3"])
        XCTAssertEqual(table.status, 0, table.text)
        XCTAssertTrue(table.output.contains("trials in pairs") && table.output.contains("x  ("), table.output)
    }

    /// Nets ending in global pooling run on other input sizes; VGG-11 and a fixed-size ONNX
    /// model say they cannot.
    func testInputSizes() throws {
        let fresh = try report(try CLI.run(["bench", "infer", "--model", "mobilenetv2", "--ratios", "0.125", "--input-sizes", "32,72",
                                            "--backend", "both", "--batch-sizes", "2", "--warmup", "0", "--runs", "2", "--trials", "1",
                                            "--profile", "--profile-batch", "2", "--json"]))
        let timings = try XCTUnwrap(fresh["timings"] as? [[String: Any]])
        XCTAssertEqual(timings.map { $0["input_size"] as? Int }, [32, 32, 72, 72])
        XCTAssertEqual(timings.map { $0["backend"] as? String }, ["swift", "ort", "swift", "ort"])
        XCTAssertEqual(timings.map { $0["model"] as? String }, Array(repeating: "mobilenetv2 x0.125", count: 4))
        // The same parameters at both sizes; the convs' MACs about (72/32)^2 = 5 times as many at
        // 72x72 (the classifier's the same), counted the same for both backends.
        XCTAssertEqual(Set(timings.map { $0["params"] as? Int }).count, 1)
        XCTAssertEqual(timings[0]["macs"] as? Int, timings[1]["macs"] as? Int)
        XCTAssertEqual(timings[2]["macs"] as? Int, timings[3]["macs"] as? Int)
        let small = try XCTUnwrap(timings[0]["macs"] as? Int), large = try XCTUnwrap(timings[2]["macs"] as? Int)
        XCTAssertGreaterThan(large, 4 * small)
        XCTAssertLessThan(large, 6 * small)
        // The profiles' MACs: the engine's from its graph traced at the size, ONNX Runtime's from
        // shape inference on the model exported at that size.
        let profiles = try XCTUnwrap(fresh["profiles"] as? [[String: Any]])
        XCTAssertEqual(profiles.map { $0["input_size"] as? Int }, [32, 32, 72, 72])
        let sums = profiles.map { p in (p["layers"] as! [[String: Any]]).reduce(0) { $0 + ($1["macs"] as! Int) } }
        XCTAssertEqual(sums[0], sums[1])
        XCTAssertEqual(sums[2], sums[3])
        XCTAssertGreaterThan(sums[2], 4 * sums[0])

        let best = root + "/run/best.h5"
        let vgg = try report(try CLI.run(["bench", "infer", "--checkpoint", best, "--input-sizes", "32,64", "--backend", "swift",
                                          "--batch-sizes", "1", "--warmup", "0", "--runs", "1", "--trials", "1", "--json"]))
        XCTAssertEqual((vgg["timings"] as? [[String: Any]])?.map { $0["input_size"] as? Int }, [32])
        let skipped = try XCTUnwrap(vgg["skipped"] as? [String])
        XCTAssertEqual(skipped.count, 1)
        XCTAssertTrue(skipped[0].contains(best) && skipped[0].contains("cannot take 64x64") && skipped[0].contains("flattened map"), skipped[0])
        try CLI.fails(["bench", "infer", "--checkpoint", best, "--input-sizes", "64", "--backend", "swift", "--runs", "1", "--trials", "1"],
                      status: 64, mentions: ["nothing could be measured", "cannot take 64x64"])
        // An ONNX model with a fixed input size is timed at that size only.
        let model = root + "/vgg.onnx"
        XCTAssertEqual(try CLI.run(["export", "--checkpoint", best, "--onnx", model, "--no-verify"]).status, 0)
        // Exported again, by another process (another hash seed): the same bytes.
        let again = root + "/vgg-again.onnx"
        XCTAssertEqual(try CLI.run(["export", "--checkpoint", best, "--onnx", again, "--no-verify"]).status, 0)
        XCTAssertEqual(FileManager.default.contents(atPath: model), FileManager.default.contents(atPath: again),
                       "two exports of one checkpoint differ")
        let fixed = try report(try CLI.run(["bench", "infer", "--onnx", model, "--input-sizes", "32,64", "--batch-sizes", "1", "--warmup", "0",
                                            "--runs", "1", "--trials", "1", "--json"]))
        XCTAssertEqual((fixed["timings"] as? [[String: Any]])?.map { $0["input_size"] as? Int }, [32])
        XCTAssertEqual((fixed["skipped"] as? [String])?.first?.contains("fixed 32x32 input"), true, "\(fixed)")
    }

    /// --verify: the engine's outputs of the timed net checked against ONNX Runtime's, reported
    /// in the JSON (and the saved file) and in the table's text.
    func testVerifyChecksTheEngineAgainstONNXRuntime() throws {
        let best = root + "/run/best.h5", out = root + "/verified"
        let r = try report(try CLI.run(["bench", "infer", "--checkpoint", best, "--backend", "swift", "--batch-sizes", "4,1", "--warmup", "0",
                                        "--runs", "1", "--trials", "1", "--verify", "--out", out, "--json"]))
        let checks = try XCTUnwrap(r["verifications"] as? [[String: Any]])
        XCTAssertEqual(checks.count, 1)
        XCTAssertEqual(checks[0]["model"] as? String, best)
        XCTAssertEqual(checks[0]["batches"] as? [Int], [1, 4])
        XCTAssertEqual(checks[0]["input_size"] as? Int, 32)
        let result = try XCTUnwrap(checks[0]["result"] as? [String: Any])
        XCTAssertEqual(result["passed"] as? Bool, true, "\(result)")
        XCTAssertEqual(result["n"] as? Int, 5)
        XCTAssertLessThan(result["max_cosine_distance"] as? Double ?? 1, 1e-6)
        let saved = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/bench-infer.json"))) as? [String: Any])
        XCTAssertEqual((saved["verifications"] as? [Any])?.count, 1)
        // Without --verify the key is absent: nothing was checked. With NEURALSCALE_THREADS and
        // --threads 0 both backends run on those threads (ONNX Runtime once took every core).
        let unchecked = try report(try CLI.run(["bench", "infer", "--checkpoint", best, "--batch-sizes", "1", "--warmup", "0",
                                                "--runs", "1", "--trials", "1", "--json"], environment: ["NEURALSCALE_THREADS": "1"]))
        XCTAssertNil(unchecked["verifications"])
        let timings = try XCTUnwrap(unchecked["timings"] as? [[String: Any]])
        XCTAssertEqual(timings.map { $0["backend"] as? String }, ["swift", "ort"])
        XCTAssertEqual(timings.map { $0["threads"] as? Int }, [1, 1], "\(timings)")
        let table = try CLI.run(["bench", "infer", "--model", "mobilenetv2", "--ratios", "0.125", "--backend", "swift", "--batch-sizes", "2",
                                 "--warmup", "0", "--runs", "1", "--trials", "1", "--verify"])
        XCTAssertEqual(table.status, 0, table.text)
        XCTAssertTrue(table.output.contains("engine vs ONNX Runtime, mobilenetv2 x0.125 at 32px, batches 2: verification passed"), table.output)
        try CLI.fails(["bench", "infer", "--onnx", root + "/x.onnx", "--verify"], status: 64, mentions: ["--verify", "--checkpoint or --model"])
        try CLI.fails(["bench", "infer", "--model", "vgg11", "--latency-table", root + "/t.json", "--verify"], status: 64, mentions: ["--verify"])
    }

    func testBadInputsAreRefused() throws {
        let best = root + "/run/best.h5"
        try CLI.fails(["bench", "infer", "--checkpoint", best, "--batch-sizes", "0"], status: 64, mentions: ["--batch-sizes"])
        try CLI.fails(["bench", "infer", "--checkpoint", best, "--batch-sizes", "1,x"], status: 64, mentions: ["--batch-sizes", "1,x"])
        try CLI.fails(["bench", "infer", "--checkpoint", best, "--input-sizes", "16"], status: 64, mentions: ["--input-sizes", "32...1024"])
        try CLI.fails(["bench", "infer", "--checkpoint", best, "--budget-ms", "0"], status: 64, mentions: ["--budget-ms"])
        // A budget so small its shares overflow (JSON cannot hold them), or so large the charts'
        // log axes span hundreds of decades, is refused up front, not after the measurements.
        for budget in ["1e-310", "1e300"] {
            try CLI.fails(["bench", "infer", "--checkpoint", best, "--budget-ms", budget], status: 64, mentions: ["--budget-ms", "0.001...1e7"])
            try CLI.fails(["report", root + "/run/result.json", "--out", root + "/rep", "--budget-ms", budget], status: 64,
                          mentions: ["--budget-ms", "0.001...1e7"])
        }
        try CLI.fails(["bench", "infer", "--model", "vgg12"], status: 64, mentions: ["--model", "vgg12"])
        try CLI.fails(["bench", "infer", "--model", "vgg11", "--ratios", "0"], status: 64, mentions: ["--ratios"])
        // A ratio too small for a net is named with the flag it came from.
        let late = try CLI.fails(["bench", "infer", "--model", "vgg11", "--ratios", "1,0.0001", "--backend", "swift", "--runs", "1", "--trials", "1"],
                                 status: 64, mentions: ["--ratios 0.0001:", "that ratio too small"])
        XCTAssertFalse(late.errors.contains("[1/"), "refused before the first net is timed: \(late.errors)")
        try CLI.fails(["stats", "--model", "vgg11", "--dataset", "cifar10", "--ratios", "0.5,0.0001"], status: 64,
                      mentions: ["--ratios 0.0001:", "that ratio too small"])
        try CLI.fails(["bench", "infer", "--onnx", root + "/x.onnx", "--backend", "swift"], status: 64, mentions: ["--backend swift"])
        try CLI.fails(["bench", "infer"], status: 64, mentions: ["--checkpoint, --onnx or --model"])
        try Data("not a model".utf8).write(to: URL(fileURLWithPath: root + "/bad.onnx"))
        try CLI.fails(["bench", "infer", "--onnx", root + "/bad.onnx", "--runs", "1", "--trials", "1"], mentions: [root + "/bad.onnx", "not an ONNX model"])
        try CLI.fails(["bench", "infer", "--onnx", root + "/missing.onnx", "--runs", "1", "--trials", "1"], mentions: [root + "/missing.onnx"])
        try CLI.fails(["bench", "infer", "--checkpoint", root + "/missing.h5", "--backend", "swift"], mentions: [root + "/missing.h5"])
        try CLI.fails(["bench", "infer", "--checkpoint", root + "/missing.h5", "--backend", "ort"], mentions: [root + "/missing.h5"])
    }

    func testHelpExplainsEveryFlag() throws {
        let r = try CLI.run(["bench", "infer", "--help"])
        XCTAssertEqual(r.status, 0, r.text)
        for flag in ["--checkpoint", "--onnx", "--model", "--ratios", "--backend", "--batch-sizes", "--input-sizes", "--threads", "--warmup",
                     "--runs", "--trials", "--budget-ms", "--profile", "--profile-batch", "--json", "--out", "--alternate", "--no-alternate",
                     "--verify"] {
            XCTAssertTrue(r.output.contains(flag), "--help does not mention \(flag)")
        }
        XCTAssertFalse(r.output.contains("--worker"))
        let root = try CLI.run(["--help"])
        XCTAssertEqual(root.status, 0, root.text)
        XCTAssertTrue(root.output.contains("SUBCOMMANDS"), root.text)
        XCTAssertFalse(root.text.contains("CommandError"))
    }
}
