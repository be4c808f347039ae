import Foundation
import Glibc
import Testing

import Ring

/// Whether the dynamic loader finds libaio.so.1 (as the libaio engine looks for it).
let libaioInstalled: Bool = {
    guard let handle = dlopen("libaio.so.1", RTLD_NOW | RTLD_LOCAL) else { return false }
    dlclose(handle)
    return true
}()

/// io_uring refused the way containers refuse it: a seccomp filter in a child process.
@Suite struct FaultInjectionTests {
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

    static func runHelper(
        _ arguments: [String], environment: [String: String] = [:], sourceLocation: SourceLocation = #_sourceLocation
    ) throws -> String? {
        guard let path = helperPath else {
            skip(.helpers, "ring-fault-helper is not built next to the tests (run `swift build` first)", sourceLocation: sourceLocation)
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
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    @Test func seccompENOSYSIsNamed() throws {
        guard let out = try Self.runHelper(["io_uring_setup=ENOSYS"]) else { return }
        #expect(out.hasPrefix("unavailable errno=\(ENOSYS) "), "\(out)")
        #expect(out.contains("seccomp"), "\(out)")
    }

    @Test func seccompEPERMIsNamed() throws {
        guard let out = try Self.runHelper(["io_uring_setup=EPERM"]) else { return }
        #expect(out.hasPrefix("unavailable errno=\(EPERM) "), "\(out)")
        #expect(out.contains("seccomp") || out.contains("io_uring_disabled"), "\(out)")
    }

    @Test func withoutFilterIoUringWorks() throws {
        guard let out = try Self.runHelper([]) else { return }
        #expect(out == "available")
    }

    // Engine fallback (issue 5): the helper starts a RingExecutor with `.automatic`, does a
    // write and a read through it, and reports the engine and why others were passed over.

    @Test(arguments: ["ENOSYS", "EPERM"])
    func automaticFallsBackToLibaio(errno name: String) throws {
        guard let out = try Self.runHelper(["--engine", "io_uring_setup=\(name)"]) else { return }
        guard libaioInstalled else {
            // What can be checked without libaio still is; the fallback to libaio itself did not run.
            #expect(out.hasPrefix("engine=posix-aio io=ok"), "\(out)")
            skip(.libaio, "libaio.so.1 is not installed (apt-get install libaio1)")
            return
        }
        #expect(out.hasPrefix("engine=libaio io=ok"), "\(out)")
        #expect(out.contains("passed-over io_uring: io_uring setup failed"), "\(out)")
        #expect(out.contains("seccomp"), "\(out)")
    }

    @Test(arguments: ["ENOSYS", "EPERM"])
    func automaticFallsBackToPosixAIO(errno name: String) throws {
        guard let out = try Self.runHelper(["--engine", "io_uring_setup=\(name)", "io_setup=\(name)"]) else { return }
        #expect(out.hasPrefix("engine=posix-aio io=ok"), "\(out)")
        #expect(out.contains("passed-over io_uring:"), "\(out)")
        #expect(out.contains("passed-over libaio:"), "\(out)")
    }

    @Test func automaticPrefersIoUring() throws {
        guard let out = try Self.runHelper(["--engine"]) else { return }
        #expect(out == "engine=io_uring io=ok")
    }

    @Test func environmentOverridesAutomatic() throws {
        guard let out = try Self.runHelper(["--engine"], environment: ["SWIFT_RING_ENGINE": "posix-aio"]) else { return }
        #expect(out == "engine=posix-aio io=ok")
        guard let bad = try Self.runHelper(["--engine"], environment: ["SWIFT_RING_ENGINE": "bogus"]) else { return }
        #expect(bad.hasPrefix("error SWIFT_RING_ENGINE=bogus names no engine"), "\(bad)")
    }
}
