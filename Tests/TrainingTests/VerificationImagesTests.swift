import Autodiff
import Datasets
import Foundation
import Nets
import TestSupport
import Training
import XCTest

/// The images `export` verifies a model with.
final class VerificationImagesTests: XCTestCase {
    /// [1, 1, 2, 2] = [[1, 2], [3, 4]] to 3 channels of 5x5: factor 2, the last row and column
    /// repeat the image's last.
    func testAdaptRepeatsChannelsAndScalesUp() {
        let x = Tensor(shape: [1, 1, 2, 2], values: [1, 2, 3, 4])
        let y = VerificationImages.adapt(x, channels: 3, size: 5)
        XCTAssertEqual(y.shape, [1, 3, 5, 5])
        let plane: [Float] = [1, 1, 2, 2, 2,
                              1, 1, 2, 2, 2,
                              3, 3, 4, 4, 4,
                              3, 3, 4, 4, 4,
                              3, 3, 4, 4, 4]
        XCTAssertEqual(Array(UnsafeBufferPointer(start: y.data, count: y.count)), plane + plane + plane)
        let same = VerificationImages.adapt(x, channels: 1, size: 2)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: same.data, count: same.count)), [1, 2, 3, 4])
    }

    func testTheCheckpointsDatasetAndItsRefusals() throws {
        let data = try temporaryFolder("verify-images").path
        try writeFashionMNIST(in: data, train: 20, test: 7)
        let net = NetDescription.uniform(.vgg11, ratio: 0.0625, inChannels: 1, imageSize: 32, classes: 10)
        let normalization = InputNormalization(mean: [0.3], std: [0.2])
        let chosen = try VerificationImages.choose(for: net, checkpoint: "c.h5", requested: nil, trainedOn: .fashionMNIST,
                                                   normalization: normalization, directory: data, count: 5)
        XCTAssertEqual(chosen.images.shape, [5, 1, 32, 32])
        XCTAssertEqual(chosen.source, "5 fashion-mnist test images")
        let expected = try DatasetSources.testImages(.fashionMNIST, directory: data, normalization: normalization, count: 5)
        XCTAssertEqual(Array(UnsafeBufferPointer(start: chosen.images.data, count: chosen.images.count)),
                       Array(UnsafeBufferPointer(start: expected.data, count: expected.count)))
        XCTAssertEqual(try VerificationImages.choose(for: net, checkpoint: "c.h5", requested: .fashionMNIST, trainedOn: nil,
                                                     normalization: normalization, directory: data, count: 100).images.shape[0], 7)

        func refusal(_ requested: DatasetKind?, _ trainedOn: DatasetKind?, directory: String?, _ expected: String) {
            XCTAssertThrowsError(try VerificationImages.choose(for: net, checkpoint: "c.h5", requested: requested, trainedOn: trainedOn,
                                                               normalization: nil, directory: directory, count: 5)) { error in
                guard case let TrainingError.invalidConfig(message)? = error as? TrainingError else { return XCTFail("\(error)") }
                XCTAssertTrue(message.contains(expected), message)
            }
        }
        refusal(.cifar10, nil, directory: data, "c.h5 takes 1x32x32 images; cifar10 has 3x32x32")
        refusal(nil, .cifar100, directory: data, "c.h5 takes 1x32x32 images; cifar100 has 3x32x32")
        // An explicit --dataset that is not there is not replaced by Fashion-MNIST.
        refusal(.fashionMNIST, nil, directory: data + "/missing", "--dataset fashion-mnist: ")
    }
}
