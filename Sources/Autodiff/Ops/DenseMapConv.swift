import CKernels
import Foundation

/// A frozen convolution of a batch on a map of fewer pixels than its kernel window has taps (a
/// 3x3 kernel on a 2x2 map, ResNet-50's third stage at 32x32 inputs): as one GEMM of the
/// images, each [C, H, W] read as one row of C·H·W values, with the kernels expanded once to
/// `[C·H·W, O·outH·outW]` (the weight joining input pixel q to output pixel p, or zero where no
/// tap does). On a 2x2 map each output pixel reads 4 of the 9 taps: im2col's product computes
/// all 9, the 5 zero ones included; this one the 4, with no patch matrix and no transforms.
/// For one image the expanded kernels (16 values per input and output channel against 9) cost
/// more to read than they save: a batch only (`Conv2DTuning.denseMapMinBatch`), and kernels of
/// at most `Conv2DTuning.denseMapMaxWeights` expanded values (larger ones keep Winograd's F(2,3),
/// which does as few multiplies).
struct DenseMapConv {
    let g: Conv2DGeometry

    static func takes(_ g: Conv2DGeometry) -> Bool {
        g.groups == 1 && !g.isDepthwise && g.batch >= Conv2DTuning.denseMapMinBatch && g.inPlane < g.kernelH * g.kernelW
            && g.outChannels * g.outPlane * g.inChannels * g.inPlane <= Conv2DTuning.denseMapMaxWeights
    }

    init?(_ g: Conv2DGeometry) {
        guard Self.takes(g) else { return nil }
        self.g = g
    }

    /// Rows of the expanded kernels (output channel and pixel) and columns (input channel and pixel).
    private var rows: Int { g.outChannels * g.outPlane }
    private var columns: Int { g.inChannels * g.inPlane }

    /// The kernels [O, C, kH, kW] expanded, input-major: `[c·Q + q][o·P + p]` = w[o][c][i][j] for
    /// the tap (i, j) that output pixel p reads input pixel q through, else 0 (the product's right
    /// operand as it is read, row by row).
    func expand(_ w: UnsafePointer<Float>) -> Tensor {
        let e = Tensor.zeros([rows * columns])
        let taps = g.kernelH * g.kernelW
        for oy in 0..<g.outH {
            for ox in 0..<g.outW {
                let p = oy * g.outW + ox
                for iy in 0..<g.height {
                    for ix in 0..<g.width {
                        let i = iy - oy * g.strideH + g.padH, j = ix - ox * g.strideW + g.padW
                        guard (0..<g.kernelH).contains(i), (0..<g.kernelW).contains(j) else { continue }
                        let q = iy * g.width + ix
                        for o in 0..<g.outChannels {
                            for c in 0..<g.inChannels {
                                e.data[(c * g.inPlane + q) * rows + o * g.outPlane + p] = w[(o * g.inChannels + c) * taps + i * g.kernelW + j]
                            }
                        }
                    }
                }
            }
        }
        return e
    }

    /// `out = act(conv(x) + bias (+ addend))`: the output channels split over the pieces, one
    /// product each over the whole batch (images as rows; each piece reads only its columns of the
    /// expanded kernels: `ns_gemm_rows`, both operands read in place, where they are whole vectors,
    /// else sgemm), then the bias, addend and activation over the piece's outputs.
    func forward(_ x: UnsafePointer<Float>, expanded: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                 adding addend: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>, activation: Activation) {
        let rows = self.rows, columns = self.columns, plane = g.outPlane
        Parallel.forPieces(g.outChannels) { channels in
            let first = channels.lowerBound * plane, width = channels.count * plane
            if width % Int(NS_GEMM_ROWS_COLUMNS) == 0 {
                ns_gemm_rows(g.batch, width, columns, x, columns, expanded + first, rows, out + first, rows)
            } else {
                BLAS.gemm(transA: false, transB: false, m: g.batch, n: width, k: columns, a: x, lda: columns,
                          b: expanded + first, ldb: rows, beta: 0, c: out + first, ldc: rows)
            }
            for n in 0..<g.batch {
                for o in channels {
                    let at = (n * g.outChannels + o) * plane, dst = out + at
                    if let addend {
                        for k in 0..<plane { dst[k] += addend[at + k] }
                    }
                    addBiasActivating(activation, dst, dst, plane, bias?[o] ?? 0)
                }
            }
        }
    }
}
