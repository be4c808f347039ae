import Foundation
import Testing

/// The skip machinery itself (Skips.swift): what RING_REQUIRE means, and that a required need is
/// never skipped quietly.
@Suite(.timeLimit(.minutes(1))) struct SkipTests {
    @Test func ringRequireParsesAllAndExclusions() {
        #expect(Need.parse("").needs.isEmpty)
        #expect(Need.parse("libaio, posix-aio").needs == [.libaio, .posixAIO])
        #expect(Need.parse("all,-sysctl").needs == Set(Need.allCases).subtracting([.sysctl]))
        #expect(Need.parse("all,-sysctl,-without-tsan").needs.contains(.libaio))
        #expect(Need.parse("libaio,bogus").unknown == ["bogus"])
    }

    /// A required need that is missing fails the test, naming the need, instead of skipping it.
    @Test func aRequiredSkipIsAFailure() {
        withKnownIssue {
            skip(.libaio, "libaio.so.1 is not installed", required: [.libaio])
        } matching: { issue in
            issue.description.contains("RING_REQUIRE requires libaio") && issue.description.contains("not installed")
        }
    }

    /// A typo in CI's RING_REQUIRE would otherwise require nothing.
    @Test func ringRequireNamesOnlyKnownNeeds() {
        let text = ProcessInfo.processInfo.environment["RING_REQUIRE"] ?? ""
        let unknown = Need.parse(text).unknown
        #expect(unknown.isEmpty, "RING_REQUIRE names unknown needs \(unknown); known: \(Need.allCases.map(\.rawValue))")
    }

    /// Both test targets carry the same Skips.swift (neither can import the other).
    @Test func bothCopiesOfSkipsAgree() throws {
        let here = URL(fileURLWithPath: #filePath)
        let other = here.deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent(
            "RingExecTests/Skips.swift")
        let mine = try String(
            contentsOf: here.deletingLastPathComponent().appendingPathComponent("Skips.swift"), encoding: .utf8)
        let theirs = try String(contentsOf: other, encoding: .utf8)
        #expect(mine == theirs, "Tests/RingTests/Skips.swift and Tests/RingExecTests/Skips.swift differ")
    }
}
