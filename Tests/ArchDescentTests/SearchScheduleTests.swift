import ArchDescent
import Autodiff
import XCTest

final class SearchScheduleTests: XCTestCase {
    /// 0.1 for the 10 warm-up epochs, then 0.01, divided by 1.5 every 10 epochs.
    func testReferenceSchedule() {
        let search = SearchLearningRate.reference()
        XCTAssertEqual(search.learningRate(epoch: 0), 0.1)
        XCTAssertEqual(search.learningRate(epoch: 9), 0.1)
        XCTAssertEqual(search.learningRate(epoch: 10), 0.01)
        XCTAssertEqual(search.learningRate(epoch: 19), 0.01)
        XCTAssertEqual(search.learningRate(epoch: 20), 0.01 / 1.5, accuracy: 1e-9)
        XCTAssertEqual(search.learningRate(epoch: 35), 0.01 / 2.25, accuracy: 1e-9)
    }

    /// SGD follows the search schedule it is given (Autodiff knows only the protocol).
    func testSGDFollowsTheSearchSchedule() {
        let opt = SGD(parameters: [], schedule: SearchLearningRate.reference(warmupLR: 0.05, warmupEpochs: 2))
        XCTAssertEqual(opt.learningRate, 0.05)
        opt.beginEpoch(1)
        XCTAssertEqual(opt.learningRate, 0.05)
        opt.beginEpoch(2)
        XCTAssertEqual(opt.learningRate, 0.01)
        opt.beginEpoch(12)
        XCTAssertEqual(opt.learningRate, 0.01 / 1.5, accuracy: 1e-9)
    }
}
