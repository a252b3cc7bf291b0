import Autodiff
import XCTest

/// A frozen convolution computes `act(conv2d(x, w, b))` on every path (im2col with one image or
/// several, Winograd with its kept kernels, depthwise), run after run.
final class FrozenConv2DTests: XCTestCase {
    private var rng = RandomGenerator(seed: 21)

    func testMatchesConvolutionThenActivation() {
        // (input [N, C, H, W], weight [O, C/g, k, k], stride, padding, groups)
        let cases: [([Int], [Int], Int, Int, Int)] = [
            ([1, 16, 8, 8], [24, 16, 3, 3], 1, 1, 1),   // Winograd when forced, im2col split by channels
            ([3, 16, 8, 8], [24, 16, 3, 3], 1, 1, 1),
            ([2, 8, 9, 7], [5, 8, 3, 3], 2, 1, 1),      // im2col, stride 2
            ([1, 8, 5, 5], [6, 8, 1, 1], 1, 0, 1),      // 1x1 in place
            ([3, 8, 5, 5], [6, 8, 1, 1], 1, 0, 1),
            ([2, 20, 6, 6], [20, 1, 3, 3], 1, 1, 20),   // depthwise
            ([2, 4, 6, 6], [8, 1, 3, 3], 2, 1, 4),      // depthwise with multiplier 2
        ]
        let saved = Conv2DTuning.winograd
        defer { Conv2DTuning.winograd = saved }
        for (xs, ws, stride, padding, groups) in cases {
            let x = Tensor.randn(xs, using: &rng), w = Tensor.randn(ws, using: &rng), b = Tensor.randn([ws[0]], using: &rng)
            for choice in [Conv2DTuning.Winograd.off, .tile(2), .tile(4)] {
                Conv2DTuning.winograd = choice
                let plain = Tape.withoutGradients {
                    conv2d(x, weight: w, bias: b, stride: (stride, stride), padding: (padding, padding), groups: groups)
                }
                for activation in Activation.allCases {
                    let expected: Tensor = Tape.withoutGradients {
                        switch activation {
                        case .identity: return plain
                        case .relu: return relu(plain)
                        case .relu6: return relu6(plain)
                        }
                    }
                    let frozen = FrozenConv2D(weight: w, bias: b, stride: (stride, stride), padding: (padding, padding),
                                              groups: groups, activation: activation)
                    for run in 1...2 {
                        assertClose(frozen(x), expected, rtol: 1e-5, atol: 1e-5,
                                    "\(xs) * \(ws) s\(stride) p\(padding) g\(groups), \(choice), \(activation), run \(run)")
                    }
                }
            }
        }
    }
}
