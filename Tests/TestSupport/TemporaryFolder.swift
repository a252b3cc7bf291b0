import Foundation
import XCTest

extension XCTestCase {
    /// A new folder `ns-<what>-<UUID>` in the system temp folder, removed with everything in it
    /// when the current test ends. `create: false` only reserves the name, for code under test
    /// that must create the folder itself.
    public func temporaryFolder(_ what: String, create: Bool = true) throws -> URL {
        let url = FileManager.default.temporaryDirectory.appendingPathComponent("ns-\(what)-\(UUID().uuidString)")
        if create { try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true) }
        addTeardownBlock { try? FileManager.default.removeItem(at: url) }
        return url
    }
}
