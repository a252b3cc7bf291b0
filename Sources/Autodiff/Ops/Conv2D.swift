/// 2-D convolution (PyTorch's `conv2d`: cross-correlation) with stride, zero padding and groups.
///
/// Dense and grouped convolutions run as im2col plus one `cblas_sgemm` per group over a chunk of
/// images, so the GEMMs stay large even for the 2x2 maps at the end of VGG. Depthwise
/// convolutions (one input channel per group) use a direct kernel instead: their GEMMs would be
/// a single row deep.

/// The sizes of one convolution, validated.
public struct Conv2DGeometry: Equatable, Sendable {
    public let batch: Int, inChannels: Int, height: Int, width: Int
    public let outChannels: Int, kernelH: Int, kernelW: Int
    public let strideH: Int, strideW: Int, padH: Int, padW: Int, groups: Int
    public let outH: Int, outW: Int

    public var inPerGroup: Int { inChannels / groups }
    public var outPerGroup: Int { outChannels / groups }
    /// Rows of one group's im2col matrix: input channels x kernel taps.
    public var colRows: Int { inPerGroup * kernelH * kernelW }
    public var outPlane: Int { outH * outW }
    public var inPlane: Int { height * width }
    /// True for depthwise convolutions (one input channel per group), which use the direct kernel.
    public var isDepthwise: Bool { groups > 1 && inPerGroup == 1 }
    /// Floating-point operations of the forward pass (a multiply-add counts 2).
    public var forwardFLOPs: Double {
        2 * Double(batch) * Double(outChannels) * Double(colRows) * Double(outPlane)
    }

    /// Checks a convolution's shapes.
    /// - Parameters:
    ///   - input: [N, C, H, W]
    ///   - weight: [O, C / groups, kH, kW]
    ///   - bias: [O] or nil
    public static func validate(input: [Int], weight: [Int], bias: [Int]?,
                                stride: (Int, Int), padding: (Int, Int), groups: Int) throws -> Conv2DGeometry {
        let op = "conv2d"
        try require(input.count == 4, op, "input \(input) must be [N, C, H, W]")
        try require(weight.count == 4, op, "weight \(weight) must be [O, C/groups, kH, kW]")
        try require(groups >= 1, op, "groups \(groups) must be >= 1")
        try require(weight[2] >= 1 && weight[3] >= 1 && weight[0] >= 1, op, "weight \(weight) has an empty kernel or no filters")
        try require(stride.0 >= 1 && stride.1 >= 1, op, "stride \(stride) must be >= 1")
        try require(padding.0 >= 0 && padding.1 >= 0, op, "padding \(padding) must be >= 0")
        try require(input[1] % groups == 0 && weight[0] % groups == 0, op,
                    "input \(input) channels and weight \(weight) output channels must both divide by groups \(groups)")
        try require(weight[1] == input[1] / groups, op,
                    "input \(input) and weight \(weight): weight dim 1 must be C/groups = \(input[1] / groups)")
        if let bias {
            try require(bias == [weight[0]], op, "bias \(bias) does not match weight \(weight): expected [\(weight[0])]")
        }
        let oh = (input[2] + 2 * padding.0 - weight[2]) / stride.0 + 1
        let ow = (input[3] + 2 * padding.1 - weight[3]) / stride.1 + 1
        try require(input[2] + 2 * padding.0 >= weight[2] && input[3] + 2 * padding.1 >= weight[3], op,
                    "input \(input) with padding \(padding) is smaller than the kernel of weight \(weight)")
        return Conv2DGeometry(batch: input[0], inChannels: input[1], height: input[2], width: input[3],
                              outChannels: weight[0], kernelH: weight[2], kernelW: weight[3],
                              strideH: stride.0, strideW: stride.1, padH: padding.0, padW: padding.1,
                              groups: groups, outH: oh, outW: ow)
    }

    /// The range of output columns `ow` whose input column `ow*strideW - padW + j` lies inside
    /// the image, for kernel column `j` (empty when none do).
    @inline(__always) func validColumns(_ j: Int) -> Range<Int> {
        // iw = ow*s - p + j in [0, W)  <=>  ow in [ceil((p-j)/s), floor((W-1+p-j)/s)]
        let lo = max(0, ceilDiv(padW - j, strideW))
        let hi = min(outW, floorDiv(width - 1 + padW - j, strideW) + 1)
        return lo < hi ? lo..<hi : 0..<0
    }

    /// Likewise for output rows and kernel row `i`.
    @inline(__always) func validRows(_ i: Int) -> Range<Int> {
        let lo = max(0, ceilDiv(padH - i, strideH))
        let hi = min(outH, floorDiv(height - 1 + padH - i, strideH) + 1)
        return lo < hi ? lo..<hi : 0..<0
    }

    /// Visits, for every kernel tap `(i, j)` (index `tap = i*kW + j`) and every output row `oh`
    /// it touches inside the image, the offset in the input plane of the element that output
    /// column 0 would read (`(oh*sH - pH + i)*W - pW + j`) and the output columns whose reads
    /// are inside the image. Taps and rows come in a fixed order.
    @inline(__always)
    func forEachTapRow(_ body: (_ tap: Int, _ oh: Int, _ inOffset: Int, _ columns: Range<Int>) -> Void) {
        for i in 0..<kernelH {
            let rows = validRows(i)
            for j in 0..<kernelW {
                let columns = validColumns(j)
                for oh in rows { body(i * kernelW + j, oh, (oh * strideH - padH + i) * width - padW + j, columns) }
            }
        }
    }
}

/// `dst[k] += a * src[k * stride]` for `k` in `columns`: one tap row of a forward convolution.
@inline(__always)
func addStridedRow(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, stride: Int,
                   scale a: Float, _ columns: Range<Int>) {
    if stride == 1 {
        for k in columns { dst[k] += a * src[k] }
    } else {
        for k in columns { dst[k] += a * src[k * stride] }
    }
}

/// `dst[k * stride] += a * src[k]` for `k` in `columns`: the adjoint of `addStridedRow`.
@inline(__always)
func addRowStrided(_ dst: UnsafeMutablePointer<Float>, _ src: UnsafePointer<Float>, stride: Int,
                   scale a: Float, _ columns: Range<Int>) {
    if stride == 1 {
        for k in columns { dst[k] += a * src[k] }
    } else {
        for k in columns { dst[k * stride] += a * src[k] }
    }
}

@inline(__always) func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
@inline(__always) func ceilDiv(_ a: Int, _ b: Int) -> Int { -floorDiv(-a, b) }

/// Tuning of the im2col path.
public enum Conv2DTuning {
    /// Floats of im2col scratch per GEMM: the batch is cut into chunks of whole images this size.
    nonisolated(unsafe) public static var columnBudget = 1 << 21
}

/// 2-D convolution.
/// - Parameters:
///   - x: [N, C, H, W]
///   - weight: [O, C / groups, kH, kW] (OIHW)
///   - bias: [O], optional
/// - Returns: [N, O, outH, outW], `outH = (H + 2*padH - kH) / strideH + 1`
public func conv2d(_ x: Tensor, weight: Tensor, bias: Tensor? = nil,
                   stride: (Int, Int) = (1, 1), padding: (Int, Int) = (0, 0), groups: Int = 1) -> Tensor {
    let geo = validated {
        try Conv2DGeometry.validate(input: x.shape, weight: weight.shape, bias: bias?.shape,
                                    stride: stride, padding: padding, groups: groups)
    }
    let out = Tensor(uninitialized: [geo.batch, geo.outChannels, geo.outH, geo.outW])
    if geo.isDepthwise {
        depthwiseForward(geo, x.data, weight.data, bias?.data, out.data)
    } else {
        GEMMConv(geo).forward(x.data, weight.data, bias?.data, out.data)
    }
    let kind = OpKind.conv2d(stride: Pair(stride), padding: Pair(padding), groups: groups)
    Trace.note(kind, Operands(x, weight, bias), out)
    if Tape.needsRecord(x, weight, bias) {
        Tape.record(kind, Operands(x, weight, bias), out) { d in
            let dx = x.requiresGrad ? x.gradBuffer().data : nil
            let dw = weight.requiresGrad ? weight.gradBuffer().data : nil
            if geo.isDepthwise {
                depthwiseBackward(geo, x.data, weight.data, d.data, dx, dw)
            } else {
                GEMMConv(geo).backward(x.data, weight.data, d.data, dx, dw)
            }
            if let bias, bias.requiresGrad {
                let db = bias.gradBuffer().data, pd = d.data
                let o = geo.outChannels, plane = geo.outPlane
                Parallel.forEach(o) { ch in
                    var s: Float = 0
                    for n in 0..<geo.batch { s += sum(pd + (n * o + ch) * plane, plane) }
                    db[ch] += s
                }
            }
        }
    }
    return out
}

// MARK: - im2col + GEMM

/// The im2col/GEMM convolution of one geometry.
///
/// The batch is processed in chunks of whole images whose patch matrix fits
/// `Conv2DTuning.columnBudget`. Inside a chunk every worker takes a contiguous range of images and
/// runs im2col, a single-threaded GEMM and the NCHW scatter on its own columns, so the patch
/// matrix is consumed by the core that wrote it and no thread idles between phases. (OpenBLAS's
/// own threads would spin in `sched_yield` during the non-GEMM phases, stealing the cores.)
/// The weight gradient, whose inner dimension spans every image, is split over weight columns
/// instead. The splits are `Parallel.gemmPieces`, fixed per machine, so each output element is
/// computed by the same GEMM call for any number of workers.
struct GEMMConv {
    let g: Conv2DGeometry
    /// Images per chunk.
    let chunk: Int

    init(_ g: Conv2DGeometry) {
        self.g = g
        BLAS.useCallerThreadsOnly()
        let perImage = max(1, g.groups * g.colRows * g.outPlane)
        // At least one image per piece, so every piece has whole images to own.
        chunk = max(1, min(g.batch, max(Parallel.gemmPieces, Conv2DTuning.columnBudget / perImage)))
    }

    /// Floats of the patch matrix of one chunk, all groups.
    private var colCount: Int { g.groups * g.colRows * chunk * g.outPlane }

    /// Forward: per chunk and worker, im2col and one GEMM per group into [O, cols], then a scatter
    /// to NCHW that adds the bias in the same pass.
    func forward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                 _ out: UnsafeMutablePointer<Float>) {
        let col = Tensor(uninitialized: [colCount])
        let tmp = Tensor(uninitialized: [g.outChannels * chunk * g.outPlane])
        let og = g.outPerGroup, rows = g.colRows, plane = g.outPlane
        let pcol = col.data, ptmp = tmp.data
        defer { withExtendedLifetime((col, tmp)) {} }  // the loop below uses them only by pointer
        var start = 0
        while start < g.batch {
            let nb = min(chunk, g.batch - start), cols = nb * plane
            Parallel.forPieces(nb) { imgs in
                let c0 = imgs.lowerBound * plane, width = imgs.count * plane
                for grp in 0..<g.groups {
                    let gcol = pcol + grp * rows * cols
                    im2col(x, group: grp, start: start, images: imgs, cols: cols, into: gcol)
                    BLAS.gemm(transA: false, transB: false, m: og, n: width, k: rows,
                              a: w + grp * og * rows, lda: rows, b: gcol + c0, ldb: cols,
                              beta: 0, c: ptmp + grp * og * cols + c0, ldc: cols)
                }
                scatter(ptmp, start: start, images: imgs, cols: cols, bias: bias, into: out)
            }
            start += nb
        }
    }

    /// Backward: `dW += dOut . col^T` (split over weight columns) and `dCol = W^T . dOut`, folded
    /// back with col2im (split over images).
    func backward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ dOut: UnsafePointer<Float>,
                  _ dx: UnsafeMutablePointer<Float>?, _ dw: UnsafeMutablePointer<Float>?) {
        guard dx != nil || dw != nil else { return }
        let col = Tensor(uninitialized: [dw != nil ? colCount : 0])
        let dcol = Tensor(uninitialized: [dx != nil ? colCount : 0])
        let dtmp = Tensor(uninitialized: [g.outChannels * chunk * g.outPlane])
        let og = g.outPerGroup, rows = g.colRows, plane = g.outPlane
        let pcol = col.data, pdcol = dcol.data, pdtmp = dtmp.data
        defer { withExtendedLifetime((col, dcol, dtmp)) {} }  // the loop below uses them only by pointer
        var start = 0
        while start < g.batch {
            let nb = min(chunk, g.batch - start), cols = nb * plane
            // Phase 1, by images: dOut to [O, cols]; the patch matrix if dW needs it.
            Parallel.forPieces(nb) { imgs in
                gather(dOut, start: start, images: imgs, cols: cols, into: pdtmp)
                if dw != nil {
                    for grp in 0..<g.groups {
                        im2col(x, group: grp, start: start, images: imgs, cols: cols, into: pcol + grp * rows * cols)
                    }
                }
            }
            // Phase 2: piece k owns weight columns k and images k.
            let pieces = Parallel.gemmPieces
            Parallel.forEach(pieces) { k in
                for grp in 0..<g.groups {
                    let dtg = pdtmp + grp * og * cols
                    if let dw {
                        let r0 = rows * k / pieces, r1 = rows * (k + 1) / pieces
                        if r0 < r1 { BLAS.gemm(transA: false, transB: true, m: og, n: r1 - r0, k: cols,
                                  a: dtg, lda: cols, b: pcol + grp * rows * cols + r0 * cols, ldb: cols,
                                  beta: 1, c: dw + grp * og * rows + r0, ldc: rows) }
                    }
                    if let dx {
                        let i0 = nb * k / pieces, i1 = nb * (k + 1) / pieces
                        guard i0 < i1 else { continue }
                        let gdcol = pdcol + grp * rows * cols
                        BLAS.gemm(transA: true, transB: false, m: rows, n: (i1 - i0) * plane, k: og,
                                  a: w + grp * og * rows, lda: rows, b: dtg + i0 * plane, ldb: cols,
                                  beta: 0, c: gdcol + i0 * plane, ldc: cols)
                        col2im(gdcol, group: grp, start: start, images: i0..<i1, cols: cols, into: dx)
                    }
                }
            }
            start += nb
        }
    }

    /// Writes columns of images `images` (relative to `start`) of one group's [colRows, cols]
    /// patch matrix: row `(c*kH + i)*kW + j`, column `n*outPlane + oh*outW + ow`.
    func im2col(_ x: UnsafePointer<Float>, group: Int, start: Int, images: Range<Int>, cols: Int,
                into col: UnsafeMutablePointer<Float>) {
        let g = self.g, taps = g.kernelH * g.kernelW
        for r in 0..<g.colRows {
            let cl = r / taps, i = (r % taps) / g.kernelW, j = r % g.kernelW
            let rowsOK = g.validRows(i), colsOK = g.validColumns(j)
            let dst = col + r * cols
            for b in images {
                let plane = x + ((start + b) * g.inChannels + group * g.inPerGroup + cl) * g.inPlane
                let dImg = dst + b * g.outPlane
                for oh in 0..<g.outH {
                    let dRow = dImg + oh * g.outW
                    guard rowsOK.contains(oh) else { dRow.update(repeating: 0, count: g.outW); continue }
                    let src = plane + (oh * g.strideH - g.padH + i) * g.width - g.padW + j
                    for ow in 0..<colsOK.lowerBound { dRow[ow] = 0 }
                    if g.strideW == 1 {
                        (dRow + colsOK.lowerBound).update(from: src + colsOK.lowerBound, count: colsOK.count)
                    } else {
                        for ow in colsOK { dRow[ow] = src[ow * g.strideW] }
                    }
                    for ow in colsOK.upperBound..<g.outW { dRow[ow] = 0 }
                }
            }
        }
    }

    /// Adds the patch-matrix gradient of images `images` back onto the input gradient: the
    /// adjoint of `im2col`. Taps are summed in a fixed order.
    func col2im(_ col: UnsafePointer<Float>, group: Int, start: Int, images: Range<Int>, cols: Int,
                into dx: UnsafeMutablePointer<Float>) {
        let g = self.g, cpg = g.inPerGroup
        for b in images {
            for cl in 0..<cpg {
                let plane = dx + ((start + b) * g.inChannels + group * cpg + cl) * g.inPlane
                let src = col + cl * g.kernelH * g.kernelW * cols + b * g.outPlane
                g.forEachTapRow { tap, oh, inOffset, columns in
                    addRowStrided(plane + inOffset, src + tap * cols + oh * g.outW, stride: g.strideW, scale: 1, columns)
                }
            }
        }
    }

    /// [O, cols] -> NCHW for images `images` (relative to `start`), adding the bias.
    func scatter(_ tmp: UnsafePointer<Float>, start: Int, images: Range<Int>, cols: Int,
                 bias: UnsafePointer<Float>?, into out: UnsafeMutablePointer<Float>) {
        let o = g.outChannels, plane = g.outPlane
        for b in images {
            for ch in 0..<o {
                let src = tmp + ch * cols + b * plane, dst = out + ((start + b) * o + ch) * plane
                if let bias {
                    let v = bias[ch]
                    for k in 0..<plane { dst[k] = src[k] + v }
                } else {
                    dst.update(from: src, count: plane)
                }
            }
        }
    }

    /// NCHW -> [O, cols] for images `images`: the adjoint of `scatter`.
    func gather(_ dOut: UnsafePointer<Float>, start: Int, images: Range<Int>, cols: Int,
                into tmp: UnsafeMutablePointer<Float>) {
        let o = g.outChannels, plane = g.outPlane
        for b in images {
            for ch in 0..<o {
                (tmp + ch * cols + b * plane).update(from: dOut + ((start + b) * o + ch) * plane, count: plane)
            }
        }
    }
}

// MARK: - Depthwise

/// Direct depthwise convolution: output channel `o` reads input channel `o / multiplier`.
/// Each worker owns whole (image, output channel) planes.
func depthwiseForward(_ g: Conv2DGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                      _ bias: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>) {
    let mult = g.outPerGroup, taps = g.kernelH * g.kernelW
    Parallel.forEach(g.batch * g.outChannels, grain: max(1, 2048 / max(g.outPlane, 1))) { p in
        let n = p / g.outChannels, o = p % g.outChannels
        let src = x + (n * g.inChannels + o / mult) * g.inPlane
        let dst = out + p * g.outPlane
        dst.update(repeating: bias?[o] ?? 0, count: g.outPlane)
        g.forEachTapRow { tap, oh, inOffset, columns in
            addStridedRow(dst + oh * g.outW, src + inOffset, stride: g.strideW, scale: w[o * taps + tap], columns)
        }
    }
}

func depthwiseBackward(_ g: Conv2DGeometry, _ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>,
                       _ dOut: UnsafePointer<Float>,
                       _ dx: UnsafeMutablePointer<Float>?, _ dw: UnsafeMutablePointer<Float>?) {
    let mult = g.outPerGroup, taps = g.kernelH * g.kernelW
    if let dx {
        // Per (image, input channel) plane: add every tap of its `mult` output channels.
        Parallel.forEach(g.batch * g.inChannels, grain: max(1, 2048 / max(g.inPlane, 1))) { p in
            let n = p / g.inChannels, c = p % g.inChannels
            let dPlane = dx + p * g.inPlane
            for o in (c * mult)..<((c + 1) * mult) {
                let src = dOut + (n * g.outChannels + o) * g.outPlane
                g.forEachTapRow { tap, oh, inOffset, columns in
                    addRowStrided(dPlane + inOffset, src + oh * g.outW, stride: g.strideW, scale: w[o * taps + tap], columns)
                }
            }
        }
    }
    if let dw {
        // Per output channel: each tap's correlation of dOut with the input, summed over the batch.
        Parallel.forEach(g.outChannels) { o in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: taps) { acc in
                acc.initialize(repeating: 0)
                for n in 0..<g.batch {
                    let src = x + (n * g.inChannels + o / mult) * g.inPlane
                    let d = dOut + (n * g.outChannels + o) * g.outPlane
                    g.forEachTapRow { tap, oh, inOffset, columns in
                        guard let first = columns.first else { return }
                        let dRow = d + oh * g.outW, sRow = src + inOffset
                        if g.strideW == 1 {
                            acc[tap] += dot(dRow + first, sRow + first, columns.count)
                        } else {
                            var s: Float = 0
                            for ow in columns { s += dRow[ow] * sRow[ow * g.strideW] }
                            acc[tap] += s
                        }
                    }
                }
                for tap in 0..<taps { dw[o * taps + tap] += acc[tap] }
            }
        }
    }
}
