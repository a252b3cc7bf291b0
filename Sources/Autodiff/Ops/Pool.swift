import CKernels
import Foundation

/// Pooling: max pool, average pool and global average pool over NCHW planes.

/// The sizes of one 2-D pooling, validated.
public struct Pool2DGeometry: Equatable, Sendable {
    public let planes: Int, height: Int, width: Int
    public let kernelH: Int, kernelW: Int, strideH: Int, strideW: Int, padH: Int, padW: Int
    public let outH: Int, outW: Int

    /// Checks a pooling's shapes (PyTorch's rules, `ceil_mode=False`).
    /// - Parameter input: [N, C, H, W]
    public static func validate(_ op: String, input: [Int], kernel: (Int, Int), stride: (Int, Int),
                                padding: (Int, Int)) throws -> Pool2DGeometry {
        try require(input.count == 4, op, "input \(input) must be [N, C, H, W]")
        try require(kernel.0 >= 1 && kernel.1 >= 1 && stride.0 >= 1 && stride.1 >= 1, op,
                    "kernel \(kernel) and stride \(stride) must be >= 1")
        try require(padding.0 >= 0 && padding.1 >= 0 && 2 * padding.0 <= kernel.0 && 2 * padding.1 <= kernel.1, op,
                    "padding \(padding) must be between 0 and half the kernel \(kernel)")
        try require(input[2] + 2 * padding.0 >= kernel.0 && input[3] + 2 * padding.1 >= kernel.1, op,
                    "input \(input) with padding \(padding) is smaller than the kernel \(kernel)")
        return Pool2DGeometry(planes: input[0] * input[1], height: input[2], width: input[3],
                              kernelH: kernel.0, kernelW: kernel.1, strideH: stride.0, strideW: stride.1,
                              padH: padding.0, padW: padding.1,
                              outH: (input[2] + 2 * padding.0 - kernel.0) / stride.0 + 1,
                              outW: (input[3] + 2 * padding.1 - kernel.1) / stride.1 + 1)
    }

    var inPlane: Int { height * width }
    var outPlane: Int { outH * outW }
    /// Input rows of window row `oh`, clipped to the image.
    @inline(__always) func rows(_ oh: Int) -> Range<Int> {
        max(0, oh * strideH - padH)..<min(height, oh * strideH - padH + kernelH)
    }
    /// Input columns of window column `ow`, clipped to the image.
    @inline(__always) func columns(_ ow: Int) -> Range<Int> {
        max(0, ow * strideW - padW)..<min(width, ow * strideW - padW + kernelW)
    }
}

/// Max pooling; padding counts as minus infinity, as in PyTorch. A NaN in a window makes its
/// output NaN, so a diverging run surfaces.
/// - Parameter x: [N, C, H, W]
/// - Returns: [N, C, outH, outW]
public func maxPool2d(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil,
                      padding: (Int, Int) = (0, 0)) -> Tensor {
    let g = validated {
        try Pool2DGeometry.validate("maxpool2d", input: x.shape, kernel: kernel, stride: stride ?? kernel, padding: padding)
    }
    let out = Tensor(uninitialized: [x.shape[0], x.shape[1], g.outH, g.outW])
    let px = x.data, po = out.data
    let pairs = g.kernelH == 2 && g.kernelW == 2 && g.strideH == 2 && g.strideW == 2 && g.padH == 0 && g.padW == 0
    if pairs {  // VGG's and most nets' 2x2/2 pooling: 16 windows at a time in C
        Parallel.forRange(g.planes, grain: max(1, 4096 / max(g.outPlane, 1))) { r in
            ns_maxpool2x2_forward(r.lowerBound, r.count, g.height, g.width, px, po)
        }
    } else {
        // Other windows (ResNet-50's 3x3/2 with padding): across blocks of channels, vectorized.
        let channels = x.shape[1], lanes = Conv2DTuning.depthwiseLanes
        var geometry = ns_depthwise_geometry(H: g.height, W: g.width, KH: g.kernelH, KW: g.kernelW, SH: g.strideH,
                                             SW: g.strideW, PH: g.padH, PW: g.padW, OH: g.outH, OW: g.outW,
                                             IC: channels, OC: channels)
        let items = x.shape[0] * ((channels + lanes - 1) / lanes)
        withUnsafePointer(to: &geometry) { geometry in
            Parallel.forRange(items, grain: max(1, 4096 / max(g.outPlane * lanes, 1))) { r in
                ns_maxpool_blocked(geometry, r.lowerBound, r.count, px, po)
            }
        }
    }
    let kind = OpKind.maxPool(kernel: Pair(kernel), stride: Pair(stride ?? kernel), padding: Pair(padding))
    Trace.note(kind, Operands(x), out)
    if Tape.needsRecord(x) {
        Tape.record(kind, Operands(x), out) { d in
            // The gradient goes to the first element of the window (in row-major order) equal
            // to the maximum, the one PyTorch's kernel picks. Found again here rather than saved,
            // so the forward pass has no data-dependent branch.
            let pd = d.data
            if pairs && g.height % 2 == 0 && g.width % 2 == 0 && x.grad == nil {
                // 2x2/2 windows tile the plane: a fresh gradient is written whole, window by window.
                let dx = x.gradDestination().grad.data
                Parallel.forRange(g.planes, grain: max(1, 4096 / max(g.outPlane, 1))) { r in
                    ns_maxpool2x2_backward(r.lowerBound, r.count, g.height, g.width, px, po, pd, dx)
                }
                return
            }
            let dx = x.gradBuffer().data
            Parallel.forEach(g.planes, grain: max(1, 4096 / max(g.outPlane, 1))) { p in
                let src = px + p * g.inPlane, dst = dx + p * g.inPlane
                let outp = po + p * g.outPlane, dOut = pd + p * g.outPlane
                for oh in 0..<g.outH {
                    let rows = g.rows(oh)
                    for ow in 0..<g.outW {
                        let columns = g.columns(ow)
                        let m = outp[oh * g.outW + ow]
                        var at = rows.lowerBound * g.width + columns.lowerBound
                        // Scan backwards so the last match seen is the first in order.
                        var ih = rows.upperBound - 1
                        while ih >= rows.lowerBound {
                            var iw = columns.upperBound - 1
                            while iw >= columns.lowerBound {
                                let idx = ih &* g.width &+ iw
                                at = src[idx] == m ? idx : at
                                iw &-= 1
                            }
                            ih &-= 1
                        }
                        dst[at] += dOut[oh * g.outW + ow]
                    }
                }
            }
        }
    }
    return out
}

/// Average pooling. Padded positions count as zeros in the divisor (`count_include_pad=True`,
/// PyTorch's default).
/// - Parameter x: [N, C, H, W]
/// - Returns: [N, C, outH, outW]
public func avgPool2d(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int)? = nil,
                      padding: (Int, Int) = (0, 0)) -> Tensor {
    let g = validated {
        try Pool2DGeometry.validate("avgpool2d", input: x.shape, kernel: kernel, stride: stride ?? kernel, padding: padding)
    }
    let out = Tensor(uninitialized: [x.shape[0], x.shape[1], g.outH, g.outW])
    let px = x.data, po = out.data
    let scale = 1 / Float(g.kernelH * g.kernelW)
    Parallel.forEach(g.planes, grain: max(1, 4096 / max(g.outPlane, 1))) { p in
        let src = px + p * g.inPlane
        for oh in 0..<g.outH {
            for ow in 0..<g.outW {
                var s: Float = 0
                for ih in g.rows(oh) { for iw in g.columns(ow) { s += src[ih * g.width + iw] } }
                po[p * g.outPlane + oh * g.outW + ow] = s * scale
            }
        }
    }
    let kind = OpKind.avgPool(kernel: Pair(kernel), stride: Pair(stride ?? kernel), padding: Pair(padding))
    Trace.note(kind, Operands(x), out)
    if Tape.needsRecord(x) {
        Tape.record(kind, Operands(x), out) { d in
            let dx = x.gradBuffer().data, pd = d.data
            Parallel.forEach(g.planes, grain: max(1, 4096 / max(g.outPlane, 1))) { p in
                let dst = dx + p * g.inPlane
                for oh in 0..<g.outH {
                    for ow in 0..<g.outW {
                        let v = pd[p * g.outPlane + oh * g.outW + ow] * scale
                        for ih in g.rows(oh) { for iw in g.columns(ow) { dst[ih * g.width + iw] += v } }
                    }
                }
            }
        }
    }
    return out
}

/// Global average pooling, ONNX's `GlobalAveragePool`.
/// - Parameter x: [N, C, H, W]
/// - Returns: [N, C, 1, 1]
public func globalAvgPool(_ x: Tensor) -> Tensor {
    validated { try require(x.shape.count == 4, "global_avgpool", "input \(x.shape) must be [N, C, H, W]") }
    let planes = x.shape[0] * x.shape[1], plane = x.shape[2] * x.shape[3]
    let out = Tensor(uninitialized: [x.shape[0], x.shape[1], 1, 1])
    let px = x.data, po = out.data, scale = 1 / Float(plane)
    if plane % 16 == 0 && plane <= 256 {
        // Small planes (4x4, 8x8, 16x16: a CIFAR net's last maps), 16 planes a vector.
        Parallel.forRange(planes, grain: max(16, 4096 / plane)) { r in
            ns_plane_means(r.lowerBound, r.count, plane, px, scale, po)
        }
    } else {
        Parallel.forEach(planes, grain: max(1, 4096 / max(plane, 1))) { p in po[p] = sum(px + p * plane, plane) * scale }
    }
    Trace.note(.globalAvgPool, Operands(x), out)
    if Tape.needsRecord(x) {
        Tape.record(.globalAvgPool, Operands(x), out) { d in
            let dx = x.gradBuffer().data, pd = d.data
            Parallel.forEach(planes, grain: max(1, 4096 / max(plane, 1))) { p in
                let v = pd[p] * scale, dst = dx + p * plane
                for i in 0..<plane { dst[i] += v }
            }
        }
    }
    return out
}
