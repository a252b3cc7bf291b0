import Datasets
import Foundation
import Nets
import Reporting
import TestSupport
import XCTest

/// `advise`: TECS Eq. 1 on the built-in profiles, refusals, and profiles fitted to bench files.
final class AdvisorTests: XCTestCase {
    func testEveryBuiltInProfileAnswers() throws {
        let po = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 3, imageSize: 32, classes: 10).parameterCount
        for profile in DeviceProfile.builtIn {
            let line = try XCTUnwrap(profile.latency)
            // A target a quarter of the way from b to the unscaled net's latency needs a ratio below 1.
            let target = line.b + 0.25 * line.m * Double(po)
            let a = try Advice.make(.vgg11, .cifar10, profile: profile, latency: target, memory: nil, descent: nil)
            XCTAssertEqual(a.verdict, "scale", profile.name)
            let budget = (target - line.b) / line.m
            XCTAssertEqual(try XCTUnwrap(a.params_budget), budget, accuracy: 1e-6 * budget)
            let s = try XCTUnwrap(a.ratio), uniform = try XCTUnwrap(a.uniform)
            // S is sqrt(P_t / P_o) = 0.5, lowered only as far as rounding needs to stay within budget.
            XCTAssertLessThanOrEqual(s, 0.5 + 1e-12)
            XCTAssertGreaterThan(s, 0.5 * 0.95)
            XCTAssertLessThanOrEqual(Double(uniform.params), budget)
            XCTAssertLessThanOrEqual(uniform.predicted, target)
            XCTAssertEqual(uniform.widths, Architecture.vgg11.uniformWidths(ratio: s))
            XCTAssertEqual(a.r, line.r)
            // Beyond the unscaled net: it already fits.
            let easy = try Advice.make(.vgg11, .cifar10, profile: profile, latency: line.b + 2 * line.m * Double(po), memory: nil, descent: nil)
            XCTAssertEqual(easy.verdict, "fits")
            XCTAssertEqual(easy.uniform?.params, po)
        }
    }

    func testTargetsAtOrBelowTheInterceptAreRefused() throws {
        let cpu = try DeviceProfile.named("cortex-a72-fp32")
        for target in [17.9, 10.0] {
            let a = try Advice.make(.vgg11, .cifar10, profile: cpu, latency: target, memory: nil, descent: nil)
            XCTAssertEqual(a.verdict, "unreachable")
            XCTAssertNil(a.ratio)
            XCTAssertNil(a.uniform)
            XCTAssertTrue(a.message.contains("intercept b = 17.9") && a.message.contains("cortex-a72-int8"), a.message)
        }
        // The FPGA profile has no memory model; the GPU's memory fit is weak (r = 0.391).
        XCTAssertThrowsError(try Advice.make(.vgg11, .cifar10, profile: try DeviceProfile.named("zcu104-int8"), latency: nil, memory: 20,
                                             descent: nil))
        let gpu = try Advice.make(.resnet50, .cifar10, profile: try DeviceProfile.named("agx-xavier-fp32"), latency: nil, memory: 70, descent: nil)
        XCTAssertTrue(gpu.weak_fit)
        XCTAssertTrue(gpu.text.contains("weak fit"))
        XCTAssertThrowsError(try DeviceProfile.named("raspberry-pi-5")) { XCTAssertTrue("\($0)".contains("cortex-a72-fp32")) }
    }

    /// A line with a negative intercept (fitted on large nets) predicts small nets below zero:
    /// the advice says so; a target far past the unscaled net prints S readably.
    func testNegativeInterceptIsExplainedAndHugeRatiosPrintShort() throws {
        let profile = try JSONDecoder().decode(DeviceProfile.self, from: Data(
            #"{"name": "fitted", "description": "a fit", "latency": {"m": 5.7e-6, "b": -5, "r": 0.9}}"#.utf8))
        let a = try Advice.make(.vgg11, .cifar10, profile: profile, latency: 1, memory: nil, descent: nil)
        XCTAssertTrue(a.message.contains("intercept b = -5 ms is negative") && a.message.contains("877193 parameters"), a.message)
        let easy = try Advice.make(.vgg11, .cifar10, profile: try DeviceProfile.named("cortex-a72-fp32"), latency: 1e300, memory: nil, descent: nil)
        XCTAssertEqual(easy.verdict, "fits")
        XCTAssertLessThan(easy.message.count, 300, easy.message)
    }

    /// A synthetic bench file on exact lines: the fit recovers m and b, with r = 1.
    func testFitRecoversASyntheticProfile() throws {
        let folder = try temporaryFolder("advise")
        func timing(_ params: Int, backend: String = "ort", batch: Int = 1) -> [String: Any] {
            let latency = 2e-6 * Double(params) + 0.5, memory = 3e-6 * Double(params) + 10
            return ["model": "net\(params)", "backend": backend, "precision": "fp32", "input_size": 32, "batch": batch, "threads": 2,
                    "params": params, "memory_mb": memory, "memory_in_child": true, "warmup": 1, "runs": 1,
                    "trials": [["mean_ms": latency, "median_ms": latency, "p90_ms": latency]], "mean_ms": latency, "median_ms": latency,
                    "p90_ms": latency, "images_per_s": 1000 / latency, "budget_ms": 16.67, "budget_share": latency / 16.67]
        }
        let file = folder.appendingPathComponent("bench-infer.json").path
        let timings = [100_000, 400_000, 1_600_000, 6_400_000].map { timing($0) } + [timing(1_000, batch: 8)]
        try JSONSerialization.data(withJSONObject: ["timings": timings]).write(to: URL(fileURLWithPath: file))
        let profile = try DeviceProfile.fit([file], batch: 1, backend: nil, precision: nil)
        let latency = try XCTUnwrap(profile.latency), memory = try XCTUnwrap(profile.memory)
        XCTAssertEqual(latency.m, 2e-6, accuracy: 1e-15)
        XCTAssertEqual(latency.b, 0.5, accuracy: 1e-9)
        XCTAssertEqual(memory.m, 3e-6, accuracy: 1e-15)
        XCTAssertEqual(memory.b, 10, accuracy: 1e-9)
        XCTAssertEqual(try XCTUnwrap(latency.r), 1, accuracy: 1e-12)
        XCTAssertEqual(latency.n, 4)
        XCTAssertEqual(try XCTUnwrap(latency.p), 0, accuracy: 1e-12)
        // Two backends in the files need choosing.
        let mixed = folder.appendingPathComponent("mixed.json").path
        try JSONSerialization.data(withJSONObject: ["timings": timings + [timing(200_000, backend: "swift")]]).write(to: URL(fileURLWithPath: mixed))
        XCTAssertThrowsError(try DeviceProfile.fit([mixed], batch: 1, backend: nil, precision: nil)) { XCTAssertTrue("\($0)".contains("--backend")) }
        XCTAssertEqual(try DeviceProfile.fit([mixed], batch: 1, backend: "ort", precision: nil).latency?.n, 4)
        XCTAssertThrowsError(try DeviceProfile.fit([file], batch: 8, backend: nil, precision: nil)) { XCTAssertTrue("\($0)".contains("two sizes")) }
        let bad = folder.appendingPathComponent("bad.json").path
        try Data("{}".utf8).write(to: URL(fileURLWithPath: bad))
        XCTAssertThrowsError(try DeviceProfile.fit([bad], batch: 1, backend: nil, precision: nil)) { XCTAssertTrue("\($0)".contains(bad)) }
        // Times no measurement gives (a NaN slope from 1e308 ms): named with the file and field.
        for (field, value) in [("median_ms", 1e308), ("memory_mb", -5.0)] {
            let huge = folder.appendingPathComponent("huge-\(field).json").path
            var edited = timings
            edited[1][field] = value
            try JSONSerialization.data(withJSONObject: ["timings": edited]).write(to: URL(fileURLWithPath: huge))
            XCTAssertThrowsError(try DeviceProfile.fit([huge], batch: 1, backend: nil, precision: nil)) {
                XCTAssertTrue("\($0)".contains(huge) && "\($0)".contains(field), "\($0)")
            }
        }
    }

    /// Pearson's r, its p-value (checked against a numerical integral of Student's t density:
    /// t = 1.8257, 10 degrees of freedom, two-sided p = 0.097855), and R^2 = r^2 for a line.
    func testPearsonPValue() throws {
        // r = 0.5 with n = 12: t = 0.5 * sqrt(10 / 0.75).
        XCTAssertEqual(LeastSquares.twoSidedP(t: 0.5 * (10 / 0.75).squareRoot(), df: 10), 0.0978546, accuracy: 1e-6)
        XCTAssertEqual(LeastSquares.twoSidedP(t: 0, df: 7), 1, accuracy: 1e-12)
        let fit = try XCTUnwrap(LeastSquares(x: [1, 2, 3, 4, 5], y: [2, 1, 4, 3, 5]))
        XCTAssertEqual(fit.r * fit.r, fit.r2, accuracy: 1e-12)
        XCTAssertEqual(fit.r, 0.8, accuracy: 1e-12)
        // r = 0.8 with n = 5: t = 0.8 * sqrt(3 / 0.36) = 2.3094, p = 0.10409 (two-sided, df 3).
        XCTAssertEqual(try XCTUnwrap(fit.p), 0.104088, accuracy: 1e-5)
    }
}
