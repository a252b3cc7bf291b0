/// A shape mismatch at a public entry point, naming the op and the shapes involved.
public struct ShapeError: Error, CustomStringConvertible, Equatable {
    public let op: String
    public let message: String

    public init(_ op: String, _ message: String) {
        self.op = op
        self.message = message
    }

    public var description: String { "\(op): \(message)" }
}

/// Throws a `ShapeError` for `op` unless `condition` holds.
@inline(__always)
func require(_ condition: Bool, _ op: String, _ message: @autoclosure () -> String) throws {
    if !condition { throw ShapeError(op, message()) }
}

/// Runs a shape validation; a failure stops the program with the op's message.
/// Ops call their throwing `validate…` functions through this, tests call them directly.
@inline(__always)
func validated<T>(_ body: () throws -> T) -> T {
    do { return try body() } catch { fatalError("\(error)") }
}
