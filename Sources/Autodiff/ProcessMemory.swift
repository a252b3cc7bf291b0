import Foundation

/// This process's memory as the kernel reports it (/proc/self/status).
public enum ProcessMemory {
    /// The resident set now, MB (`VmRSS`); NaN where /proc is unavailable.
    public static var residentMB: Double { field("VmRSS:") }
    /// The largest resident set so far, MB (`VmHWM`); NaN where /proc is unavailable.
    public static var peakResidentMB: Double { field("VmHWM:") }

    private static func field(_ name: String) -> Double {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix(name) }),
              let kb = Double(line.split(separator: " ", omittingEmptySubsequences: true).dropFirst().first ?? "") else { return .nan }
        return kb / 1024
    }
}
