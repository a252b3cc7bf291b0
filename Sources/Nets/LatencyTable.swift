import Foundation

/// Per-layer latencies measured on a device (`neuralscale bench infer --latency-table`): for every
/// kind of layer a net has (kernel, stride, input size, depthwise or not, linear or not), the
/// time of that layer alone on a grid of input and output channel counts. A net's predicted
/// latency is the sum of its layers' times, each interpolated on its grid, plus what the layers
/// alone do not show (pools, additions, the run's own cost, weights streamed from memory once
/// the net outgrows the cache): `constantMs + perMParamMs * max(0, P - kneeParams) / 1e6`,
/// fitted to whole nets measured end to end.
public struct LatencyTable: Codable, Equatable, Sendable {
    /// One kind of layer and its measured grid.
    public struct Entry: Codable, Equatable, Sendable {
        public var kernel: Int
        public var stride: Int
        public var inputSize: Int
        public var depthwise: Bool
        public var linear: Bool
        /// Input channel counts, ascending (a depthwise layer's output equals its input).
        public var inChannels: [Int]
        /// Output channel counts, ascending (one entry, ignored, for a depthwise layer).
        public var outChannels: [Int]
        /// `ms[i][j]`: the time at `inChannels[i]`, `outChannels[j]`.
        public var ms: [[Double]]

        public init(kernel: Int, stride: Int, inputSize: Int, depthwise: Bool, linear: Bool, inChannels: [Int], outChannels: [Int],
                    ms: [[Double]]) {
            self.kernel = kernel
            self.stride = stride
            self.inputSize = inputSize
            self.depthwise = depthwise
            self.linear = linear
            self.inChannels = inChannels
            self.outChannels = outChannels
            self.ms = ms
        }

        public func matches(_ l: LayerShape) -> Bool {
            kernel == l.kernel && stride == l.stride && inputSize == l.inputSize && depthwise == l.isDepthwise && linear == l.linear
        }
    }

    /// A net's predicted latency against its measured one.
    public struct Check: Codable, Equatable, Sendable {
        public var name: String
        public var widths: [Int]
        public var params: Int
        /// The sum of the net's layers' times alone (without the constant and memory term).
        public var layersMs: Double
        public var predictedMs: Double
        public var measuredMs: Double
        public var error: Double { (predictedMs - measuredMs) / measuredMs }

        public init(name: String, widths: [Int], params: Int, layersMs: Double, predictedMs: Double, measuredMs: Double) {
            self.name = name
            self.widths = widths
            self.params = params
            self.layersMs = layersMs
            self.predictedMs = predictedMs
            self.measuredMs = measuredMs
        }
    }

    public var model: Architecture
    public var inChannels: Int
    public var imageSize: Int
    public var classes: Int
    /// Where and how it was measured ("onnxruntime 1.31.1, 2 threads, batch 1", the host).
    public var device: String
    public var multiple: Int
    public var entries: [Entry]
    public var constantMs: Double
    /// Milliseconds per million parameters beyond `kneeParams`: a net whose weights no longer
    /// fit in cache streams them from memory on every run, while a layer timed alone keeps its
    /// own in cache.
    public var perMParamMs: Double
    public var kneeParams: Int
    /// Calibration nets (the constant and per-parameter term were fitted to them) and checks.
    public var calibration: [Check]
    public var checks: [Check]

    public init(model: Architecture, inChannels: Int, imageSize: Int, classes: Int, device: String, multiple: Int, entries: [Entry],
                constantMs: Double = 0, perMParamMs: Double = 0, kneeParams: Int = 0, calibration: [Check] = [], checks: [Check] = []) {
        self.model = model
        self.inChannels = inChannels
        self.imageSize = imageSize
        self.classes = classes
        self.device = device
        self.multiple = multiple
        self.entries = entries
        self.constantMs = constantMs
        self.perMParamMs = perMParamMs
        self.kneeParams = kneeParams
        self.calibration = calibration
        self.checks = checks
    }

    /// The grid a table measures for `template`'s net up to its widths times `maxRatio`: every
    /// distinct kind of layer, with channel counts in steps of `multiple` up to the largest a
    /// layer of that kind has (from the smallest when that is below `multiple`: the input's
    /// channels, the classes), thinned to at most `points` values per axis (both ends kept).
    public static func grid(for template: NetDescription, maxRatio: Double, multiple: Int, points: Int) -> [Entry] {
        var big = template
        big.widths = template.architecture.originalWidths.map { max(1, Int((Double($0) * maxRatio).rounded(.up))) }
        // Every block with a projection: other widths than the uniform ones may need them anywhere.
        big.shortcuts = big.residualBlocks.map { _ in .projection }
        var kinds: [Entry] = [], inRange: [ClosedRange<Int>] = [], outRange: [ClosedRange<Int>] = []
        for l in big.layerShapes {
            if let i = kinds.firstIndex(where: { $0.matches(l) }) {
                inRange[i] = min(inRange[i].lowerBound, l.inChannels)...max(inRange[i].upperBound, l.inChannels)
                outRange[i] = min(outRange[i].lowerBound, l.outChannels)...max(outRange[i].upperBound, l.outChannels)
            } else {
                kinds.append(Entry(kernel: l.kernel, stride: l.stride, inputSize: l.inputSize, depthwise: l.isDepthwise,
                                   linear: l.linear, inChannels: [], outChannels: [], ms: []))
                inRange.append(l.inChannels...l.inChannels)
                outRange.append(l.outChannels...l.outChannels)
            }
        }
        // A linear layer's inputs are channels times the map's pixels: steps of multiple * pixels.
        let pixels = template.architecture == .vgg11 ? (template.imageSize / 32) * (template.imageSize / 32) : 1
        for i in kinds.indices {
            kinds[i].inChannels = axis(inRange[i], step: kinds[i].linear ? multiple * pixels : multiple, points: points)
            kinds[i].outChannels = kinds[i].depthwise ? [0] : axis(outRange[i], step: multiple, points: points)
        }
        return kinds
    }

    /// At most `points` ascending values: `range`'s lower bound when it is below `step` (or the
    /// range is that one value), then multiples of `step` up to the upper bound rounded up to one,
    /// evenly spaced, both ends kept.
    static func axis(_ range: ClosedRange<Int>, step: Int, points: Int) -> [Int] {
        if range.count == 1 && range.lowerBound % step != 0 { return [range.lowerBound] }
        let top = max(1, (range.upperBound + step - 1) / step)
        var values = (1...top).map { $0 * step }
        if range.lowerBound < step { values.insert(range.lowerBound, at: 0) }
        guard values.count > points else { return values }
        return (0..<points).map { k in values[Int((Double(k) * Double(values.count - 1) / Double(points - 1)).rounded())] }
    }

    /// The time of one layer: bilinear interpolation on its kind's grid, linear extrapolation
    /// beyond it (from the last two points, never below zero); nil when the table has no such kind.
    public func layerMs(_ l: LayerShape) -> Double? {
        guard let e = entries.first(where: { $0.matches(l) }) else { return nil }
        let (i0, i1, u) = Self.bracket(e.inChannels, l.inChannels)
        if e.depthwise || e.outChannels.count == 1 {
            return max(0, e.ms[i0][0] + u * (e.ms[i1][0] - e.ms[i0][0]))
        }
        let (j0, j1, v) = Self.bracket(e.outChannels, l.outChannels)
        let a = e.ms[i0][j0] + v * (e.ms[i0][j1] - e.ms[i0][j0])
        let b = e.ms[i1][j0] + v * (e.ms[i1][j1] - e.ms[i1][j0])
        return max(0, a + u * (b - a))
    }

    /// Indices of the grid points around `x` and `x`'s position between them (outside the grid:
    /// the last two points and a position beyond 0...1).
    static func bracket(_ grid: [Int], _ x: Int) -> (Int, Int, Double) {
        guard grid.count > 1 else { return (0, 0, 0) }
        var k = 0
        while k < grid.count - 2 && x > grid[k + 1] { k += 1 }
        return (k, k + 1, Double(x - grid[k]) / Double(grid[k + 1] - grid[k]))
    }

    /// The predicted latency of `d`'s net: its layers' times plus `constantMs` plus
    /// `perMParamMs` per million parameters beyond `kneeParams`, and never below `floorMs`: the
    /// fitted constant may be negative (the layers timed alone add up to more than a whole net
    /// takes), which for nets smaller than any it was fitted to extrapolated to times near zero
    /// or below it, budgets no net can meet reported as met.
    /// - Throws: when the net is not the table's (another model or input) or has a layer of a
    ///   kind the table did not measure.
    public func predictMs(_ d: NetDescription) throws -> Double {
        max(floorMs, try layersMs(d) + constantMs + perMParamMs * Double(max(0, d.parameterCount - kneeParams)) / 1e6)
    }

    /// The least a prediction says: the fastest of the nets the table was fitted to (its
    /// calibration nets; the checks stay held out), or 0 for a table without any.
    public var floorMs: Double { max(0, calibration.map(\.measuredMs).min() ?? 0) }

    /// The sum of `d`'s layers' times alone.
    public func layersMs(_ d: NetDescription) throws -> Double {
        guard d.architecture == model, d.inChannels == inChannels, d.imageSize == imageSize, d.classes == classes else {
            throw LatencyTableError("the latency table was measured for \(model.rawValue) with \(inChannels)x\(imageSize)x\(imageSize) inputs and \(classes) classes, not \(d.architecture.rawValue) with \(d.inChannels)x\(d.imageSize)x\(d.imageSize) and \(d.classes)")
        }
        var total = 0.0
        for l in d.layerShapes {
            guard let ms = layerMs(l) else {
                throw LatencyTableError("the latency table has no \(l.kernel)x\(l.kernel) stride-\(l.stride) layer on \(l.inputSize)x\(l.inputSize) inputs")
            }
            total += ms
        }
        return total
    }

    /// Reads and checks a table file.
    /// - Throws: `LatencyTableError` naming the file.
    public static func load(_ path: String) throws -> LatencyTable {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw LatencyTableError("\(path): no such file (write one with `neuralscale bench infer --latency-table \(path) --model M`)")
        }
        let table: LatencyTable
        do { table = try JSONDecoder().decode(LatencyTable.self, from: data) } catch {
            throw LatencyTableError("\(path): not a latency table (\(describeDecodingError(error, data: data)))")
        }
        for e in table.entries {
            let ascending = { (a: [Int]) in zip(a, a.dropFirst()).allSatisfy { $0 < $1 } }
            guard !e.inChannels.isEmpty, !e.outChannels.isEmpty, ascending(e.inChannels), ascending(e.outChannels),
                  e.ms.count == e.inChannels.count, e.ms.allSatisfy({ $0.count == e.outChannels.count }),
                  e.inChannels[0] >= 1, e.outChannels[0] >= 0,
                  e.ms.joined().allSatisfy({ $0.isFinite && $0 >= 0 && $0 <= 1e6 }) else {
                throw LatencyTableError("\(path): the \(e.kernel)x\(e.kernel) stride-\(e.stride) entry on \(e.inputSize)x\(e.inputSize) inputs is malformed (grids must ascend from at least 1 input channel, times be in 0...1e6 ms, one per grid point)")
            }
        }
        // The calibration nets' times bound every prediction from below (`floorMs`).
        for (what, rows) in [("calibration", table.calibration), ("checks", table.checks)] {
            if let bad = rows.first(where: { !($0.measuredMs.isFinite && (0...1e6).contains($0.measuredMs)) }) {
                throw LatencyTableError("\(path): \(what) net \(bad.name)'s measuredMs is \(bad.measuredMs), expected 0...1e6 ms")
            }
        }
        guard table.constantMs.isFinite, abs(table.constantMs) <= 1e6 else {
            throw LatencyTableError("\(path): constantMs is \(table.constantMs), expected a finite number of ms within 1e6")
        }
        guard table.perMParamMs.isFinite, (0...1e6).contains(table.perMParamMs) else {
            throw LatencyTableError("\(path): perMParamMs is \(table.perMParamMs), expected 0...1e6 ms per million parameters")
        }
        guard table.kneeParams >= 0 else { throw LatencyTableError("\(path): kneeParams is \(table.kneeParams), expected >= 0") }
        guard (1...512).contains(table.multiple) else {
            throw LatencyTableError("\(path): multiple is \(table.multiple), expected a channel step in 1...512")
        }
        return table
    }
}

public struct LatencyTableError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}
