import ArgumentParser
import Checkpoint
import Datasets
import Foundation
import Nets
import Training

// The nets and datasets are flag values as they are: ArgumentParser then checks them and lists
// the choices in --help and in its error messages.
extension Architecture: ExpressibleByArgument {}
extension DatasetKind: ExpressibleByArgument {}

/// The root command. The executable's `main` calls `NeuralScale.main()`.
public struct NeuralScale: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "neuralscale",
        abstract: "Train, prune and rescale convolutional nets on the CPU (NeuralScale, CVPR 2020).",
        discussion: """
        Run `neuralscale help <subcommand>` for its flags.
        """,
        subcommands: [Train.self, Eval.self, Descend.self, Widths.self, Prune.self, ExportONNX.self, Quantize.self, Stats.self, Report.self, SweepCommand.self, Advise.self, Fit.self, Bench.self]
    )

    /// ArgumentParser's `main`, with two changes to how errors thrown while running are shown:
    /// a configuration error (a `ValidationError` or an invalid setting found after parsing)
    /// prints the usage of the subcommand that was run, not the root's, and exits 64 as a flag
    /// error at parse time does; any other error is one line `Error: ...` (Foundation's file
    /// errors as "path: reason") and exits 1.
    public init() {}

    /// Whether this process is the tool itself (`main` ran), not a test runner calling commands:
    /// then its own executable runs the child processes, whatever its file is called.
    nonisolated(unsafe) static var isProcessEntry = false

    public static func main() {
        isProcessEntry = true
        // A sweep's step ends with its sweep (NEURALSCALE_PARENT_PID, set by the sweep).
        TemporaryFiles.terminateWithParent()
        var command: ParsableCommand
        do {
            command = try parseAsRoot(nil)
        } catch {
            exit(withError: error)
        }
        do {
            try command.run()
        } catch let error as ExitCode {
            exit(withError: error)
        } catch let error as CleanExit {
            exit(withError: error)
        } catch where exitCode(for: error) == .success {
            // `--help` and `help <subcommand>` run ArgumentParser's help command, whose `run()`
            // throws its request for the help screen: ArgumentParser prints it.
            exit(withError: error)
        } catch {
            if let message = configurationMessage(error) {
                let usage = usageString(for: type(of: command))
                let name = ([configuration.commandName ?? "neuralscale"] + subcommandPath(type(of: command))).joined(separator: " ")
                FileHandle.standardError.write(Data("Error: \(message)\nUsage: \(usage)\n  See '\(name) --help' for more information.\n".utf8))
                Foundation.exit(ExitCode.validationFailure.rawValue)
            }
            FileHandle.standardError.write(Data("Error: \(oneLine(error))\n".utf8))
            Foundation.exit(ExitCode.failure.rawValue)
        }
    }

    /// The message of an error that is about the command line rather than the work.
    static func configurationMessage(_ error: Error) -> String? {
        switch error {
        case let e as ValidationError: return e.message
        case let TrainingError.invalidConfig(m): return m
        default: return nil
        }
    }

    /// The subcommand names from the root to `command`.
    static func subcommandPath(_ command: ParsableCommand.Type) -> [String] {
        func search(_ node: ParsableCommand.Type, _ path: [String]) -> [String]? {
            if node == command { return path }
            for sub in node.configuration.subcommands {
                let name = sub.configuration.commandName ?? String(describing: sub).lowercased()
                if let found = search(sub, path + [name]) { return found }
            }
            return nil
        }
        return search(self, []) ?? []
    }
}

/// One line for any error: a Swift error's own description, or for Foundation's file errors
/// (`Error Domain=NSCocoaErrorDomain Code=... UserInfo={...}`) the path and the reason.
func oneLine(_ error: Error) -> String {
    let ns = error as NSError
    guard error is CocoaError || [NSCocoaErrorDomain, NSPOSIXErrorDomain].contains(ns.domain) else {
        return "\(error)".replacingOccurrences(of: "\n", with: " ")
    }
    let path = (ns.userInfo[NSFilePathErrorKey] as? String) ?? (ns.userInfo[NSURLErrorKey] as? URL)?.path
    return (path.map { "\($0): " } ?? "") + fileErrorReason(error)
}

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Measure speed in a release build: the CPU kernels, training steps, and inference of whole nets on ONNX Runtime and this engine.",
        subcommands: [BenchConv.self, BenchOps.self, BenchTrain.self, BenchInfer.self]
    )
}
