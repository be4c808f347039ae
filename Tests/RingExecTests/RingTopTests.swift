import Foundation
import Glibc
import RingInspect
import SystemPackage
import Testing

/// ring-top finds what waits in another process's ring: a server of ours stalled on a read nobody
/// answers, and fio's rings moving; it behaves like the other tools (JSON, table, exit statuses).
@Suite(.timeLimit(.minutes(3))) struct RingTopTests {
    /// A blocking loopback client connected to `port` (closed by the caller).
    static func connect(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard status == 0 else {
            let error = Errno(rawValue: errno)
            close(fd)
            throw error
        }
        return fd
    }

    /// Receive-like operations parked in `pid`'s rings, as the fdinfo poll lists name them.
    static func waitingReceives(_ pid: Int32) -> Int {
        RingActivity.between([], RingScanner.sample([pid])).flatMap(\.oldest).filter {
            $0.place == .waiting && ["RECV", "RECVMSG", "READ_MULTISHOT"].contains($0.operation ?? "")
        }.count
    }

    /// Polls `condition` until it holds or `timeout` passes: waiting for another process's state,
    /// which nothing here can be told about.
    static func eventually(_ timeout: Duration = .seconds(30), _ condition: () -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !condition() {
            if ContinuousClock.now > deadline { return false }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return true
    }

    @Test func ringTopFindsAServerStalledOnAReadNobodyAnswers() async throws {
        guard let tool = ToolBehaviourTests.tool("ring-top"), let server = try EchoServerProcess() else { return }
        defer { withExtendedLifetime(server) {} }  // the server runs until the test ends
        let before = Self.waitingReceives(server.pid)
        let client = try Self.connect(port: server.port)
        defer { close(client) }
        // The client sends nothing: the server's receive waits in its ring.
        #expect(await Self.eventually { Self.waitingReceives(server.pid) > before })

        let outcome = try await ToolBehaviourTests.run(tool, ["--json", "--interval", "0.2", String(server.pid)])
        #expect(outcome.status == 0, "\(outcome.error)")
        let document = try ToolBehaviourTests.parseJSON(outcome.output)
        let rings = try #require(document["rings"] as? [[String: Any]], "\(outcome.output)")
        #expect(!rings.isEmpty && rings.allSatisfy { $0["pid"] as? Int == Int(server.pid) })
        #expect(rings.allSatisfy { $0["command"] as? String == "ring-echo" })
        let stalled = rings.filter { ring in
            (ring["oldest"] as? [[String: Any]] ?? []).contains {
                $0["place"] as? String == "waiting"
                    && ["RECV", "RECVMSG", "READ_MULTISHOT"].contains($0["operation"] as? String ?? "")
            }
        }
        #expect(stalled.count == 1, "\(outcome.output)")
        if let ring = stalled.first {
            // Idle and drained: nothing queued in the ring itself, nothing moving.
            #expect(ring["backlog"] as? Int == 0 && ring["pendingSubmissions"] as? Int == 0)
            #expect(ring["submissionsPerSecond"] as? Double == 0 && ring["completionsPerSecond"] as? Double == 0)
            #expect((ring["waiting"] as? Int ?? 0) >= 1)
            #expect(ring["sqPollThread"] is NSNull && ring["overflow"] as? Int == 0)
        }
    }

    /// A process of ours that serves `InspectionService` also tells ring-top what its executor
    /// has in flight: the stalled receive, with its descriptor and age, under the ring it waits
    /// in; a process that does not serve it gets nulls.
    @Test func ringTopListsTheInFlightOperationsOfAnExecutorThatOptedIn() async throws {
        guard let tool = ToolBehaviourTests.tool("ring-top"), let server = try EchoServerProcess(inspect: true),
            let plain = try EchoServerProcess()
        else { return }
        defer { withExtendedLifetime((server, plain)) {} }
        let client = try Self.connect(port: server.port)
        defer { close(client) }
        #expect(await Self.eventually { Self.waitingReceives(server.pid) >= 1 })

        let outcome = try await ToolBehaviourTests.run(
            tool, ["--json", "--interval", "0.2", String(server.pid), String(plain.pid)])
        #expect(outcome.status == 0, "\(outcome.error)")
        let document = try ToolBehaviourTests.parseJSON(outcome.output)
        let rings = try #require(document["rings"] as? [[String: Any]], "\(outcome.output)")
        let served = rings.filter { $0["pid"] as? Int == Int(server.pid) && !($0["inFlight"] is NSNull) }
        #expect(served.count == 1, "one ring of the opted-in server has an executor's list: \(outcome.output)")
        let operations = served.first?["inFlight"] as? [[String: Any]] ?? []
        let receives = operations.filter {
            $0["operation"] as? String == "recv" && $0["state"] as? String == "submitted"
        }
        #expect(receives.count == 1, "\(outcome.output)")
        #expect((receives.first?["ageSeconds"] as? Double ?? -1) >= 0)
        // ring-echo names each connection's task after its descriptor.
        let task = receives.first?["task"] as? String
        #expect(task == (receives.first?["fd"] as? Int).map { "connection \($0)" }, "\(outcome.output)")
        #expect((served.first?["counters"] as? [String: Any])?["submitted"] as? Int ?? 0 >= 1)
        let others = rings.filter { $0["pid"] as? Int == Int(plain.pid) }
        #expect(!others.isEmpty && others.allSatisfy { $0["inFlight"] is NSNull && $0["counters"] is NSNull })

        // The table shows it too.
        let table = try await ToolBehaviourTests.run(tool, ["--interval", "0.2", "--count", "1", String(server.pid)])
        #expect(table.output.contains("in flight recv fd"), "\(table.output)")
        #expect(table.output.contains("task \"connection "), "\(table.output)")
    }

    @Test func ringTopShowsFioMovingThroughItsRing() async throws {
        guard let tool = ToolBehaviourTests.tool("ring-top") else { return }
        guard let fio = Self.onPath("fio") else {
            skip(.fio, "fio is not installed (apt-get install fio)")
            return
        }
        let file = try TemporaryFile(contents: pattern(count: 4 << 20))
        defer { file.remove() }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: fio)
        // --thread: the job's ring lives in the process started here, not in a forked child.
        process.arguments = [
            "--name=ring-top", "--thread", "--ioengine=io_uring", "--filename=\(file.path)", "--rw=randread",
            "--bs=4k", "--iodepth=8", "--time_based", "--runtime=60", "--output=/dev/null",
        ]
        process.standardOutput = FileHandle.nullDevice
        process.detachFromTheTestsStandardStreams()
        try process.run()
        defer {
            // SIGKILL: fio took its whole --runtime to honour a SIGTERM sent from here.
            kill(process.processIdentifier, SIGKILL)
            process.waitUntilExit()
        }
        let pid = process.processIdentifier
        let found = await Self.eventually { !RingScanner.ringDescriptors(of: pid).isEmpty || !process.isRunning }
        guard found, process.isRunning else {
            skip(.fio, "fio's io_uring engine did not start here (status \(process.terminationStatus))")
            return
        }
        // fio sets its ring up before its job starts reading, and on a loaded machine the job
        // may not run during one 0.3 s sample (CI once saw both rates at 0): sample until the
        // ring moves, for as long as the tests' polling waits wait.
        let deadline = ContinuousClock.now + waitLimit
        var samples = 0
        while true {
            samples += 1
            let outcome = try await ToolBehaviourTests.run(tool, ["--json", "--interval", "0.3", String(pid)])
            #expect(outcome.status == 0, "\(outcome.error)")
            let document = try ToolBehaviourTests.parseJSON(outcome.output)
            let rings = try #require(document["rings"] as? [[String: Any]], "\(outcome.output)")
            let ring = try #require(rings.first, "\(outcome.output)")
            #expect(ring["sqEntries"] as? Int == 8, "fio sizes its ring by --iodepth: \(outcome.output)")
            let completions = ring["completionsPerSecond"] as? Double ?? 0
            let submissions = ring["submissionsPerSecond"] as? Double ?? 0
            if completions > 0 && submissions > 0 { break }
            guard ContinuousClock.now < deadline, process.isRunning, !Task.isCancelled else {
                Issue.record("ring-top saw fio's ring stand still in \(samples) samples: \(outcome.output)")
                return
            }
        }
        if samples > 1 { print("RingTopTests: fio's ring moved in sample \(samples)") }
    }

    @Test func ringTopPrintsPlainTablesWhenNotOnATerminal() async throws {
        guard let tool = ToolBehaviourTests.tool("ring-top"), let server = try EchoServerProcess() else { return }
        defer { withExtendedLifetime(server) {} }  // the server runs until the test ends
        let outcome = try await ToolBehaviourTests.run(tool, ["--count", "2", "--interval", "0.1", String(server.pid)])
        #expect(outcome.status == 0, "\(outcome.error)")
        #expect(!outcome.output.contains("\u{1B}"), "no terminal escapes in a pipe")
        let headers = outcome.output.split(separator: "\n").filter { $0.hasPrefix("PID") }
        #expect(headers.count == 2, "\(outcome.output)")
        #expect(outcome.output.contains("ring-echo"))
    }

    @Test func ringTopExitStatuses() async throws {
        guard let tool = ToolBehaviourTests.tool("ring-top") else { return }
        let usage = try await ToolBehaviourTests.run(tool, ["--interval", "0"])
        #expect(usage.status == 2 && usage.error.contains("--interval"))
        let jsonCount = try await ToolBehaviourTests.run(tool, ["--json", "--count", "3"])
        #expect(jsonCount.status == 2)
        // PIDs above pid_max (at most 2^22) never exist.
        let missing = try await ToolBehaviourTests.run(tool, ["--interval", "0.01", "99999999"])
        #expect(missing.status == 1 && missing.error.hasPrefix("ring-top: no process 99999999"))
        let version = try await ToolBehaviourTests.run(tool, ["--version"])
        #expect(version.status == 0 && !version.output.isEmpty)
    }

    /// The path of `name` in a directory of PATH, if it is there.
    static func onPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }
}
