import CKernels

/// The im2col convolution of a `FrozenConv2D` whose weights are packed once (`ns_pgemm_pack`):
/// per image, the patch matrix (none for a 1x1 stride-1 convolution: the image is its own; none
/// either where `ns_pconv` reads its rows from the image, a "same" stride-1 or a halving stride-2
/// convolution on AVX-512, a "same" stride-1 one of a small image with rows of whole vectors on
/// AVX2, `ns_pconv_padded_available`) times the packed weights, written straight into the NCHW output with
/// the bias and the activation applied in the same pass. One image at a time (an inference of
/// one image) splits the weights' panels over the GEMM pieces; a batch splits its images.
///
/// Ungrouped convolutions on output planes of at least `minPlane` pixels; smaller planes (a 3x3,
/// 2x2 or 1x1 map) go through the narrow kernel, whose vectors run over 16 output channels
/// (`ns_pgemm_narrow`): for one image always; for a batch, as many images side by side as fill
/// its 16 columns (`ns_pgemm_narrow_images`: 4 of a 2x2 map, 16 of a 1x1; one at a time on a 3x3
/// map), when the weights are at most `Conv2DTuning.narrowBatchWeights`. Small planes of a batch
/// with more weights are left to the blocked sgemm path (`GEMMConv`), which puts all the images
/// side by side and reads the weights once.
struct PackedGEMMConv {
    static let minPlane = 16

    let g: Conv2DGeometry
    /// The plane is too small for 16-column tiles: the narrow kernel.
    let narrow: Bool
    /// A stride-1 convolution that keeps the plane's size, or a stride-2 one that halves it, on a
    /// machine with `ns_pconv`: the tiles read the image (or its phases) itself, no patch matrix.
    let implicit: Bool
    /// The patch matrix's copy where it is needed (built once: its tables cost as much as a
    /// small map's copy).
    let im2col: GEMMConv?

    /// Whether `g` runs here (what `init` checks, without building anything).
    static func takes(_ g: Conv2DGeometry) -> Bool {
        g.groups == 1 && !g.isDepthwise
            && (g.outPlane >= minPlane || g.batch < Parallel.gemmPieces || g.outChannels * g.colRows <= Conv2DTuning.narrowBatchWeights)
    }

    /// Whether a training convolution's forward runs here (its weights packed on every call):
    /// a shallow one (at most `Conv2DTuning.packedMaxDepth` patch rows: a first layer), whose
    /// 27-deep product sgemm's blocking wastes, or a halving stride-2 one that the tiles read from
    /// the image's phases, where sgemm's path first copies the patch matrix (PreAct ResNet-18
    /// x0.25's two 3x3 stride-2 layers, batch 128: 3.06 -> 1.79 and 3.60 -> 1.51 ms).
    static func takesTrainingForward(_ g: Conv2DGeometry) -> Bool {
        guard g.batch >= Parallel.gemmPieces, takes(g) else { return false }
        if g.colRows <= Conv2DTuning.packedMaxDepth { return true }
        if sameStrideOne(g) { return true }
        return g.strideH == 2 && g.strideW == 2 && g.outPlane >= minPlane
            && ns_pconv_available(g.height, g.width, g.kernelH, g.kernelW, g.padH, g.padW, 2) != 0
    }

    /// A "same" stride-1 training convolution of one group and fewer than 32 input channels (not a
    /// 1x1, which sgemm reads in place, nor a shallow one, `Conv2DAlgorithm.shallow`), ahead of
    /// Winograd (under `auto`): with so few channels Winograd's transforms cost as much as its
    /// products. Batch 128, forward / backward in ms (best of 4 alternating rounds), Winograd F(4,3)
    /// then this with its input gradient by `transposedForward` and its weight gradient still
    /// Winograd's: 16 -> 16 on 32x32 3.41 / 5.93 -> 2.32 / 5.03 (PreAct ResNet-18 x0.25's first
    /// stage), 24 -> 24 on 16x16 1.83 / 3.03 -> 1.26 / 2.60; 8 -> 16 on 16x16 (sgemm, too few
    /// channels for Winograd) 0.89 / 2.07 -> 0.57 / 2.07. The weight gradients' lane sums came
    /// after (`Conv2DTuning.fewChannelsLanesPlane`).
    static func sameStrideOne(_ g: Conv2DGeometry) -> Bool {
        Conv2DTuning.winograd == .auto && g.groups == 1 && g.strideH == 1 && g.strideW == 1 && g.inChannels < 32
            && g.outPlane >= minPlane && !g.isPointwise && g.colRows > Conv2DTuning.packedMaxDepth
            && ns_pconv_available(g.height, g.width, g.kernelH, g.kernelW, g.padH, g.padW, 1) != 0
    }

    /// The convolution whose forward is `g`'s input gradient, where `g` is `sameStrideOne` and so
    /// is that one (dOut as its input, C and O swapped, the kernels flipped: `flippedForward`).
    static func transposedForward(_ g: Conv2DGeometry) -> PackedGEMMConv? {
        guard sameStrideOne(g),
              let t = try? Conv2DGeometry.validate(input: [g.batch, g.outChannels, g.outH, g.outW],
                                                   weight: [g.inChannels, g.outChannels, g.kernelH, g.kernelW], bias: nil,
                                                   stride: (1, 1), padding: (g.padH, g.padW), groups: 1),
              sameStrideOne(t), takesTrainingForward(t)
        else { return nil }
        return PackedGEMMConv(t)
    }

    /// The forward of the convolution `transposedForward` made this one from, on `dOut`, with that
    /// one's `weight` [O, C, kH, kW] turned into this one's, w'[c][o][i][j] = w[o][c][kH-1-i][kW-1-j]:
    /// that convolution's input gradient, written into `dx`.
    func flippedForward(_ dOut: UnsafePointer<Float>, kernels weight: UnsafePointer<Float>, into dx: UnsafeMutablePointer<Float>) {
        let c = g.outChannels, o = g.inChannels, kh = g.kernelH, kw = g.kernelW
        let flipped = Tensor(uninitialized: [c * o * kh * kw])
        for oc in 0..<o {
            for ch in 0..<c {
                for i in 0..<kh {
                    for j in 0..<kw {
                        flipped.data[((ch * o + oc) * kh + i) * kw + j] = weight[((oc * c + ch) * kh + kh - 1 - i) * kw + kw - 1 - j]
                    }
                }
            }
        }
        forward(dOut, packed: pack(flipped.data).data, nil, dx, activation: .identity)
    }

    /// Whether `g` runs here on the narrow kernel.
    static func takesNarrow(_ g: Conv2DGeometry) -> Bool { takes(g) && g.outPlane < minPlane }

    init?(_ g: Conv2DGeometry) {
        guard Self.takes(g) else { return nil }
        self.g = g
        narrow = g.outPlane < Self.minPlane
        implicit = !narrow && !g.isPointwise && g.strideH == g.strideW
            && ns_pconv_padded_available(g.inChannels, g.height, g.width, g.kernelH, g.kernelW, g.padH, g.padW,
                                         g.strideH) != 0
        im2col = implicit || g.isPointwise ? nil : GEMMConv(g)
    }

    /// Floats of the packed weights.
    var packedCount: Int {
        narrow ? ns_pgemm_narrow_packed_count(g.outChannels, g.colRows) : ns_pgemm_packed_count(g.outChannels, g.colRows)
    }

    /// `weight` [O, C, kH, kW] packed for `forward`.
    func pack(_ weight: UnsafePointer<Float>) -> Tensor {
        let packed = Tensor(uninitialized: [packedCount])
        if narrow {
            ns_pgemm_narrow_pack(g.outChannels, g.colRows, weight, g.colRows, packed.data)
        } else {
            ns_pgemm_pack(g.outChannels, g.colRows, weight, g.colRows, packed.data)
        }
        return packed
    }

    /// Whether `forward` writes a normalized second output (every path but the narrow kernel's).
    var normalizesOutput: Bool { !narrow }

    /// `out = act(conv(x) + bias (+ addend))`, `addend` shaped as `out`; with `normalized` (only
    /// where `normalizesOutput`) also its batch norm of `out`, into `normalized.out` laid out as `out`.
    func forward(_ x: UnsafePointer<Float>, packed: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                 adding addend: UnsafePointer<Float>? = nil, _ out: UnsafeMutablePointer<Float>, activation: Activation,
                 normalized: ns_normalized_output? = nil) {
        precondition(normalized == nil || normalizesOutput, "PackedGEMMConv: the narrow kernel writes no normalized output")
        let (lo, hi) = activation.bounds
        let m = g.outChannels, k = g.colRows, plane = g.outPlane, pointwise = g.isPointwise
        let pieces = Parallel.gemmPieces, panelRows = narrow ? Int(NS_PGEMM_NARROW_ROWS) : ns_pgemm_panel_rows(m)
        let panels = (m + panelRows - 1) / panelRows
        let scratchCount = narrow ? 0 : ns_pgemm_scratch_count(k, plane), colCount = pointwise ? 0 : k * plane
        if implicit {
            implicitForward(x, packed: packed, bias, adding: addend, out, lo: lo, hi: hi, panels: panels, normalized: normalized)
            return
        }
        let perImage = min(g.batch, pieces)
        let scratch = scratchCount > 0 ? Tensor(uninitialized: [pieces * scratchCount]) : nil
        let col = colCount > 0 ? Tensor(uninitialized: [perImage * colCount]) : nil
        let pscratch = scratch?.data, pcol = col?.data
        defer { withExtendedLifetime((scratch, col)) {} }  // the pieces below use them only by pointer
        let imageIn = g.inChannels * g.inPlane, imageOut = m * plane
        if g.batch < pieces {
            // Few images: each image's patch matrix (rows cut over the pieces), then its panels.
            for img in 0..<g.batch {
                let b: UnsafePointer<Float> = pointwise ? x + img * imageIn : UnsafePointer(pcol!)
                if let im2col, let pcol {
                    Parallel.forPieces(k) { rows in
                        im2col.im2col(x, group: 0, start: img, images: 0..<1, cols: plane, into: pcol, patchRows: rows)
                    }
                }
                let addendImage = addend.map { $0 + img * imageOut }
                forEachPieceBlock(count: panels, block: panels) { piece, first, count in
                    if narrow {
                        ns_pgemm_narrow(m, plane, k, packed, b, plane, out + img * imageOut, plane, bias, addendImage,
                                        lo, hi, first, first + count)
                    } else {
                        withNormalized(normalized, at: img * imageOut) { nz in
                            ns_pgemm(m, plane, k, packed, b, plane, out + img * imageOut, plane, bias, addendImage,
                                     lo, hi, first, first + count, pscratch.map { $0 + piece * scratchCount }, 0, nz)
                        }
                    }
                }
            }
            return
        }
        if narrow && Self.imagesPerCall(plane) > 1 {
            narrowImagesForward(x, packed: packed, bias, adding: addend, out, lo: lo, hi: hi, panels: panels)
            return
        }
        let streaming: Int32 = g.batch * imageOut * MemoryLayout<Float>.size >= Conv2DTuning.streamingBytes ? 1 : 0
        forEachPieceBlock(count: g.batch, block: 1) { piece, img, _ in
            var b = x + img * imageIn
            if let im2col, let pcol {
                im2col.im2col(x, group: 0, start: img, images: 0..<1, cols: plane, into: pcol + piece * colCount)
                b = UnsafePointer(pcol + piece * colCount)
            }
            if narrow {
                ns_pgemm_narrow(m, plane, k, packed, b, plane, out + img * imageOut, plane, bias,
                                addend.map { $0 + img * imageOut }, lo, hi, 0, panels)
            } else {
                withNormalized(normalized, at: img * imageOut) { nz in
                    ns_pgemm(m, plane, k, packed, b, plane, out + img * imageOut, plane, bias, addend.map { $0 + img * imageOut },
                             lo, hi, 0, panels, pscratch.map { $0 + piece * scratchCount }, streaming, nz)
                }
            }
        }
    }

    /// Images of a batch the narrow kernel takes together on output planes of `plane` pixels: as
    /// many as fill its 16 columns (4 of a 2x2 map), so each of its reads of the weights serves
    /// them all.
    static func imagesPerCall(_ plane: Int) -> Int { max(1, Int(NS_PGEMM_NARROW_ROWS) / max(plane, 1)) }

    /// A batch on the narrow kernel, `imagesPerCall` images at a time: their patch matrices (or,
    /// for a 1x1 stride-1 convolution, the images themselves) side by side in one scratch matrix,
    /// the product written into each image's output (`ns_pgemm_narrow_images`). Every element is
    /// the same sum in the same order as image by image.
    private func narrowImagesForward(_ x: UnsafePointer<Float>, packed: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                                     adding addend: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>,
                                     lo: Float, hi: Float, panels: Int) {
        let g = self.g, k = g.colRows, plane = g.outPlane, m = g.outChannels
        let perCall = Self.imagesPerCall(plane), calls = (g.batch + perCall - 1) / perCall
        let imageIn = g.inChannels * g.inPlane, imageOut = m * plane, scratchCount = k * perCall * plane
        let scratch = Tensor(uninitialized: [Parallel.gemmPieces * scratchCount]), pscratch = scratch.data
        defer { withExtendedLifetime(scratch) {} }  // the pieces below use it only by pointer
        forEachPieceBlock(count: calls, block: 1) { piece, call, _ in
            let first = call * perCall, images = min(perCall, g.batch - first), columns = images * plane
            let b = pscratch + piece * scratchCount
            if let im2col {
                im2col.im2col(x, group: 0, start: first, images: 0..<images, cols: columns, into: b)
            } else {
                ns_gather_images(k, plane, images, x + first * imageIn, imageIn, b)
            }
            ns_pgemm_narrow_images(m, columns, k, packed, b, columns, out + first * imageOut, plane, plane, imageOut,
                                   bias, addend.map { $0 + first * imageOut }, lo, hi, 0, panels)
        }
    }

    /// `forward` through `ns_pconv`: one image's panels split over the pieces, or whole images.
    /// At stride 2 each piece first splits the image it reads into its phases, the whole image
    /// even where the pieces share one image's panels: splitting its channels over the pieces
    /// took a parallel region of its own, after which each piece read the phases the other had
    /// written from the other core (one image, 2 threads, 16 -> 32 channels on 32x32 0.022-0.032
    /// -> 0.014 ms, 32 -> 64 on 16x16 0.022 -> 0.012 ms, 64 -> 128 on 8x8 0.020 -> 0.014 ms).
    private func implicitForward(_ x: UnsafePointer<Float>, packed: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                                 adding addend: UnsafePointer<Float>?, _ out: UnsafeMutablePointer<Float>,
                                 lo: Float, hi: Float, panels: Int, normalized: ns_normalized_output?) {
        let g = self.g, imageIn = g.inChannels * g.inPlane, imageOut = g.outChannels * g.outPlane
        let strided = g.strideH == 2, pieces = Parallel.gemmPieces
        // A 1x1 kernel (padding 0) reads only the even rows' even columns: that phase alone.
        let split = g.kernelH == 1 && g.kernelW == 1 ? ns_pconv_even_phase : ns_pconv_phases
        let phases = Tensor(uninitialized: [strided ? pieces * imageIn : 0]), pphases = phases.data
        defer { withExtendedLifetime(phases) {} }  // the pieces below use it only by pointer
        let conv = { (img: Int, source: UnsafePointer<Float>, first: Int, end: Int, streaming: Int32) in
            withNormalized(normalized, at: img * imageOut) { nz in
                ns_pconv(g.outChannels, g.inChannels, g.height, g.width, g.kernelH, g.kernelW, g.padH, g.padW, g.strideH,
                         packed, source, out + img * imageOut, bias, addend.map { $0 + img * imageOut }, lo, hi,
                         first, end, streaming, nz)
            }
        }
        if g.batch < pieces {
            for img in 0..<g.batch {
                let image = x + img * imageIn
                forEachPieceBlock(count: panels, block: panels) { piece, first, count in
                    if strided { split(image, g.height, g.width, 0, g.inChannels, pphases + piece * imageIn) }
                    conv(img, strided ? UnsafePointer(pphases + piece * imageIn) : image, first, first + count, 0)
                }
            }
            return
        }
        let streaming: Int32 = g.batch * imageOut * MemoryLayout<Float>.size >= Conv2DTuning.streamingBytes ? 1 : 0
        forEachPieceBlock(count: g.batch, block: 1) { piece, img, _ in
            let image = x + img * imageIn
            if strided { split(image, g.height, g.width, 0, g.inChannels, pphases + piece * imageIn) }
            conv(img, strided ? UnsafePointer(pphases + piece * imageIn) : image, 0, panels, streaming)
        }
    }
}

/// Calls `body` with a pointer to `normalized` with its output moved `offset` floats on (an
/// image's), or with nil.
@inline(__always)
private func withNormalized(_ normalized: ns_normalized_output?, at offset: Int,
                            _ body: (UnsafePointer<ns_normalized_output>?) -> Void) {
    guard var moved = normalized else { return body(nil) }
    moved.out += offset
    withUnsafePointer(to: &moved) { body($0) }
}
