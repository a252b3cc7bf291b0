/// One row of a filter-count trajectory: the widths of every group and the net's P.
public struct TrajectoryRow: Codable, Equatable, Sendable {
    public var widths: [Int]
    public var params: Int

    public init(widths: [Int], params: Int) {
        self.widths = widths
        self.params = params
    }
}

