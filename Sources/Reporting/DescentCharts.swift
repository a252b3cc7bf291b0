import ArchDescent
import Foundation
import Nets
import Pruning

// The search's own figures, drawn from its `descent.json`. They live here, not in ArchDescent,
// so the search knows nothing of how it is drawn.

extension DescentResult {
    /// The papers' "layer widths" figure: NeuralScale against uniform widths at `ratio`, across
    /// the depth of the net.
    public func widthsChart(ratio: Double = 1.0) throws -> String {
        let s = try scaled(ratio: ratio)
        return SVGChart.lines(
            title: "\(template.architecture.rawValue) on \(config.dataset): layer widths at ratio \(ratio) (P uniform \(s.uniformParams), NeuralScale \(s.neuralscaleParams))",
            xLabel: "width group (input to output)", yLabel: "filters",
            series: [SVGChart.Series(name: "uniform", points: s.uniformWidths.enumerated().map { (Double($0), Double($1)) }, color: "#888", dashed: true),
                     SVGChart.Series(name: "NeuralScale", points: s.neuralscaleWidths.enumerated().map { (Double($0), Double($1)) }, color: "#c0392b")],
            xTickLabels: groupNames)
    }

    /// One iteration's trajectory: widths against P on log-log axes, with the fitted lines.
    public func trajectoryChart(iteration index: Int) throws -> String {
        guard let it = iterations.first(where: { $0.index == index }) else { throw FitError("no iteration \(index)") }
        let palette = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]
        let ps = it.trajectory.map { Double($0.params) }
        let lo = ps.min() ?? 1, hi = ps.max() ?? 2
        var series: [SVGChart.Series] = []
        for (g, name) in groupNames.enumerated() {
            let color = palette[g % palette.count]
            series.append(SVGChart.Series(name: name, points: it.trajectory.map { (Double($0.params), Double($0.widths[g])) },
                                          color: color, markers: true))
            let f = it.fit.groups[g]
            if !it.fit.isFallback {
                series.append(SVGChart.Series(name: String(format: "fit b=%.2f R2=%.2f", f.beta, f.rSquared ?? .nan),
                                              points: [lo, hi].map { ($0, f.alpha * pow($0, f.beta)) }, color: color, dashed: true, markers: false))
            }
        }
        return SVGChart.lines(title: "iteration \(index): filters per group against parameters (log-log), with fits",
                              xLabel: "parameters P", yLabel: "filters", series: series, logX: true, logY: true)
    }
}
