import Export
import XCTest

/// The latency table's calibration recovers a known constant, knee and per-parameter slope, and
/// keeps the slope at 0 when latency would fall with size.
final class LatencyCalibrationTests: XCTestCase {
    func testRecoversAKneeAndSlope() {
        let params = [500_000, 1_000_000, 2_000_000, 3_000_000, 4_000_000, 6_000_000, 9_000_000]
        let layers = params.map { 0.3 * Double($0) / 1e6 + 0.05 }
        let measured = zip(params, layers).map { p, l in l + 0.02 + 0.25 * Double(max(0, p - 2_000_000)) / 1e6 }
        let c = LatencyTableMeasurement.calibrate(params: params, layersMs: layers, measuredMs: measured)
        XCTAssertEqual(c.constantMs, 0.02, accuracy: 1e-9)
        XCTAssertEqual(c.perMParamMs, 0.25, accuracy: 1e-9)
        XCTAssertEqual(c.kneeParams, 2_000_000)
    }

    func testNoSlopeWhenTheResidualFalls() {
        let params = [1_000_000, 2_000_000, 4_000_000]
        let layers = [1.0, 2.0, 4.0]
        let measured = [1.1, 2.05, 3.9]
        let c = LatencyTableMeasurement.calibrate(params: params, layersMs: layers, measuredMs: measured)
        XCTAssertEqual(c.perMParamMs, 0)
        XCTAssertEqual(c.kneeParams, 0)
        XCTAssertLessThan(c.constantMs, 0.1)
        XCTAssertGreaterThan(c.constantMs, -0.1)
    }

    /// The default step follows the CPU's NCHWc block: 16 floats with AVX-512F only.
    func testDefaultStepIsTheNCHWcBlock() {
        let avx512 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512f avx512dq avx512vl\nbugs\t\t: spectre_v1\n"
        let avx2 = "processor\t: 0\nflags\t\t: fpu sse2 avx avx2 fma avx512_vnni_like\n"
        let arm = "processor\t: 0\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
        XCTAssertEqual(LatencyTableMeasurement.nchwcBlock(cpuinfo: avx512), 16)
        XCTAssertEqual(LatencyTableMeasurement.nchwcBlock(cpuinfo: avx2), 8)
        XCTAssertEqual(LatencyTableMeasurement.nchwcBlock(cpuinfo: arm), 8)
        XCTAssertEqual(LatencyTableMeasurement.nchwcBlock(cpuinfo: ""), 8)
    }
}
