import Autodiff
import Training
import XCTest

/// `checkAgreement`: a data-parallel run's processes must hold the same weights.
final class AgreementTests: XCTestCase {
    /// A group of two whose other process holds `other` times this one's hash pieces (1: the
    /// same values).
    final class Pair: ProcessGroup {
        let rank = 0, size = 2
        let other: Double
        init(other: Double) { self.other = other }
        func sum(_ values: UnsafeMutablePointer<Float>, count: Int) {}
        func sum(_ values: UnsafeMutablePointer<Double>, count: Int) { for i in 0..<count { values[i] *= 1 + other } }
        func barrier() {}
    }

    func testAgreeingProcessesPassAndDifferingOnesStop() throws {
        var rng = RandomGenerator(seed: 5)
        let weights = [Tensor.randn([3, 4], using: &rng), Tensor.randn([7], using: &rng)]
        XCTAssertNoThrow(try checkAgreement(nil, on: weights, what: "weights"))
        XCTAssertNoThrow(try checkAgreement(Pair(other: 1), on: weights, what: "weights"))
        XCTAssertThrowsError(try checkAgreement(Pair(other: 0.5), on: weights, what: "weights")) { error in
            XCTAssertTrue("\(error)".contains("weights"), "\(error)")
        }
    }
}
