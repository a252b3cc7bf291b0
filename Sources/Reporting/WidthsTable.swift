import ArchDescent
import Checkpoint
import Foundation
import Nets

/// Per-group uniform and NeuralScale widths of a search at one ratio, as a text table (what
/// `neuralscale widths` and the end of `neuralscale descend` print).
public enum WidthsTable {
    /// The table, or "no fit" when the search gives no net at `ratio` (or has no `iteration`).
    public static func render(_ result: DescentResult, ratio: Double, iteration: Int? = nil) -> String {
        guard let s = try? result.scaled(ratio: ratio, iteration: iteration) else { return "no fit" }
        let fit = try? result.fit(iteration: iteration)
        var lines = ["ratio \(ratio): uniform P \(s.uniformParams), NeuralScale P \(s.neuralscaleParams) "
                     + String(format: "(%+.2f%%)", 100 * Double(s.neuralscaleParams - s.uniformParams) / Double(s.uniformParams))]
        lines.append("group".padding(toLength: 22, withPad: " ", startingAt: 0) + "uniform  neuralscale  beta    R^2")
        for (g, name) in result.groupNames.enumerated() {
            let f = fit?.groups[g]
            lines.append(name.padding(toLength: 22, withPad: " ", startingAt: 0)
                         + String(format: "%-9d%-13d%-8.3f", s.uniformWidths[g], s.neuralscaleWidths[g], f?.beta ?? 0)
                         + (f?.rSquared.map { String(format: "%.3f", $0) } ?? "-"))
        }
        if let coupling = fit?.coupling {
            lines.append("coupled residual streams (one width each): "
                         + result.template.architecture.describe(coupling: coupling))
        }
        return lines.joined(separator: "\n")
    }
}

extension DescentResult {
    /// Writes the search's figures into `folder`, each atomically: `widths-r1.0.svg` and one
    /// `iteration-<i>-trajectory.svg` per iteration. Returns their paths.
    @discardableResult
    public func writeCharts(in folder: String) throws -> [String] {
        func path(_ name: String) -> String { URL(fileURLWithPath: folder).appendingPathComponent(name).path }
        var written = [path("widths-r1.0.svg")]
        try AtomicFile.write(Data(try widthsChart(ratio: 1.0).utf8), to: written[0])
        for it in iterations {
            written.append(path("iteration-\(it.index)-trajectory.svg"))
            try AtomicFile.write(Data(try trajectoryChart(iteration: it.index).utf8), to: written.last!)
        }
        return written
    }
}
