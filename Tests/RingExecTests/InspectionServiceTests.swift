import Foundation
import Glibc
import Ring
import RingInspect
import SystemPackage
import Testing

@testable import RingExec

/// The opt-in inspection socket (issue 19): another process — here a plain blocking client on a
/// thread of its own — reads the executors' counters and in-flight lists. One service per
/// process, so the suite runs its tests one at a time (they take the same socket name).
@Suite(.serialized, .timeLimit(.minutes(1))) struct InspectionServiceTests {
    /// Connects to the abstract socket of this process and reads to the end; the errno when the
    /// connection is refused.
    static func query() async -> Result<String, Errno> {
        // The project's pthread lock, which ThreadSanitizer sees (it does not see Mutex on Linux).
        final class Box: @unchecked Sendable {
            let lock = Lock()
            var value: Result<String, Errno> = .failure(.invalidArgument)
        }
        let result = Box()
        await onOwnThread {
            let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            defer { close(fd) }
            var (address, length) = InspectionService.abstractAddress(InspectionService.socketName())
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
            }
            guard connected == 0 else {
                let error = Errno(rawValue: errno)
                result.lock.withLock { result.value = .failure(error) }
                return
            }
            var bytes: [UInt8] = []
            var chunk = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = read(fd, &chunk, chunk.count)
                if count <= 0 { break }
                bytes += chunk[0..<count]
            }
            result.lock.withLock { result.value = .success(String(decoding: bytes, as: UTF8.self)) }
        }
        return result.lock.withLock { result.value }
    }

    @Test func anotherProcessReadsTheStalledReceiveAndTheCountersUntilStopped() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        #expect(await Self.query() == .failure(.connectionRefused), "nothing listens before start")
        let service = try InspectionService.start(on: executor)
        #expect(throws: Errno.addressInUse, "one service per process") { try InspectionService.start(on: executor) }

        let (a, b) = try socketPair()
        defer {
            try? a.close()
            try? b.close()
        }
        let stalled = Task { try await executor.receive(b, upTo: 100) }
        // The service's own accept and the receive, both in the kernel.
        #expect(await waitUntil { executor.operationsInFlight >= 2 })
        let text = try await Self.query().get()
        let document = try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
        #expect(document["pid"] as? Int == Int(getpid()))
        let executors = try #require(document["executors"] as? [[String: Any]])
        let ours = try #require(executors.first { $0["id"] as? Int == Int(executor.wakeID) }, "\(text)")
        #expect(ours["engine"] as? String == "io_uring")
        let counters = try #require(ours["counters"] as? [String: Int])
        #expect(counters["submitted"] ?? 0 >= 1)
        let inFlight = try #require(ours["inFlight"] as? [[String: Any]])
        let receive = try #require(inFlight.first { $0["fd"] as? Int == Int(b.rawValue) }, "\(text)")
        #expect(receive["operation"] as? String == "recv" && receive["length"] as? Int == 100)
        #expect(
            receive["state"] as? String == "submitted" && (receive["ageSeconds"] as? Double ?? -1) >= 0, "\(receive)")

        stalled.cancel()
        _ = try? await stalled.value

        // An executor whose loop is stuck in a long job is reported unresponsive, and does not
        // hold up the answer for the others.
        let stuck = try RingExecutor(entries: 8)
        defer { stuck.shutdownGracefully() }
        let release = Flag()
        let entered = Flag()
        let blocker = Task(executorPreference: stuck) {
            entered.set()
            while !release.isSet { usleep(1000) }  // blocks the loop thread on purpose
        }
        #expect(await waitUntil { entered.isSet })
        let withStuck = try await Self.query().get()
        release.set()
        await blocker.value
        let stuckDocument = try #require(
            JSONSerialization.jsonObject(with: Data(withStuck.utf8)) as? [String: Any], "\(withStuck)")
        let listed = stuckDocument["executors"] as? [[String: Any]] ?? []
        #expect(listed.first { $0["id"] as? Int == Int(stuck.wakeID) }?["responsive"] as? Bool == false)
        #expect(listed.first { $0["id"] as? Int == Int(executor.wakeID) }?["responsive"] as? Bool == true)

        await service.stop()
        let afterStop = await Self.query()
        #expect(afterStop == .failure(.connectionRefused), "the name is gone after stop: \(afterStop)")
        // A second stop closes nothing: a descriptor opened since under the same number survives.
        let (c, d) = try socketPair()
        defer {
            try? c.close()
            try? d.close()
        }
        await service.stop()
        #expect(fcntl(c.rawValue, F_GETFD) >= 0 && fcntl(d.rawValue, F_GETFD) >= 0)
        // And free to be taken again.
        let again = try InspectionService.start(on: executor)
        await again.stop()
    }

    /// Regression: on an engine that cannot accept (the aio engines), or an executor that has
    /// shut down, the service took its name and never answered: clients waited in its backlog
    /// until their own timeouts, and once the backlog was full a blocking connect waited for
    /// good. Refused now, before the name is taken.
    @Test func anExecutorThatCannotAcceptIsRefused() async throws {
        guard let executor = try makeExecutor(.posixAIO) else { return }
        defer { executor.shutdownGracefully() }
        do {
            let service = try InspectionService.start(on: executor)
            await service.stop()
            Issue.record("started on an engine that cannot accept connections")
        } catch {
            #expect(error == .notSupported)
        }
        // Nor on an executor that has shut down.
        guard let finished = try makeExecutor(.ioURing) else { return }
        finished.shutdownGracefully()
        do {
            let service = try InspectionService.start(on: finished)
            await service.stop()
            Issue.record("started on an executor that has shut down")
        } catch {
            #expect(error == Errno(rawValue: ESHUTDOWN))
        }
    }

    /// Binds the abstract inspection name of process `pid` with `backlog`.
    static func bindName(of pid: Int32, backlog: Int32) throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Errno(rawValue: errno) }
        var (address, length) = InspectionService.abstractAddress(InspectionService.socketName(pid: pid))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard bound == 0, listen(fd, backlog) == 0 else {
            let error = Errno(rawValue: errno)
            close(fd)
            throw error
        }
        return fd
    }

    /// Answers `document` to every client of `listener`, on a thread of its own, until `stop`.
    static func serve(_ document: String, on listener: Int32, until stop: Flag) async {
        _ = fcntl(listener, F_SETFL, fcntl(listener, F_GETFL) | O_NONBLOCK)
        await onOwnThread {
            let bytes = Array(document.utf8)
            while !stop.isSet {
                var ready = pollfd(fd: listener, events: Int16(POLLIN), revents: 0)
                guard poll(&ready, 1, 20) > 0 else { continue }
                let client = accept(listener, nil, nil)
                guard client >= 0 else { continue }
                // The client may have gone already: no SIGPIPE for the test process.
                _ = bytes.withUnsafeBytes { send(client, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
                close(client)
            }
        }
    }

    /// Runs ring-top once with `arguments`; nil (after killing it) when it has not finished
    /// within `limit`.
    static func ringTop(_ tool: String, _ arguments: [String], limit: Duration) async throws -> String? {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: tool)
        process.arguments = arguments
        let output = Pipe()
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let finished = await RingTopTests.eventually(limit) { !process.isRunning }
        if !finished { process.terminate() }
        let (status, text) = await waitOffThePool(process, output: output)
        #expect(!finished || status == 0, "\(text)")
        return finished ? text : nil
    }

    /// The rings ring-top listed for `pid` in its JSON.
    static func rings(_ text: String, pid: Int32) throws -> [[String: Any]] {
        let document = try #require(JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any], "\(text)")
        let rings = try #require(document["rings"] as? [[String: Any]], "\(text)")
        return rings.filter { $0["pid"] as? Int == Int(pid) }
    }

    /// Regression: ring-top connected with a blocking connect, which for a Unix socket whose
    /// backlog is full (a process stopped, or whose serving loop is stuck in a long job) waits
    /// until the listener accepts: ring-top hung. It now gives up at once and shows nulls.
    @Test func ringTopDoesNotWaitForAProcessThatDoesNotAccept() async throws {
        guard let tool = ToolBehaviourTests.tool("ring-top"), let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        // This process has a ring (the executor's); its name is held by a listener nobody accepts
        // on, whose backlog is full.
        let listener = try Self.bindName(of: getpid(), backlog: 0)
        defer { close(listener) }
        var (address, length) = InspectionService.abstractAddress(InspectionService.socketName())
        var waiting: [Int32] = []
        defer { for fd in waiting { close(fd) } }
        while waiting.count < 8 {
            let fd = socket(
                AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue | SOCK_NONBLOCK.rawValue), 0)
            let connected = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
            }
            let error = errno
            waiting.append(fd)
            if connected != 0 {
                #expect(error == EAGAIN)
                break
            }
        }
        let text = try await Self.ringTop(tool, ["--json", "--interval", "0.1", String(getpid())], limit: .seconds(20))
        let output = try #require(text, "ring-top waits for a process that does not accept")
        let ours = try Self.rings(output, pid: getpid())
        #expect(!ours.isEmpty && ours.allSatisfy { $0["inFlight"] is NSNull }, "\(output)")
    }

    /// Regression: ring-top believed whoever held a process's inspection name. Abstract names
    /// are free for any process of the network namespace (another user's too) to take first;
    /// such a squatter could show a forged in-flight list, terminal escapes included, under
    /// the process's rings. ring-top now asks the kernel who listens (`SO_PEERCRED`) and
    /// believes only the process it asked about.
    @Test func ringTopBelievesOnlyTheProcessItAsks() async throws {
        guard let tool = ToolBehaviourTests.tool("ring-top"), let server = try EchoServerProcess() else { return }
        defer { withExtendedLifetime(server) {} }
        let pid = server.pid
        let ringFDs = RingActivity.between([], RingScanner.sample([pid])).map(\.fd)
        try #require(!ringFDs.isEmpty)
        let executors = ringFDs.map { fd in
            "{\"id\": \(fd), \"engine\": \"io_uring\", \"ringFD\": \(fd), \"counters\": {\"submitted\": 1},"
                + " \"inFlight\": [{\"operation\": \"forged\\u001b[2J\", \"fd\": 3, \"fixedFile\": false,"
                + " \"length\": 1, \"entries\": 1, \"stream\": false, \"state\": \"submitted\", \"ageSeconds\": 1}]}"
        }
        let forged = "{\"pid\": \(pid), \"executors\": [" + executors.joined(separator: ", ") + "]}\n"
        let listener = try Self.bindName(of: pid, backlog: 16)
        defer { close(listener) }
        let stop = Flag()
        let squatter = Task { await Self.serve(forged, on: listener, until: stop) }
        let text = try await Self.ringTop(tool, ["--json", "--interval", "0.1", String(pid)], limit: .seconds(20))
        let table = try await Self.ringTop(
            tool, ["--interval", "0.1", "--count", "1", String(pid)], limit: .seconds(20))
        stop.set()
        await squatter.value
        let output = try #require(text)
        let rings = try Self.rings(output, pid: pid)
        #expect(!rings.isEmpty && rings.allSatisfy { $0["inFlight"] is NSNull }, "\(output)")
        #expect(!(table ?? "").contains("forged"), "\(table ?? "")")
    }

    /// Regression: ring-top printed what an answer said as it was, so a process that serves the
    /// channel (when ring-top runs as root over every process: any user's) could send terminal
    /// escapes to the operator's terminal. Control characters are shown as `?` now.
    @Test func ringTopPrintsNoControlCharactersFromAnAnswer() async throws {
        guard let tool = ToolBehaviourTests.tool("ring-top"), let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let ringFD = try #require(executor.engineRingFD)  // not through the engine: the loop owns it
        let answer =
            "{\"pid\": \(getpid()), \"executors\": [{\"id\": 1, \"engine\": \"io_uring\", \"ringFD\": \(ringFD),"
            + " \"counters\": {}, \"inFlight\": [{\"operation\": \"recv\\u001b]0;owned\\u0007\", \"fd\": 3,"
            + " \"fixedFile\": false, \"length\": 1, \"entries\": 1, \"stream\": false,"
            + " \"state\": \"submitted\\u009b2J\", \"ageSeconds\": 1}]}]}\n"
        let listener = try Self.bindName(of: getpid(), backlog: 16)
        defer { close(listener) }
        let stop = Flag()
        let server = Task { await Self.serve(answer, on: listener, until: stop) }
        let table = try await Self.ringTop(
            tool, ["--interval", "0.1", "--count", "1", String(getpid())], limit: .seconds(20))
        stop.set()
        await server.value
        let output = try #require(table)
        #expect(output.contains("in flight recv?]0;owned? fd 3"), "\(output)")
        #expect(
            !output.unicodeScalars.contains { $0.properties.generalCategory == .control && $0 != "\n" }, "\(output)")
    }
}
