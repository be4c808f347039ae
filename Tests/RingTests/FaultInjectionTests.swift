import Foundation
import Glibc
import Ring
import Testing

/// Whether the dynamic loader finds libaio under either name the libaio engine tries
/// (`LibAIOLibrary.candidateNames`: `libaio.so.1`, or `libaio.so.1t64` on Debian 13 and Ubuntu 24.04).
let libaioInstalled: Bool = ["libaio.so.1", "libaio.so.1t64"].contains { name in
    guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else { return false }
    dlclose(handle)
    return true
}

/// io_uring refused the way containers refuse it: a seccomp filter in a child process.
@Suite(.timeLimit(.minutes(1))) struct FaultInjectionTests {
    /// The helper sits next to the test bundle in the build folder.
    static var helperPath: String? {
        var buffer = [CChar](repeating: 0, count: 4096)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard n > 0 else { return nil }
        let exe = String(decoding: buffer.prefix(n).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        var directory = (exe as NSString).deletingLastPathComponent
        // swift-testing may run from inside the .xctest bundle directory.
        for _ in 0..<3 {
            let candidate = directory + "/ring-fault-helper"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
            directory = (directory as NSString).deletingLastPathComponent
        }
        return nil
    }

    /// Runs the helper; nil (the test is then skipped) when it is not built. Its output is read
    /// and its exit awaited on a thread of its own, not on the cooperative pool (two threads
    /// here), which tests blocked on child processes would otherwise starve.
    static func runHelper(
        _ arguments: [String], environment: [String: String] = [:], sourceLocation: SourceLocation = #_sourceLocation
    ) async throws -> String? {
        guard let path = helperPath else {
            skip(
                .helpers, "ring-fault-helper is not built next to the tests (run `swift build` first)",
                sourceLocation: sourceLocation)
            return nil
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        env.removeValue(forKey: "SWIFT_RING_ENGINE")
        env.merge(environment) { $1 }
        process.environment = env
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        struct Child: @unchecked Sendable {  // used by one thread at a time: the waiter, then us
            let process: Process
            let pipe: Pipe
        }
        let child = Child(process: process, pipe: pipe)
        let data = await withCheckedContinuation { (continuation: CheckedContinuation<Data, Never>) in
            let waiter = Thread {
                let data = child.pipe.fileHandleForReading.readDataToEndOfFile()
                child.process.waitUntilExit()
                continuation.resume(returning: data)
            }
            waiter.start()
        }
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func seccompENOSYSIsNamed() async throws {
        guard let out = try await Self.runHelper(["io_uring_setup=ENOSYS"]) else { return }
        #expect(out.hasPrefix("unavailable errno=\(ENOSYS) "), "\(out)")
        #expect(out.contains("seccomp"), "\(out)")
    }

    @Test func seccompEPERMIsNamed() async throws {
        guard let out = try await Self.runHelper(["io_uring_setup=EPERM"]) else { return }
        #expect(out.hasPrefix("unavailable errno=\(EPERM) "), "\(out)")
        #expect(out.contains("seccomp") || out.contains("io_uring_disabled"), "\(out)")
    }

    @Test func withoutFilterIoUringWorks() async throws {
        guard let out = try await Self.runHelper([]) else { return }
        #expect(out == "available")
    }

    // Engine fallback (issue 5): the helper starts a RingExecutor with `.automatic`, does a
    // write and a read through it, and reports the engine and why others were passed over.

    @Test(arguments: ["ENOSYS", "EPERM"])
    func automaticFallsBackToLibaio(errno name: String) async throws {
        guard let out = try await Self.runHelper(["--engine", "io_uring_setup=\(name)"]) else { return }
        guard libaioInstalled else {
            // What can be checked without libaio still is; the fallback to libaio itself did not run.
            #expect(out.hasPrefix("engine=posix-aio io=ok"), "\(out)")
            skip(.libaio, "libaio is not installed (libaio1t64, or libaio1 before Debian 13 / Ubuntu 24.04)")
            return
        }
        #expect(out.hasPrefix("engine=libaio io=ok"), "\(out)")
        #expect(out.contains("passed-over io_uring: io_uring setup failed"), "\(out)")
        #expect(out.contains("seccomp"), "\(out)")
    }

    @Test(arguments: ["ENOSYS", "EPERM"])
    func automaticFallsBackToPosixAIO(errno name: String) async throws {
        guard let out = try await Self.runHelper(["--engine", "io_uring_setup=\(name)", "io_setup=\(name)"]) else {
            return
        }
        #expect(out.hasPrefix("engine=posix-aio io=ok"), "\(out)")
        #expect(out.contains("passed-over io_uring:"), "\(out)")
        #expect(out.contains("passed-over libaio:"), "\(out)")
    }

    @Test func automaticPrefersIoUring() async throws {
        guard let out = try await Self.runHelper(["--engine"]) else { return }
        #expect(out == "engine=io_uring io=ok")
    }

    @Test func environmentOverridesAutomatic() async throws {
        guard let out = try await Self.runHelper(["--engine"], environment: ["SWIFT_RING_ENGINE": "posix-aio"]) else {
            return
        }
        #expect(out == "engine=posix-aio io=ok")
        guard let bad = try await Self.runHelper(["--engine"], environment: ["SWIFT_RING_ENGINE": "bogus"]) else {
            return
        }
        #expect(bad.hasPrefix("error SWIFT_RING_ENGINE=bogus names no engine"), "\(bad)")
    }
}
