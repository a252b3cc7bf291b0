import ArchDescent
import Datasets
import Foundation
import Nets
import Pruning
import TestSupport
import XCTest

/// `neuralscale fit`'s reader: this tool's CSVs and the reference's headerless records give the
/// same fit as the rows themselves; malformed files are refused by line.
final class TrajectoryImportTests: XCTestCase {
    /// A trajectory of VGG-11 on CIFAR-10 whose widths follow w_g = alpha_g * s^beta_g for a
    /// shrinking s: different groups shrink at different rates, as in a search.
    func rows() -> [TrajectoryRow] {
        let template = NetDescription.uniform(.vgg11, ratio: 1, inChannels: 3, imageSize: 32, classes: 10)
        return (0..<14).map { k in
            var d = template
            d.widths = template.widths.enumerated().map { g, w in max(1, Int((Double(w) * pow(0.88, Double(k) * (0.6 + 0.12 * Double(g)))).rounded())) }
            return TrajectoryRow(widths: d.widths, params: d.parameterCount)
        }
    }

    func testEveryFormatGivesTheFitOfTheRows() throws {
        let folder = try temporaryFolder("fit")
        let rows = rows(), names = Architecture.vgg11.groupNames
        let expected = try PowerLawFit.fit(rows)
        func write(_ name: String, _ text: String) throws -> String {
            let path = folder.appendingPathComponent(name).path
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            return path
        }
        let ours = try write("iteration-0-trajectory.csv", names.joined(separator: ",") + ",params\n"
                             + rows.map { $0.widths.map(String.init).joined(separator: ",") + ",\($0.params)" }.joined(separator: "\n") + "\n")
        let bare = try write("records.txt", rows.map { $0.widths.map(String.init).joined(separator: ",") }.joined(separator: "\n"))
        let withP = try write("records-p.txt", rows.map { ($0.widths + [$0.params]).map(String.init).joined(separator: " ") }.joined(separator: "\n"))
        let floats = try write("records-f.txt", "# numpy.savetxt\n" + rows.map { $0.widths.map { "\($0).0" }.joined(separator: ",") }.joined(separator: "\n"))
        let windows = try write("records-crlf.txt", rows.map { $0.widths.map(String.init).joined(separator: ",") }.joined(separator: "\r\n") + "\r\n")
        let oursWindows = try write("trajectory-crlf.csv", names.joined(separator: ",") + ",params\r\n"
                                    + rows.map { $0.widths.map(String.init).joined(separator: ",") + ",\($0.params)" }.joined(separator: "\r\n"))
        for file in [ours, bare, withP, floats, windows, oursWindows] {
            let result = try TrajectoryImport.descent(.vgg11, .cifar10, files: [file])
            XCTAssertEqual(result.iterations.count, 1)
            XCTAssertEqual(result.iterations[0].trajectory, rows, file)
            XCTAssertEqual(result.iterations[0].fit, expected, file)
            XCTAssertEqual(result.ratios.map(\.ratio), [0.25, 0.5, 0.75, 1.0])
            // What `train --scaling neuralscale` reads: the file written loads and scales.
            let out = folder.appendingPathComponent("descent.json").path
            try JSONEncoder().encode(result).write(to: URL(fileURLWithPath: out))
            let loaded = try DescentResult.load(out)
            XCTAssertEqual(try loaded.scaled(ratio: 0.5), result.ratios[1])
        }
        // The groups shrink at different rates, so the fit's exponents differ (and fit well).
        let betas = expected.groups.map(\.beta)
        XCTAssertLessThan(betas.first!, betas.last!)
        XCTAssertTrue(expected.groups.allSatisfy { ($0.rSquared ?? 0) > 0.99 })
        // Two files: two iterations, the last one's fit used.
        let two = try TrajectoryImport.descent(.vgg11, .cifar10, files: [bare, ours])
        XCTAssertEqual(two.iterations.map(\.index), [0, 1])
        XCTAssertEqual(try two.fit(), expected)
    }

    /// `fit --couple-residuals`: a coupled search's trajectory of PreAct ResNet-18 fits each
    /// stream as one, and the file carries the coupling; an uncoupled one is refused by row.
    func testCoupledTrajectories() throws {
        let folder = try temporaryFolder("fit-coupled")
        let template = NetDescription.uniform(.preactResNet18, ratio: 1, inChannels: 3, imageSize: 32, classes: 10)
        let streams = template.identityCoupling
        func row(_ k: Int, tied: Bool) -> TrajectoryRow {
            var d = template
            d.widths = template.widths.enumerated().map { g, w in
                // A stream's groups shrink at its first group's rate.
                let lead = tied ? (streams.first { $0.contains(g) }?[0] ?? g) : g
                return max(1, Int((Double(w) * pow(0.9, Double(k) * (0.5 + 0.05 * Double(lead)))).rounded()))
            }
            return TrajectoryRow(widths: d.widths, params: d.parameterCount)
        }
        func write(_ name: String, _ rows: [TrajectoryRow]) throws -> String {
            let path = folder.appendingPathComponent(name).path
            try Data(rows.map { $0.widths.map(String.init).joined(separator: ",") }.joined(separator: "\n").utf8).write(to: URL(fileURLWithPath: path))
            return path
        }
        let coupled = try write("coupled.txt", (0..<10).map { row($0, tied: true) })
        let result = try TrajectoryImport.descent(.preactResNet18, .cifar10, files: [coupled], coupleResiduals: true)
        XCTAssertEqual(result.config.coupleResiduals, true)
        XCTAssertEqual(try result.fit().coupling, streams)
        for r in result.ratios {
            for set in streams { XCTAssertEqual(Set(set.map { r.neuralscaleWidths[$0] }).count, 1, "ratio \(r.ratio): \(r.neuralscaleWidths)") }
        }
        let out = folder.appendingPathComponent("descent.json").path
        try JSONEncoder().encode(result).write(to: URL(fileURLWithPath: out))
        XCTAssertEqual(try DescentResult.load(out), result)
        let plain = try write("plain.txt", (0..<10).map { row($0, tied: false) })
        XCTAssertThrowsError(try TrajectoryImport.descent(.preactResNet18, .cifar10, files: [plain], coupleResiduals: true)) {
            XCTAssertTrue("\($0)".contains(plain) && "\($0)".contains("row 2"), "\($0)")
        }
        XCTAssertNil(try TrajectoryImport.descent(.preactResNet18, .cifar10, files: [plain]).fit().coupling)
    }

    func testMalformedFilesAreRefusedByLine() throws {
        let folder = try temporaryFolder("fit-bad")
        let good = rows()[0].widths.map(String.init).joined(separator: ",")
        func refuse(_ text: String, _ mentions: [String], file: StaticString = #filePath, line: UInt = #line) throws {
            let path = folder.appendingPathComponent("t-\(UUID().uuidString).csv").path
            try Data(text.utf8).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try TrajectoryImport.descent(.vgg11, .cifar10, files: [path]), file: file, line: line) { error in
                for m in mentions + [path] { XCTAssertTrue("\(error)".contains(m), "\(error) lacks \(m)", file: file, line: line) }
            }
        }
        try refuse("\(good)\n1,2,3\n", [":2:", "expected 8 widths"])
        try refuse("\(good)\n\(good),x\n", [":2:", "'x'"])
        try refuse("\(good)\n\(good.replacingOccurrences(of: "64,", with: "0,"))\n", [":2:", "width 1 is 0"])
        try refuse("\(good),12345\n", [":1:", "P is 12345", "9231114"])
        try refuse("a,b,c,d,e,f,g,h,params\n\(good)\n", [":1:", "header"])
        try refuse("\n# nothing\n", ["no trajectory rows"])
        try refuse("\(good)\n\(good)\n1.5,2,3,4,5,6,7,8\n", [":3:", "'1.5'"])
        XCTAssertThrowsError(try TrajectoryImport.descent(.vgg11, .cifar10, files: [folder.path + "/missing.csv"])) {
            XCTAssertTrue("\($0)".contains("missing.csv: no such file"), "\($0)")
        }
    }
}
