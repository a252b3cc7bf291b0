import Foundation

/// Small SVG charts (any browser opens them): no plotting dependency needed for two line charts.
public enum SVGChart {
    public struct Series {
        public var name: String
        public var points: [(x: Double, y: Double)]
        public var color: String
        public var dashed = false
        public var markers = true
        /// Per point, half the length of a vertical error bar (e.g. a standard deviation), or
        /// nil for none; nil for a series without error bars.
        public var yErrors: [Double?]?
        /// Per point, a short label drawn beside it (e.g. the ratio), or nil.
        public var pointLabels: [String]?

        public init(name: String, points: [(x: Double, y: Double)], color: String, dashed: Bool = false, markers: Bool = true,
                    yErrors: [Double?]? = nil, pointLabels: [String]? = nil) {
            precondition(yErrors == nil || yErrors!.count == points.count, "SVGChart.Series: \(yErrors!.count) errors for \(points.count) points")
            precondition(pointLabels == nil || pointLabels!.count == points.count,
                         "SVGChart.Series: \(pointLabels!.count) labels for \(points.count) points")
            self.name = name
            self.points = points
            self.color = color
            self.dashed = dashed
            self.markers = markers
            self.yErrors = yErrors
            self.pointLabels = pointLabels
        }

        /// The error of point `i`, 0 when it has none.
        func error(_ i: Int) -> Double { yErrors?[i].map(abs) ?? 0 }
    }

    /// A line chart with axes, ticks, labels and a legend; `logX`/`logY` use log10 axes.
    /// A linear y axis starts at 0 unless `yFromZero` is false; `xMargin` widens the x range by
    /// that fraction on both sides, so points do not sit on the axes.
    public static func lines(title: String, xLabel: String, yLabel: String, series: [Series],
                             logX: Bool = false, logY: Bool = false, xTickLabels: [String]? = nil,
                             yFromZero: Bool = true, xMargin: Double = 0) -> String {
        // The legend's column is as wide as its longest name (about 6.5 px a character).
        let right = max(190.0, 6.5 * Double(series.map(\.name.count).max() ?? 0) + 60)
        let width = 710.0 + right, left = 80.0, top = 50.0, bottom = 110.0
        let height = max(520.0, top + 18 * Double(series.count) + 20)
        let fx = { (v: Double) in logX ? log10(max(v, 1e-12)) : v }, fy = { (v: Double) in logY ? log10(max(v, 1e-12)) : v }
        let all = series.flatMap(\.points)
        // The y range covers the error bars too.
        let low = series.flatMap { s in s.points.indices.map { fy(s.points[$0].y - s.error($0)) } }
        let high = series.flatMap { s in s.points.indices.map { fy(s.points[$0].y + s.error($0)) } }
        var x0 = all.map { fx($0.x) }.min() ?? 0, x1 = all.map { fx($0.x) }.max() ?? 1
        var y0 = low.min() ?? 0, y1 = high.max() ?? 1
        if x1 - x0 < 1e-9 { x0 -= 0.5; x1 += 0.5 }
        if y1 - y0 < 1e-9 { y0 -= 0.5; y1 += 0.5 }
        let margin = (x1 - x0) * xMargin
        x0 -= margin
        x1 += margin
        if !logY, yFromZero { y0 = min(y0, 0) }
        if logY {  // a little room above and below the data on a log axis
            let pad = (y1 - y0) * 0.05
            y1 += pad
            y0 -= pad
        }
        // Linear axes run from tick to tick; log axes over the data, with decade ticks.
        let yTicks = Ticks(low: y0, high: y1, log: logY), xTicks = Ticks(low: x0, high: x1, log: logX)
        if !logY { (y0, y1) = (yTicks.values.first!, yTicks.values.last!) }
        if !logX, xTickLabels == nil { (x0, x1) = (xTicks.values.first!, xTicks.values.last!) }
        let px = { (v: Double) in left + (fx(v) - x0) / (x1 - x0) * (width - left - right) }
        let py = { (v: Double) in height - bottom - (fy(v) - y0) / (y1 - y0) * (height - top - bottom) }
        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(width / 2)" y="28" text-anchor="middle" font-size="16">\(escape(title))</text>
        <line x1="\(left)" y1="\(height - bottom)" x2="\(width - right)" y2="\(height - bottom)" stroke="black"/>
        <line x1="\(left)" y1="\(top)" x2="\(left)" y2="\(height - bottom)" stroke="black"/>
        <text x="\((left + width - right) / 2)" y="\(height - 20)" text-anchor="middle">\(escape(xLabel))</text>
        <text x="20" y="\((top + height - bottom) / 2)" text-anchor="middle" transform="rotate(-90 20 \((top + height - bottom) / 2))">\(escape(yLabel))</text>

        """
        for (v, label) in zip(yTicks.values, yTicks.labels) {
            let yy = height - bottom - (v - y0) / (y1 - y0) * (height - top - bottom)
            svg += "<line x1=\"\(left - 4)\" y1=\"\(yy)\" x2=\"\(width - right)\" y2=\"\(yy)\" stroke=\"#ddd\"/>"
            svg += "<text x=\"\(left - 8)\" y=\"\(yy + 4)\" text-anchor=\"end\">\(label)</text>\n"
        }
        if let names = xTickLabels {
            for (i, name) in names.enumerated() {
                let xx = px(Double(i))
                svg += "<text x=\"\(xx)\" y=\"\(height - bottom + 12)\" text-anchor=\"end\" font-size=\"9\" transform=\"rotate(-60 \(xx) \(height - bottom + 12))\">\(escape(name))</text>\n"
            }
        } else {
            for (v, label) in zip(xTicks.values, xTicks.labels) {
                let xx = left + (v - x0) / (x1 - x0) * (width - left - right)
                svg += "<line x1=\"\(xx)\" y1=\"\(height - bottom)\" x2=\"\(xx)\" y2=\"\(height - bottom + 4)\" stroke=\"black\"/>"
                svg += "<text x=\"\(xx)\" y=\"\(height - bottom + 18)\" text-anchor=\"middle\">\(label)</text>\n"
            }
        }
        for (i, s) in series.enumerated() {
            let path = s.points.map { "\(px($0.x)),\(py($0.y))" }.joined(separator: " ")
            svg += "<polyline fill=\"none\" stroke=\"\(s.color)\" stroke-width=\"2\"\(s.dashed ? " stroke-dasharray=\"6 4\"" : "") points=\"\(path)\"/>\n"
            if s.markers { for p in s.points { svg += "<circle cx=\"\(px(p.x))\" cy=\"\(py(p.y))\" r=\"2.5\" fill=\"\(s.color)\"/>" } }
            for (k, p) in s.points.enumerated() where s.error(k) > 0 {  // error bar with caps
                let xx = px(p.x), ya = py(p.y - s.error(k)), yb = py(p.y + s.error(k))
                svg += "<path d=\"M\(xx),\(ya) V\(yb) M\(xx - 4),\(ya) h8 M\(xx - 4),\(yb) h8\" stroke=\"\(s.color)\" stroke-width=\"1.5\" fill=\"none\"/>"
            }
            for (k, label) in (s.pointLabels ?? []).enumerated() {
                let p = s.points[k]
                svg += "<text x=\"\(px(p.x) + 7)\" y=\"\(py(p.y) - 6)\" font-size=\"10\" fill=\"\(s.color)\">\(escape(label))</text>"
            }
            let ly = top + 18 * Double(i)
            svg += "\n<line x1=\"\(width - right + 15)\" y1=\"\(ly)\" x2=\"\(width - right + 40)\" y2=\"\(ly)\" stroke=\"\(s.color)\" stroke-width=\"2\"\(s.dashed ? " stroke-dasharray=\"6 4\"" : "")/>"
            svg += "<text x=\"\(width - right + 45)\" y=\"\(ly + 4)\">\(escape(s.name))</text>\n"
        }
        return svg + "</svg>\n"
    }

    /// Horizontal bars, one per label, top to bottom in the order given, each with `notes[i]`
    /// written after its bar; the value axis starts at 0.
    public static func bars(title: String, valueLabel: String, labels: [String], values: [Double], notes: [String]) -> String {
        precondition(labels.count == values.count && notes.count == values.count, "SVGChart.bars: \(labels.count) labels, \(values.count) values, \(notes.count) notes")
        let labelWidth = 7.0 * Double(max(8, labels.map(\.count).max() ?? 8)) + 20, barHeight = 18.0, top = 50.0
        let plot = 520.0, noteWidth = 170.0
        let width = labelWidth + plot + noteWidth, height = top + barHeight * Double(max(labels.count, 1)) + 60
        let ticks = Ticks(low: 0, high: max(values.max() ?? 1, 1e-12), log: false, target: 4), high = ticks.values.last!
        let x = { (v: Double) in labelWidth + v / high * plot }
        var svg = """
        <svg xmlns="http://www.w3.org/2000/svg" width="\(Int(width))" height="\(Int(height))" font-family="sans-serif" font-size="12">
        <rect width="100%" height="100%" fill="white"/>
        <text x="\(width / 2)" y="28" text-anchor="middle" font-size="16">\(escape(title))</text>

        """
        let bottom = top + barHeight * Double(labels.count)
        for (v, label) in zip(ticks.values, ticks.labels) {
            svg += "<line x1=\"\(x(v))\" y1=\"\(top)\" x2=\"\(x(v))\" y2=\"\(bottom)\" stroke=\"#ddd\"/>"
            svg += "<text x=\"\(x(v))\" y=\"\(bottom + 16)\" text-anchor=\"middle\">\(label)</text>\n"
        }
        svg += "<text x=\"\(labelWidth + plot / 2)\" y=\"\(bottom + 40)\" text-anchor=\"middle\">\(escape(valueLabel))</text>\n"
        for (i, label) in labels.enumerated() {
            let y = top + barHeight * Double(i)
            svg += "<text x=\"\(labelWidth - 6)\" y=\"\(y + 13)\" text-anchor=\"end\">\(escape(label))</text>"
            svg += "<rect x=\"\(labelWidth)\" y=\"\(y + 3)\" width=\"\(max(0.5, x(values[i]) - labelWidth))\" height=\"\(barHeight - 6)\" fill=\"#1f77b4\"/>"
            svg += "<text x=\"\(x(values[i]) + 5)\" y=\"\(y + 13)\" font-size=\"10\">\(escape(notes[i]))</text>\n"
        }
        return svg + "</svg>\n"
    }

    /// Axis ticks the way plotting libraries place them: on a linear axis 1-2-5 steps (about five
    /// ticks) with the range widened to whole steps and one number of decimals for all; on a log
    /// axis (positions in log10) every decade inside the range, with 2 and 5 between decades when
    /// fewer than three decades fall inside.
    public struct Ticks {
        /// Tick positions (log10 of the value on a log axis) and their labels.
        public let values: [Double]
        public let labels: [String]

        public init(low: Double, high: Double, log: Bool, target: Int = 5) {
            let eps = 1e-9
            if log {
                // (position, value, decimals): the value as m * 10^d exactly, for its label.
                func ticks(_ multiples: [Double]) -> [(Double, Double, Int)] {
                    var out: [(Double, Double, Int)] = []
                    for d in Int(floor(low - eps))...Int(ceil(high + eps)) {
                        let decade: Double = d >= 0 ? pow(10, Double(d)) : 1 / pow(10, Double(-d))
                        for m in multiples {
                            let position = Double(d) + log10(m)
                            if position >= low - eps && position <= high + eps { out.append((position, m * decade, max(0, -d))) }
                        }
                    }
                    return out
                }
                var t = ticks([1])
                if t.count < 3 { t = ticks([1, 2, 5]) }
                if t.isEmpty { t = [(low, pow(10, low), 3), (high, pow(10, high), 3)] }
                values = t.map(\.0)
                labels = t.map { Ticks.label($0.1, decimals: $0.2) }
                return
            }
            let raw = max(high - low, 1e-12) / Double(max(target, 1)), magnitude = pow(10, floor(log10(raw)))
            let step = [1.0, 2, 5, 10].map { $0 * magnitude }.first { $0 >= raw * (1 - eps) } ?? 10 * magnitude
            let first = floor(low / step + eps), last = ceil(high / step - eps)
            values = stride(from: first, through: last, by: 1).map { $0 * step }
            let decimals = max(0, -Int(floor(log10(step) + eps)))
            labels = values.map { Ticks.label($0, decimals: decimals) }
        }

        /// `v` with `decimals` decimals; whole thousands and millions from 10k on as `20k`, `3M`.
        static func label(_ v: Double, decimals: Int) -> String {
            let a = abs(v)
            if decimals == 0, a >= 1e6, a.truncatingRemainder(dividingBy: 1e6) == 0 { return String(format: "%.0fM", v / 1e6) }
            if decimals == 0, a >= 1e4, a.truncatingRemainder(dividingBy: 1e3) == 0 { return String(format: "%.0fk", v / 1e3) }
            let text = String(format: "%.\(decimals)f", v), zero = String(format: "%.\(decimals)f", 0.0)
            return text == "-" + zero ? zero : text
        }
    }


    static func escape(_ s: String) -> String {
        s.replacingOccurrences(of: "&", with: "&amp;").replacingOccurrences(of: "<", with: "&lt;").replacingOccurrences(of: ">", with: "&gt;")
    }
}
