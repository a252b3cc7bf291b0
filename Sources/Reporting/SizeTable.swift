import ArchDescent
import Datasets
import Foundation
import Nets
import Training

/// The studies' size table (TECS Table 3 and Fig. 2): per scaling and ratio the params, MFLOPs,
/// critical datapath length and widths; per scaling the MFLOPs and CDL ranges over the ratios and
/// the least-squares line MFLOPs = slope * params + intercept with its R^2; and the ratio of the
/// NeuralScale slope to the uniform one.
public struct SizeTable: Encodable {
    public struct Row: Encodable {
        public let scaling: String, ratio: Double, params: Int, mflops: Double, cdl: Int, widths: [Int]
    }
    public struct Summary: Encodable {
        public let scaling: String
        public let mflops_min: Double, mflops_max: Double, cdl_min: Int, cdl_max: Int
        /// MFLOPs per parameter and MFLOPs; nil with fewer than two distinct sizes.
        public let slope: Double?, intercept: Double?, r2: Double?
    }
    public let model: String, dataset: String
    public let rows: [Row]
    public let summaries: [Summary]
    /// NeuralScale slope / uniform slope, when both scalings have a line.
    public let slope_ratio: Double?

    /// - Parameter descent: the search whose widths the NeuralScale rows take (needed when
    ///   `scalings` has `.neuralscale`).
    public static func make(_ model: Architecture, _ dataset: DatasetKind, ratios: [Double], scalings: [Scaling],
                            descent: String?, iteration: Int?) throws -> SizeTable {
        var rows: [Row] = []
        for scaling in scalings {
            for ratio in ratios {
                let scaled = try ScaledNet.make(model, dataset, ratio: ratio, descent: scaling == .neuralscale ? descent : nil,
                                                iteration: iteration, flag: "--ratios")
                let net = try makeNetwork(scaled.description, initialization: .none)
                let graph = net.inferenceGraph
                rows.append(Row(scaling: scaling.rawValue, ratio: ratio, params: net.parameterCount, mflops: 2 * Double(graph.macs) / 1e6,
                                cdl: graph.foldingBatchNorms().criticalPathLength, widths: scaled.description.widths))
            }
        }
        let summaries = scalings.map { scaling -> Summary in
            let mine = rows.filter { $0.scaling == scaling.rawValue }
            let line = LeastSquares(x: mine.map { Double($0.params) }, y: mine.map(\.mflops))
            return Summary(scaling: scaling.rawValue, mflops_min: mine.map(\.mflops).min()!, mflops_max: mine.map(\.mflops).max()!,
                           cdl_min: mine.map(\.cdl).min()!, cdl_max: mine.map(\.cdl).max()!, slope: line?.slope, intercept: line?.intercept,
                           r2: line?.r2)
        }
        let slope = { (s: Scaling) in summaries.first { $0.scaling == s.rawValue }?.slope }
        let ratio = slope(.neuralscale).flatMap { n in slope(.uniform).map { n / $0 } }
        return SizeTable(model: model.rawValue, dataset: dataset.rawValue, rows: rows, summaries: summaries, slope_ratio: ratio)
    }

    public var text: String {
        var out = "\(model) on \(dataset)\n"
        out += "scaling      ratio      params     MFLOPs  CDL  widths\n"
        for r in rows {
            out += r.scaling.padding(toLength: 11, withPad: " ", startingAt: 0)
                + String(format: "%6.3g %11d %10.2f %4d  ", r.ratio, r.params, r.mflops, r.cdl)
                + r.widths.map(String.init).joined(separator: ",") + "\n"
        }
        out += "\nscaling      MFLOPs range          CDL range  MFLOPs = slope * params + intercept\n"
        for s in summaries {
            out += s.scaling.padding(toLength: 11, withPad: " ", startingAt: 0)
                + String(format: "%9.2f - %-9.2f %4d - %-4d  ", s.mflops_min, s.mflops_max, s.cdl_min, s.cdl_max)
                + (s.slope.map { String(format: "%.4g * P %@ %.4g (R^2 %.5f)", $0, s.intercept! < 0 ? "-" : "+", abs(s.intercept!), s.r2!) }
                    ?? "- (one size)") + "\n"
        }
        if let slope_ratio { out += String(format: "\nslope ratio NeuralScale / uniform: %.2fx\n", slope_ratio) }
        return out
    }

    public var csv: String {
        var out = "model,dataset,scaling,ratio,params,mflops,cdl,widths\n"
        for r in rows {
            out += "\(model),\(dataset),\(r.scaling),\(r.ratio),\(r.params),\(r.mflops),\(r.cdl),\"\(r.widths.map(String.init).joined(separator: " "))\"\n"
        }
        return out
    }
}
