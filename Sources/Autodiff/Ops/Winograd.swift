import CKernels

/// 3x3 convolutions with stride 1 and padding 1 by Winograd's minimal filtering F(m x m, 3 x 3)
/// (Lavin & Gray, CVPR 2016), m = 2 or 4: every m x m output tile costs (m + 2)^2 multiplies per
/// input-output channel pair instead of 9 m^2, 2.25x fewer for F(2, 3) and 4x fewer for F(4, 3).
///
/// The tiles of the batch are cut into blocks of whole tile rows. Per block: the input patches
/// are transformed (`V = B^T d B`, per frequency a [T][C] matrix), one GEMM per frequency
/// multiplies them with the transformed kernels (`U = G g G^T`, [K][C]), and the products are
/// transformed back into NCHW output tiles (`Y = A^T M A`). The transforms are C (`CKernels`),
/// 16 channels per vector; the GEMMs are OpenBLAS's.
///
/// Backward, per block:
/// - the weight gradient: `dU[xi] += dM[xi]^T . V[xi]` with `dM = A dY A^T` the adjoint of the
///   output transform, summed over a piece's blocks, the pieces' sums added in piece order, then
///   `dW = G^T dU G`;
/// - the input gradient: the stride-1 padding-1 3x3 convolution of dY with the kernels turned by
///   180 degrees and input and output channels swapped, computed the same way and added to dX.
///
/// Pieces and blocks are fixed by the geometry and `Parallel.gemmPieces`, so every element is
/// computed by the same calls whatever the worker count, as in `GEMMConv`. Cutting the batch
/// into tile rows also spreads a single image over the cores.
struct WinogradConv {
    let g: Conv2DGeometry
    /// The transforms' sizes; `m` is the output tile.
    let tiles: ns_winograd_geometry
    /// Tile rows per block.
    let rowsPerBlock: Int

    /// The output tile's size, m.
    var tile: Int { tiles.m }
    var alpha: Int { tiles.m + 2 }
    var frequencies: Int { alpha * alpha }

    /// The Winograd convolution of `g`, or nil where it does not apply (not 3x3, stride 1,
    /// padding 1 and ungrouped) or, under `Conv2DTuning.winograd = .auto`, does not pay.
    /// `frozenWeights`: the transformed kernels are kept between calls (`FrozenConv2D`), so
    /// their cost is only that of reading them; `weightsCached`: and they stay in the caches
    /// between calls (a net whose weights fit there), so reading them costs nothing.
    init?(_ g: Conv2DGeometry, frozenWeights: Bool = false, weightsCached: Bool = false) {
        guard g.kernelH == 3, g.kernelW == 3, g.strideH == 1, g.strideW == 1, g.padH == 1, g.padW == 1,
              g.groups == 1 else { return nil }
        let m: Int
        switch Conv2DTuning.winograd {
        case .off: return nil
        case let .tile(size): m = size
        case .auto:
            let minChannels = frozenWeights ? Conv2DTuning.frozenWinogradMinChannels : Conv2DTuning.winogradMinChannels
            guard min(g.inChannels, g.outChannels) >= minChannels else { return nil }
            // Frozen weights on maps too small for 16-pixel tiles: the narrow kernel, which
            // reads the weights once per image, where it applies.
            if frozenWeights, PackedGEMMConv.takesNarrow(g) { return nil }
            // The tile with the fewest multiplies over the whole plane (ties to the smaller, the
            // more accurate), if it costs well under the direct convolution, counting per
            // input-output channel pair the multiply-adds and the kernel values streamed from
            // memory (9 for the direct kernel; alpha^2 transformed values, written and read twice
            // unless frozen).
            let multiplies = { (m: Int) in (m + 2) * (m + 2) * ceilDiv(g.outH, m) * ceilDiv(g.outW, m) }
            var tile = multiplies(4) < multiplies(2) ? 4 : 2
            // The pieces split the batch's rows of tiles: one image of a 4x4 map has a single row
            // of 4x4 tiles, which would leave every core but one idle.
            if tile == 4, g.batch * ceilDiv(g.outH, 4) < Parallel.gemmPieces { tile = 2 }
            m = tile
            // Cached weights cost nothing to read, where the convolution is large enough for
            // Winograd's three passes to pay for their own fixed costs.
            let macs = g.batch * g.outChannels * g.outPlane * g.colRows
            let free = frozenWeights && weightsCached && macs >= Conv2DTuning.cachedWinogradMinMACs
            let stream = free ? 0 : Double(Conv2DTuning.weightStreamCost)
            let direct = Double(9 * g.outPlane * g.batch) + 9 * stream
            let winograd = Double(multiplies(m) * g.batch) + Double((m + 2) * (m + 2)) * stream * (frozenWeights ? 1 : 3)
            guard winograd <= 0.75 * direct else { return nil }
        }
        precondition(m == 2 || m == 4, "WinogradConv: output tiles of \(m) (2 or 4 only)")
        self.g = g
        tiles = ns_winograd_geometry(m: m, H: g.outH, W: g.outW, tiles_y: ceilDiv(g.outH, m), tiles_x: ceilDiv(g.outW, m))
        BLAS.useCallerThreadsOnly()
        let perTile = (m + 2) * (m + 2) * (g.inChannels + g.outChannels)
        let target = max(Conv2DTuning.winogradMinTiles, Conv2DTuning.winogradBudget / perTile)
        let perPiece = ceilDiv(g.batch * tiles.tiles_y, Parallel.gemmPieces)
        rowsPerBlock = max(1, min(perPiece, target / tiles.tiles_x))
    }

    /// The most tiles in one block.
    private var blockTiles: Int { rowsPerBlock * tiles.tiles_x }
    /// Tile rows of the batch.
    private var tileRows: Int { g.batch * tiles.tiles_y }
    /// Floats of the tile transforms' scratch.
    private var scratchCount: Int { withUnsafePointer(to: tiles) { ns_winograd_scratch($0, rowsPerBlock) } }

    /// Leading dimension of a block's transformed values of `channels` channels: whole vectors.
    private static func leading(_ channels: Int) -> Int {
        let lanes = Int(NS_WINOGRAD_LANES)
        return (channels + lanes - 1) / lanes * lanes
    }

    /// Floats from one frequency's matrix of `count` floats to the next: a whole, odd number of
    /// cache lines, so that the alpha^2 matrices a transform writes together fall in different
    /// cache sets (at a power-of-two distance they would all evict each other).
    static func frequencyStride(_ count: Int) -> Int {
        let lines = (count + 15) / 16
        return (lines % 2 == 0 ? lines + 1 : lines) * 16
    }

    /// Zeros columns `channels ..< ld` of every frequency's [blockTiles][ld] matrix: the lanes the
    /// output transform reads beyond the channels, which no GEMM writes.
    private func zeroPadding(_ buffer: UnsafeMutablePointer<Float>, channels: Int, ld: Int, xs: Int) {
        guard ld > channels else { return }
        for xi in 0..<frequencies {
            for t in 0..<blockTiles { (buffer + xi * xs + t * ld + channels).update(repeating: 0, count: ld - channels) }
        }
    }

    /// The kernels transformed: [alpha^2][K][C], or rotated [alpha^2][C][K], frequencies
    /// `frequencyStride(K * C)` apart.
    func transformedWeights(_ w: UnsafePointer<Float>, rotated: Bool) -> Tensor {
        let k = g.outChannels, c = g.inChannels, xs = Self.frequencyStride(k * c)
        let u = Tensor(uninitialized: [frequencies * xs])
        let pu = u.data, rows = rotated ? c : k
        Parallel.forRange(rows, grain: max(1, 4096 / max(rotated ? k : c, 1))) { r in
            ns_winograd_weights(tiles.m, k, c, r.lowerBound, r.count, rotated ? 1 : 0, w, pu, xs)
        }
        return u
    }

    /// The kernels transformed and laid out for the forward products (`ns_gemm_rows`): per
    /// frequency [C][ldK], the output channels contiguous and zero past K, frequencies
    /// `frequencyStride(C * ldK)` apart.
    func kernelsByInput(_ w: UnsafePointer<Float>) -> Tensor {
        let k = g.outChannels, c = g.inChannels, ldK = Self.leading(k), xs = Self.frequencyStride(c * ldK)
        let u = Tensor.zeros([frequencies * xs])
        let pu = u.data
        Parallel.forRange(c, grain: max(1, 4096 / max(k, 1))) { r in
            ns_winograd_weights_by_input(tiles.m, k, c, r.lowerBound, r.count, w, pu, xs, ldK)
        }
        return u
    }

    /// out = act(conv(x, w) + bias). `frozen`: the kernels transformed by `kernelsByInput`, kept
    /// by a frozen convolution; each frequency's product then reads them and the block's tiles in
    /// place (`ns_gemm_rows`): sgemm packs the kernels again on every call, which on a small
    /// map's block costs more than the products. Without, the kernels are transformed from `w`
    /// and the products are sgemm's (training: tried on `ns_gemm_rows` too, ResNet-50 x0.25 at
    /// batch 128 trained at 1336-1346 against 1413-1769 images/s, 3 alternating rounds).
    func forward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ bias: UnsafePointer<Float>?,
                 _ out: UnsafeMutablePointer<Float>, frozen: Tensor? = nil, activation: Activation = .identity) {
        let k = g.outChannels, c = g.inChannels, a2 = frequencies, (lo, hi) = activation.bounds
        let u = frozen ?? transformedWeights(w, rotated: false), inPlace = frozen != nil
        let ldC = Self.leading(c), ldK = Self.leading(k), uxs = Self.frequencyStride(inPlace ? c * ldK : k * c)
        let vxs = Self.frequencyStride(blockTiles * ldC), mxs = Self.frequencyStride(blockTiles * ldK)
        let pieces = Parallel.gemmPieces, stride = a2 * (vxs + mxs) + scratchCount
        let work = Tensor(uninitialized: [pieces * stride])
        let pu = UnsafePointer(u.data), pw = work.data
        defer { withExtendedLifetime((u, work)) {} }  // the blocks below use them only by pointer
        // sgemm writes the K columns only; the output transform reads whole vectors.
        if !inPlace { for piece in 0..<pieces { zeroPadding(pw + piece * stride + a2 * vxs, channels: k, ld: ldK, xs: mxs) } }
        withUnsafePointer(to: tiles) { geometry in
            forEachPieceBlock(count: tileRows, block: rowsPerBlock) { piece, row0, rows in
                let v = pw + piece * stride, mm = v + a2 * vxs, scratch = mm + a2 * mxs
                let t = rows * tiles.tiles_x
                ns_winograd_input(geometry, c, row0, rows, x, v, ldC, vxs, scratch)
                for xi in 0..<a2 {
                    if inPlace {
                        ns_gemm_rows(t, ldK, c, v + xi * vxs, ldC, pu + xi * uxs, ldK, mm + xi * mxs, ldK)
                    } else {
                        BLAS.gemm(transA: false, transB: true, m: t, n: k, k: c, a: v + xi * vxs, lda: ldC,
                                  b: pu + xi * uxs, ldb: c, beta: 0, c: mm + xi * mxs, ldc: ldK)
                    }
                }
                ns_winograd_output(geometry, k, row0, rows, mm, ldK, mxs, bias, lo, hi, 0, out, scratch)
            }
        }
    }

    /// dX += conv(dY, rotated w^T) (`=` with `overwritingDx`: every element is written once);
    /// dW += the weight gradient (either may be nil).
    func backward(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ dOut: UnsafePointer<Float>,
                  _ dx: UnsafeMutablePointer<Float>?, _ dw: UnsafeMutablePointer<Float>?, overwritingDx: Bool = false) {
        guard dx != nil || dw != nil else { return }
        let k = g.outChannels, c = g.inChannels, a2 = frequencies, uxs = Self.frequencyStride(k * c)
        let rotated = dx != nil ? transformedWeights(w, rotated: true) : nil
        let ldC = Self.leading(c), ldK = Self.leading(k)
        let cxs = Self.frequencyStride(blockTiles * ldC), kxs = Self.frequencyStride(blockTiles * ldK)
        // Per piece: a [T][C] buffer per frequency (the input's transform, then dX's products), a
        // [T][K] one (dM, then dY's transform), the transforms' scratch and dU's partial sum.
        let pieces = Parallel.gemmPieces, cPer = a2 * cxs, kPer = a2 * kxs, sPer = scratchCount
        let dPer = dw != nil ? a2 * uxs : 0, stride = cPer + kPer + sPer + dPer
        let work = Tensor(uninitialized: [pieces * stride])
        let pw = work.data, pr = rotated.map { UnsafePointer($0.data) }
        defer { withExtendedLifetime((rotated, work)) {} }  // the blocks below use them only by pointer
        // Without dW the dX products' buffer never holds the input's transform, whose padding
        // lanes are zeros: zero them once.
        if dw == nil { for piece in 0..<pieces { zeroPadding(pw + piece * stride, channels: c, ld: ldC, xs: cxs) } }
        var started = [Bool](repeating: false, count: pieces)
        started.withUnsafeMutableBufferPointer { started in
            withUnsafePointer(to: tiles) { geometry in
                forEachPieceBlock(count: tileRows, block: rowsPerBlock) { piece, row0, rows in
                    let bufC = pw + piece * stride, bufK = bufC + cPer, scratch = bufK + kPer, partial = scratch + sPer
                    let t = rows * tiles.tiles_x
                    if dw != nil {
                        ns_winograd_input(geometry, c, row0, rows, x, bufC, ldC, cxs, scratch)
                        ns_winograd_output_grad(geometry, k, row0, rows, dOut, bufK, ldK, kxs, scratch)
                        for xi in 0..<a2 {
                            BLAS.gemm(transA: true, transB: false, m: k, n: c, k: t, a: bufK + xi * kxs, lda: ldK,
                                      b: bufC + xi * cxs, ldb: ldC, beta: started[piece] ? 1 : 0,
                                      c: partial + xi * uxs, ldc: c)
                        }
                    }
                    if let dx, let pr {
                        ns_winograd_input(geometry, k, row0, rows, dOut, bufK, ldK, kxs, scratch)
                        for xi in 0..<a2 {
                            BLAS.gemm(transA: false, transB: true, m: t, n: c, k: k, a: bufK + xi * kxs, lda: ldK,
                                      b: pr + xi * uxs, ldb: k, beta: 0, c: bufC + xi * cxs, ldc: ldC)
                        }
                        ns_winograd_output(geometry, c, row0, rows, bufC, ldC, cxs, nil, -.infinity, .infinity, overwritingDx ? 0 : 1,
                                           dx, scratch)
                    }
                    started[piece] = true
                }
            }
            guard let dw else { return }
            // dU: the pieces' partial sums added in piece order, into the first started piece's.
            let partials = (0..<pieces).filter { started[$0] }.map { pw + $0 * stride + cPer + kPer + sPer }
            guard let total = partials.first else { return }
            Parallel.forRange(a2 * uxs, grain: 4096) { r in
                for p in partials.dropFirst() { for i in r { total[i] += p[i] } }
            }
            Parallel.forRange(k, grain: max(1, 4096 / max(c, 1))) { r in
                ns_winograd_weight_grad(tiles.m, k, c, r.lowerBound, r.count, total, uxs, dw)
            }
        }
    }
}
