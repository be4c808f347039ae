import Foundation
import Glibc
import RingExec
import RingToolSupport
import SystemPackage
import Testing

/// The command-line tools behave like Unix tools: messages on standard error naming what failed,
/// exit status 2 for usage errors and 1 for failures, `--version`, and JSON that a parser reads
/// back whatever the paths and messages contain.
@Suite(.timeLimit(.minutes(3))) struct ToolBehaviourTests {
    struct Outcome {
        var status: Int32
        var output: String
        var error: String
    }

    /// A tool from the build folder, or from `RING_TOOL_DIR` (to run these tests against other
    /// builds of the tools).
    static func tool(_ name: String, sourceLocation: SourceLocation = #_sourceLocation) -> String? {
        if let dir = ProcessInfo.processInfo.environment["RING_TOOL_DIR"] { return dir + "/" + name }
        return ExampleTests.binary(name, sourceLocation: sourceLocation)
    }

    /// Runs `path` with standard output and standard error kept apart (standard error goes to a
    /// file, which is not a terminal).
    static func run(_ path: String, _ arguments: [String], environment: [String: String] = [:]) async throws -> Outcome
    {
        let errorPath = FileManager.default.temporaryDirectory.appendingPathComponent(
            "tool-stderr-\(UUID().uuidString)"
        ).path
        _ = FileManager.default.createFile(atPath: errorPath, contents: nil)
        defer { unlink(errorPath) }
        let errorHandle = try #require(FileHandle(forWritingAtPath: errorPath))
        let process = Process()
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        process.environment = ProcessInfo.processInfo.environment.merging(environment) { $1 }
        let output = Pipe()
        process.standardOutput = output
        process.standardError = errorHandle
        try process.run()
        let (status, text) = await waitOffThePool(process, output: output)
        try errorHandle.close()
        // Read with plain system calls: LeakSanitizer reports the buffer of swift-corelibs'
        // `FileManager.contents(atPath:)` (readBytesFromFile) as leaked in CI's ASan step.
        let error = String(decoding: try Self.readWholeFile(errorPath), as: UTF8.self)
        return Outcome(status: status, output: text, error: error)
    }

    /// The bytes of the file at `path`.
    static func readWholeFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw Errno(rawValue: errno) }
            if n == 0 { return bytes }
            bytes += chunk[..<n]
        }
    }

    /// A directory whose name has a double quote, a backslash, a tab and non-ASCII letters.
    static func hostileDirectory() throws -> String {
        let path =
            FileManager.default.temporaryDirectory.path
            + "/ring \"tools\"\t\\ é文 \(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    static func parseJSON(_ text: String, sourceLocation: SourceLocation = #_sourceLocation) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8))
        return try #require(object as? [String: Any], "not a JSON object: \(text)", sourceLocation: sourceLocation)
    }

    // MARK: every tool

    @Test(arguments: ["ring-probe", "ring-bench", "ring-cp", "ring-echo", "ring-soak"])
    func versionPrintsTheRelease(tool name: String) async throws {
        guard let tool = Self.tool(name) else { return }
        let outcome = try await Self.run(tool, ["--version"])
        #expect(outcome.status == 0, "\(outcome.error)")
        #expect(outcome.output == SwiftRing.version + "\n")
        #expect(outcome.error.isEmpty)
    }

    @Test(arguments: ["ring-probe", "ring-bench", "ring-cp", "ring-soak"])
    func unknownOptionIsAUsageErrorOnStandardError(tool name: String) async throws {
        guard let tool = Self.tool(name) else { return }
        let outcome = try await Self.run(tool, ["--no-such-option"])
        #expect(outcome.status == 2, "\(outcome)")
        #expect(outcome.output.isEmpty, "\(outcome.output)")
        #expect(!outcome.error.isEmpty)
    }

    // MARK: ring-cp

    @Test func ringCopyNamesTheMissingSourceOnStandardError() async throws {
        guard let tool = Self.tool("ring-cp") else { return }
        let outcome = try await Self.run(tool, ["/nonexistent/ring-cp-source", "/tmp/ring-cp-never-written"])
        #expect(outcome.status == 1)
        #expect(outcome.output.isEmpty, "\(outcome.output)")
        #expect(
            outcome.error == "ring-cp: /nonexistent/ring-cp-source: No such file or directory\n", "\(outcome.error)")
    }

    @Test func ringCopyWithoutTwoPathsIsAUsageError() async throws {
        guard let tool = Self.tool("ring-cp") else { return }
        let outcome = try await Self.run(tool, ["only-one"])
        #expect(outcome.status == 2)
        #expect(outcome.output.isEmpty)
        #expect(outcome.error.hasPrefix("usage: ring-cp SRC DST"), "\(outcome.error)")
    }

    /// A directory as the source: lseek to its end returns a huge offset, which overflowed the
    /// chunk arithmetic (a trap). It is an error naming the path.
    @Test func ringCopyOfADirectoryFailsNamingIt() async throws {
        guard let tool = Self.tool("ring-cp") else { return }
        let directory = try Self.hostileDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let outcome = try await Self.run(tool, [directory, directory + "/copy"])
        #expect(outcome.status == 1, "\(outcome.error)")
        #expect(outcome.error == "ring-cp: \(directory): Is a directory\n", "\(outcome.error)")
    }

    @Test func ringCopyKeepsHostilePathsVerbatim() async throws {
        guard let tool = Self.tool("ring-cp") else { return }
        let directory = try Self.hostileDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let source = directory + "/sôurce \"1\""
        _ = FileManager.default.createFile(atPath: source, contents: Data("hello\t\"ring\"\n".utf8))
        let outcome = try await Self.run(tool, [source, directory + "/copy"])
        #expect(outcome.status == 0, "\(outcome.error)")
        #expect(try Self.readWholeFile(directory + "/copy") == Array("hello\t\"ring\"\n".utf8))
        let missing = try await Self.run(tool, [directory + "/missing ü", directory + "/copy"])
        #expect(missing.error == "ring-cp: \(directory)/missing ü: No such file or directory\n", "\(missing.error)")
    }

    // MARK: ring-echo

    @Test func ringEchoRefusesAPortThatIsNotOne() async throws {
        guard let tool = Self.tool("ring-echo") else { return }
        for bad in ["http", "65536", "-1"] {
            let outcome = try await Self.run(tool, [bad])
            #expect(outcome.status == 2, "\(bad): \(outcome)")
            #expect(outcome.output.isEmpty)
            #expect(outcome.error.contains("'\(bad)' is not a port"), "\(outcome.error)")
        }
    }

    // MARK: ring-probe

    /// A message with a quote, a tab and non-ASCII (here the engine name an operator set) stays
    /// valid JSON, and the keys CI and the kernel matrix read are there.
    @Test func probeJSONSurvivesHostileMessages() async throws {
        guard let tool = Self.tool("ring-probe") else { return }
        let hostile = "io\"uring\t\\ ü文"
        let outcome = try await Self.run(tool, ["--json"], environment: ["SWIFT_RING_ENGINE": hostile])
        #expect(outcome.status == 0, "\(outcome.error)")
        let document = try Self.parseJSON(outcome.output)
        #expect(document["schema"] as? Int == 1)
        for key in [
            "kernel_release", "io_uring", "max_entries", "registered_ring_fd", "last_opcode", "features", "opcodes",
            "setup_flags", "register_opcodes", "linux_aio",
        ] {
            #expect(document.keys.contains(key), "missing \(key)")
        }
        let aio = try #require(document["linux_aio"] as? [String: Any])
        let automatic = try #require(aio["automatic"] as? [String: Any])
        #expect(automatic["engine"] is NSNull)
        #expect((automatic["error"] as? String)?.contains(hostile) == true, "\(automatic)")
        #expect(
            (aio["engines"] as? [[String: Any]])?.map { $0["name"] as? String } == ["io_uring", "libaio", "posix-aio"])
        let features = try #require(document["features"] as? [String: Bool])
        #expect(features["IORING_FEAT_SINGLE_MMAP"] != nil)
    }

    @Test func probeRequireMessagesGoToStandardError() async throws {
        guard let tool = Self.tool("ring-probe") else { return }
        let unknown = try await Self.run(tool, ["--require", "NO_SUCH_THING"])
        #expect(unknown.status == 2)
        #expect(unknown.output.isEmpty)
        #expect(unknown.error.contains("unknown capability: NO_SUCH_THING"), "\(unknown.error)")
    }

    // MARK: ring-bench

    @Test(arguments: [
        (["--qd", "1,x,32"], "--qd"), (["--qd", "1,,32"], "--qd"), (["--qd", "0"], "--qd"),
        (["--size", "0"], "--size"),
        (["--size", "-5"], "--size"), (["--runtime", "0"], "--runtime"), (["--runtime", "nan"], "--runtime"),
        (["--runtime", "inf"], "--runtime"), (["--threads", "0"], "--threads"), (["--batch", "0"], "--batch"),
        (["--submit-batch", "0"], "--submit-batch"), (["--ops", "0"], "--ops"), (["--bs", "0"], "--bs"),
        (["--bs", "1000"], "--bs"), (["--repeat", "0"], "--repeat"), (["--rwmix-read", "101"], "--rwmix-read"),
        (["--json", "--markdown"], "--markdown"), (["--engine", "posixaio"], "--engine"),
        (["--async-batch", "0"], "--async-batch"), (["--async-batch", "8", "--workload", "nop"], "--async-batch"),
        (["--async-batch", "8", "--qd", "8,12"], "--async-batch"),
        (["--pinned-actor", "--mode", "raw"], "--pinned-actor"),
    ])
    func benchRejectsNonsenseBeforeRunning(arguments: [String], option: String) async throws {
        guard let tool = Self.tool("ring-bench") else { return }
        let outcome = try await Self.run(tool, arguments + ["--no-compare-fio"])
        #expect(outcome.status == 2, "\(arguments): \(outcome)")
        #expect(outcome.output.isEmpty, "\(arguments): \(outcome.output)")
        #expect(outcome.error.contains(option), "\(arguments): \(outcome.error)")
    }

    @Test func benchHelpShowsNoLimitForOps() async throws {
        guard let tool = Self.tool("ring-bench") else { return }
        let outcome = try await Self.run(tool, ["--help"])
        #expect(!outcome.output.contains("9223372036854775807"), "\(outcome.output)")
        #expect(outcome.output.contains("posix-aio"))
    }

    @Test func benchFileSmallerThanOneBlockIsAnErrorNamingIt() async throws {
        guard let tool = Self.tool("ring-bench") else { return }
        let directory = try Self.hostileDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/tiny"
        _ = FileManager.default.createFile(atPath: file, contents: Data(repeating: 7, count: 100))
        let outcome = try await Self.run(
            tool,
            [
                "--file", file, "--no-direct", "--engine", "io_uring", "--mode", "raw", "--qd", "1", "--runtime",
                "0.05",
                "--no-compare-fio",
            ])
        #expect(outcome.status == 1, "\(outcome)")
        #expect(outcome.error.contains("\(file): 100 bytes, smaller than one block"), "\(outcome.error)")
        let missing = try await Self.run(tool, ["--file", directory + "/none", "--no-compare-fio", "--qd", "1"])
        #expect(missing.status == 1)
        #expect(missing.error == "ring-bench: \(directory)/none: No such file or directory\n", "\(missing.error)")
    }

    /// `posix` and `posix-aio` name the same engine, and rows carry the one name RingExec uses.
    @Test func benchEngineNamesMatchRingExec() async throws {
        guard let tool = Self.tool("ring-bench") else { return }
        for name in ["posix-aio", "posix"] {
            let outcome = try await Self.run(
                tool,
                ["--workload", "nop", "--engine", name, "--mode", "async", "--qd", "1", "--runtime", "0.05", "--json"])
            if outcome.status != 0 && outcome.output.contains("unavailable") {
                skip(.posixAIO, "posix-aio: \(outcome.output)")
                return
            }
            #expect(outcome.status == 0, "\(outcome)")
            let rows = try #require(try Self.parseJSON(outcome.output)["rows"] as? [[String: Any]])
            #expect(rows.map { $0["engine"] as? String } == ["posix-aio"])
        }
    }

    /// The JSON document parses back with a hostile file path in it, and records every setting
    /// that shaped the numbers. Progress lines stay off standard error when it is not a terminal.
    @Test func benchJSONRecordsSettingsAndSurvivesHostilePaths() async throws {
        guard let tool = Self.tool("ring-bench") else { return }
        let directory = try Self.hostileDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let file = directory + "/dätä \"1\"\t.bin"
        _ = FileManager.default.createFile(atPath: file, contents: Data(repeating: 1, count: 1 << 20))
        let arguments = [
            "--file", file, "--no-direct", "--workload", "randread", "--engine", "io_uring", "--mode", "both", "--qd",
            "2",
            "--runtime", "0.05", "--threads", "2", "--submit-batch", "4", "--repeat", "2", "--fixed-files",
            "--fixed-buffers",
            "--batch", "2", "--async-batch", "2", "--pinned-actor", "--no-compare-fio", "--json",
        ]
        let outcome = try await Self.run(tool, arguments)
        #expect(outcome.status == 0, "\(outcome)")
        #expect(outcome.error.isEmpty, "progress or notices on a non-terminal: \(outcome.error.debugDescription)")
        let document = try Self.parseJSON(outcome.output)
        #expect(document["schema"] as? Int == 1)
        #expect(document["tool_version"] as? String == SwiftRing.version)
        #expect(document["file"] as? String == file)
        #expect((document["command"] as? String)?.contains(file) == true)
        #expect(document["threads"] as? Int == 2)
        #expect(document["submit_batch"] as? Int == 4)
        #expect(document["repeat"] as? Int == 2)
        #expect(document["batch"] as? Int == 2)
        #expect(document["async_batch"] as? Int == 2)
        #expect(document["pinned_actor"] as? Bool == true)
        #expect(document["sqpoll"] as? Bool == false)
        #expect(document["fixed_files"] as? Bool == true)
        #expect(document["fixed_buffers"] as? Bool == true)
        #expect(document["direct"] as? Bool == false)
        #expect(document["block_size"] as? Int == 4096)
        #expect(document["ops_limit"] is NSNull)
        let rows = try #require(document["rows"] as? [[String: Any]])
        #expect(rows.count == 2)
        for row in rows {
            #expect(row["engine"] as? String == "io_uring")
            #expect((row["ops"] as? Int ?? 0) > 0, "\(row)")
        }
    }

    // MARK: the shared JSON rules

    @Test func numbersThatAreNotFiniteBecomeNull() throws {
        #expect(jsonNumber(.infinity) == nil)
        #expect(jsonNumber(-.infinity) == nil)
        #expect(jsonNumber(.nan) == nil)
        #expect(jsonNumber(nil) == nil)
        #expect(jsonNumber(1.23456) == 1.235)
        struct Sample: Encodable {
            var rate: Double?
            var message: String
        }
        let message = "quote \" tab \t newline \n nul \u{0} é文 🚀"
        let text = try jsonText(Sample(rate: jsonNumber(.infinity), message: message), pretty: false)
        let back = try Self.parseJSON(text)
        #expect(back["message"] as? String == message)
        #expect(back["rate"] == nil)
    }
}

/// The version the tools print is the one CHANGELOG.md describes first.
@Suite struct ReleaseVersionTests {
    @Test func changelogStartsWithThisVersion() throws {
        let root = String(#filePath).components(separatedBy: "/Tests/")[0]
        let changelog = try String(contentsOfFile: root + "/CHANGELOG.md", encoding: .utf8)
        let heading = try #require(changelog.split(separator: "\n").first { $0.hasPrefix("## ") })
        #expect(heading.hasPrefix("## \(SwiftRing.version) "), "\(heading)")
    }
}

/// The tests' own child-process helper: a child that never exits is killed at the limit and the
/// test sees a failure saying so, instead of the whole run waiting for the step's timeout.
@Suite(.timeLimit(.minutes(1))) struct ChildProcessLimitTests {
    @Test func aChildThatDoesNotExitIsKilledAtTheLimit() async throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sleep")
        process.arguments = ["600"]
        let output = Pipe()
        process.standardOutput = output
        process.detachFromTheTestsStandardStreams()
        try process.run()
        let (status, text) = await waitOffThePool(process, output: output, limit: .milliseconds(300))
        #expect(process.terminationReason == .uncaughtSignal && status == SIGKILL, "\(status)")
        #expect(text.contains("killed by the test"), "\(text)")
    }
}
