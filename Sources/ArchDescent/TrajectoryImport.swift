import Datasets
import Foundation
import Nets
import Pruning

/// Trajectories recorded elsewhere, fitted into a `descent.json` (`neuralscale fit`): this
/// tool's own `iteration-<i>-trajectory.csv` (a header of the group names and `params`) or the
/// NeuralScale reference implementation's headerless prune records (one row per pruning step:
/// every group's width in the spec's group order, with or without a trailing P column).
public enum TrajectoryImport {
    /// The rows of one file, P recomputed for the net `template` (with `template`'s input and
    /// classes). A given P column must agree with the recomputed P within 1%: otherwise the
    /// records are of another net or dataset.
    /// - Throws: `FitError` naming the file and line.
    public static func read(_ path: String, template: NetDescription) throws -> [TrajectoryRow] {
        let text: String
        do { text = try String(contentsOfFile: path, encoding: .utf8) } catch {
            throw FitError("\(path): \(unreadableReason(path, error))")
        }
        let groups = template.architecture.originalWidths.count, names = template.architecture.groupNames
        var rows: [TrajectoryRow] = []
        // Any line ending: Swift reads "\r\n" as one Character, which a split at "\n" never meets
        // (a Windows file was one line).
        for (k, raw) in text.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).enumerated() {
            let line = raw.trimmingCharacters(in: .whitespacesAndNewlines)
            if line.isEmpty || line.hasPrefix("#") { continue }
            let fields = line.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }).map(String.init)
            let at = "\(path):\(k + 1)"
            if rows.isEmpty, fields.contains(where: { Double($0) == nil }) {  // a header
                let header = fields.last == "params" ? Array(fields.dropLast()) : fields
                guard header == names else {
                    throw FitError("\(at): the header names \(header.count) groups \(header.prefix(3).joined(separator: ", "))...; "
                                   + "\(template.architecture.rawValue)'s \(groups) are \(names.prefix(3).joined(separator: ", "))...")
                }
                continue
            }
            guard fields.count == groups || fields.count == groups + 1 else {
                throw FitError("\(at): expected \(groups) widths (\(template.architecture.rawValue)'s groups), optionally then P; got \(fields.count) fields")
            }
            // Reference records may write integers as floats ("64.0").
            let values = fields.map { f -> Int? in
                guard let v = Double(f), v.isFinite, v == v.rounded(), abs(v) < 1e12 else { return nil }
                return Int(v)
            }
            if let i = values.firstIndex(where: { $0 == nil }) { throw FitError("\(at): '\(fields[i])' is not an integer width or P") }
            let ints = values.map { $0! }, widths = Array(ints.prefix(groups))
            if let i = widths.firstIndex(where: { $0 < 1 || $0 > NetDescription.maxWidth }) {
                throw FitError("\(at): width \(i + 1) is \(widths[i]); widths must be in 1...\(NetDescription.maxWidth)")
            }
            var d = template
            d.widths = widths
            let params = d.parameterCount
            if ints.count == groups + 1 {
                let given = ints[groups]
                guard abs(Double(given - params)) <= 0.01 * Double(params) else {
                    throw FitError("\(at): P is \(given), but \(template.architecture.rawValue) with these widths on "
                                   + "\(template.inChannels)x\(template.imageSize)x\(template.imageSize) inputs and \(template.classes) classes has \(params)")
                }
            }
            rows.append(TrajectoryRow(widths: widths, params: params))
        }
        guard !rows.isEmpty else { throw FitError("\(path): no trajectory rows") }
        return rows
    }

    /// A search result from trajectory files, one iteration per file in the order given (the last
    /// one's fit is the one `train --scaling neuralscale` and `widths` use), with the widths at
    /// ratios 0.25, 0.5, 0.75 and 1.0. With `coupleResiduals` (trajectories of a
    /// `descend --couple-residuals` search) the net's residual streams are fitted and sized as one.
    /// - Throws: `FitError` naming the file; with `coupleResiduals`, when a row gives the groups of
    ///   a stream different widths.
    public static func descent(_ model: Architecture, _ dataset: DatasetKind, files: [String],
                               coupleResiduals: Bool = false) throws -> DescentResult {
        let template = NetDescription.uniform(model, ratio: 1, inChannels: dataset.channels, imageSize: dataset.imageSize,
                                              classes: dataset.classes)
        let coupling = coupleResiduals ? template.identityCoupling : []
        var iterations: [DescentIteration] = []
        for (i, file) in files.enumerated() {
            let rows = try read(file, template: template)
            for (r, row) in rows.enumerated() {
                for set in coupling where Set(set.map { row.widths[$0] }).count > 1 {
                    throw FitError("\(file): row \(r + 1) gives the residual stream \(set.map { model.groupNames[$0] }) widths \(set.map { row.widths[$0] }); --couple-residuals needs the trajectory of a coupled search")
                }
            }
            let fit: PowerLawFit
            do { fit = try PowerLawFit.fit(rows, coupling: coupling.isEmpty ? nil : coupling) } catch { throw FitError("\(file): \(error)") }
            iterations.append(DescentIteration(index: i, startWidths: rows[0].widths, startParams: rows[0].params, trajectory: rows,
                                               fit: fit, stop: nil, epochs: 0))
        }
        var config = DescentConfig(model: model, dataset: dataset.rawValue, iterations: files.count)
        config.coupleResiduals = coupleResiduals ? true : nil
        var result = DescentResult(config: config, template: template,
                                   groupNames: model.groupNames, iterations: iterations, ratios: [])
        result.ratios = try [0.25, 0.5, 0.75, 1.0].map { try result.scaled(ratio: $0) }
        return result
    }
}
