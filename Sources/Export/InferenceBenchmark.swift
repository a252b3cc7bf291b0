import Autodiff
import Checkpoint
import Foundation
import Nets
import PythonBridge

/// Inference timings the way the studies measured devices: a random input, `warmup` untimed runs,
/// then `runs` timed runs, repeated `trials` times; per batch size the mean, median and p90 per
/// trial and over all runs, and images/s.
public struct InferenceBenchmark: Codable, Sendable {
    public struct Trial: Codable, Sendable {
        public let mean_ms: Double, median_ms: Double, p90_ms: Double
    }
    public struct Result: Codable, Sendable {
        public let batch: Int
        public let trials: [Trial]
        public let mean_ms: Double, median_ms: Double, p90_ms: Double, images_per_s: Double
    }
    public let model: String
    /// "ort" (ONNX Runtime, CPU provider) or "swift" (this project's engine, eval mode).
    public let backend: String
    public let threads: Int
    /// Resident-memory increase of preparing the model and running it once, MB.
    public let memory_mb: Double
    public let warmup: Int, runs: Int
    public let results: [Result]

    /// The same figures under another model name (a checkpoint timed through a temporary export).
    public func named(_ name: String) -> InferenceBenchmark {
        InferenceBenchmark(model: name, backend: backend, threads: threads, memory_mb: memory_mb, warmup: warmup, runs: runs, results: results)
    }

    /// Times `net` in eval mode on the Swift engine. Memory: the resident-set increase of
    /// building the net from `description` and running it once, in this process.
    public static func swift(_ name: String, build: () throws -> Network, batchSizes: [Int], warmup: Int, runs: Int,
                             trials: Int) rethrows -> InferenceBenchmark {
        let before = residentMB()
        let net = try build()
        let d = net.netDescription
        var rng = RandomGenerator(seed: 0)
        _ = Tape.withoutGradients { net.logits(Tensor.randn([1, d.inChannels, d.imageSize, d.imageSize], using: &rng), training: false) }
        let memory = residentMB() - before
        var results: [Result] = []
        for b in batchSizes {
            let x = Tensor.randn([b, d.inChannels, d.imageSize, d.imageSize], using: &rng)
            var every: [Double] = [], perTrial: [Trial] = []
            for _ in 0..<trials {
                for _ in 0..<warmup { _ = Tape.withoutGradients { net.logits(x, training: false) } }
                var times: [Double] = []
                for _ in 0..<runs {
                    let t0 = monotonicSeconds()
                    _ = Tape.withoutGradients { net.logits(x, training: false) }
                    times.append(1e3 * (monotonicSeconds() - t0))
                }
                every += times
                perTrial.append(Trial(mean_ms: mean(times), median_ms: quantile(times, 0.5), p90_ms: quantile(times, 0.9)))
            }
            let m = mean(every)
            results.append(Result(batch: b, trials: perTrial, mean_ms: m, median_ms: quantile(every, 0.5),
                                  p90_ms: quantile(every, 0.9), images_per_s: 1e3 * Double(b) / m))
        }
        return InferenceBenchmark(model: name, backend: "swift", threads: Parallel.workers, memory_mb: memory, warmup: warmup,
                                  runs: runs, results: results)
    }

    /// Times the ONNX model at `path` with ONNX Runtime, in a child process of its own
    /// (`scripts/bench_ort.py`), so that models do not share a heap.
    public static func onnxRuntime(_ path: String, batchSizes: [Int], warmup: Int, runs: Int, trials: Int,
                                   threads: Int) throws -> InferenceBenchmark {
        let script = try Python.script("bench_ort.py")
        let (status, out, err) = try Python.run([script, path, "--batch-sizes", batchSizes.map(String.init).joined(separator: ","),
                                                 "--warmup", String(warmup), "--runs", String(runs), "--trials", String(trials),
                                                 "--threads", String(threads), "--json"])
        guard status == 0, let report = try? JSONDecoder().decode(InferenceBenchmark.self, from: Data(out.utf8)) else {
            throw ExportError("ONNX Runtime's benchmark (\(script)) exited with status \(status): \(err.isEmpty ? out : err)")
        }
        return report
    }
}

private func mean(_ v: [Double]) -> Double { v.reduce(0, +) / Double(max(v.count, 1)) }

/// The `q`-quantile by the nearest lower rank, as `bench_ort.py` takes it.
private func quantile(_ v: [Double], _ q: Double) -> Double {
    let s = v.sorted()
    return s.isEmpty ? .nan : s[Int(q * Double(s.count - 1))]
}

/// This process's resident set, MB (`VmRSS` of /proc/self/status).
func residentMB() -> Double {
    guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
          let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
          let kb = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return .nan }
    return kb / 1024
}
