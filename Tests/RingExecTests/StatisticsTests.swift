import Foundation
import Glibc
import RingExec
import RingInspect
import SystemPackage
import Testing

/// An executor counts what it did (`statistics`) and lists what it is doing
/// (`inFlightOperations()`), from any thread; a server stalled on a read nobody answers is found
/// both through the library and through ring-top.
@Suite(.timeLimit(.minutes(2))) struct StatisticsTests {
    @Test func countersCountOutcomesLatenciesAndJobs() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        let pipe = try PipePair()
        defer { pipe.close() }
        let before = executor.statistics
        let onLoop = try await executor.run { () async throws -> RingExecutor.Statistics in
            for _ in 0..<10 { try await executor.nop() }
            // EBADF: a read on a descriptor that is not open.
            do {
                _ = try await executor.read(FileDescriptor(rawValue: 1 << 20), upTo: 8)
                Issue.record("a read of a closed descriptor succeeded")
            } catch let error as Errno {
                #expect(error == .badFileDescriptor)
            }
            // ECANCELED: a pipe read nobody writes to, cancelled once it is in the kernel.
            let reader = Task { try await executor.read(pipe.read, upTo: 8) }
            #expect(await waitForOperationsInFlight(executor, atLeast: 1))
            reader.cancel()
            _ = await reader.result
            return executor.statistics
        }
        // 12 operations, plus any Task.sleep timers of waitForOperationsInFlight's polling.
        #expect(onLoop.submitted - before.submitted >= 12)
        #expect(onLoop.completed - before.completed == onLoop.submitted - before.submitted)
        #expect(onLoop.failed[EBADF] == 1)
        #expect(onLoop.cancelled == 1)
        #expect(onLoop.jobsRun > before.jobsRun)
        #expect(onLoop.systemCalls > 0)
        #expect(onLoop.latency.total == onLoop.completed)
        #expect(onLoop.latency.quantile(1) != nil)

        // Other threads read the copy the loop published before it went to sleep.
        let published = await waitForValue { executor.statistics.completed >= onLoop.completed }
        #expect(published)
        executor.shutdownGracefully()
        let final = executor.statistics
        #expect(final.submitted >= onLoop.submitted && final.failed[EBADF] == 1 && final.cancelled == 1)
    }

    @Test func aFullSubmissionQueueIsCountedAsAStall() async throws {
        guard let executor = try makeExecutor(.ioURing, entries: 4) else { return }
        defer { executor.shutdownGracefully() }
        try await executor.run {
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<64 { group.addTask { try await executor.nop() } }
                try await group.waitForAll()
            }
        }
        let statistics = await executor.run { executor.statistics }
        #expect(statistics.submitted >= 64)
        #expect(statistics.submissionQueueFullStalls > 0)
    }

    @Test func aSubmissionFromAnotherThreadWakesTheLoopThroughItsEventfd() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        // The loop sleeps with nothing to do; this task's submission comes from the global pool.
        #expect(await waitForValue { executor.operationsInFlight == 0 })
        let before = executor.statistics.eventfdWakeups
        var woken = false
        for _ in 0..<20 where !woken {
            try await executor.nop()
            woken = executor.statistics.eventfdWakeups > before
        }
        #expect(woken)
    }

    /// The issue's "done" test: a server's receive that no client answers is listed with its
    /// descriptor, byte count, age and state, and ring-top shows it waiting in the same ring.
    @Test func aServerStalledOnAReadIsFoundByTheSnapshotAndByRingTop() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let listener = try await executor.socket()
        defer { try? listener.close() }
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        let port = boundPort(listener)
        let client = try await executor.socket()
        defer { try? client.close() }
        try await executor.connect(client, to: .loopback(port: port))
        let connection = try await executor.accept(listener)
        defer { try? connection.close() }

        // The stalled server: a receive of up to 100 bytes the client never sends.
        let server = Task { try await executor.receive(connection, upTo: 100) }
        #expect(await waitForOperationsInFlight(executor, atLeast: 1))
        // From a thread that is not the loop's.
        let list = Self.blockingSnapshot(executor)
        let stalled = list.filter { $0.operation == "recv" && $0.fd == connection.rawValue }
        #expect(stalled.count == 1, "\(list)")
        if let entry = stalled.first {
            #expect(entry.bytes == 100 && entry.state == .submitted && entry.entries == 1 && !entry.multishot)
            #expect(entry.age.map { $0 >= .zero } == true)
        }
        // The async form, from a task, agrees.
        let again = await executor.inFlightOperations()
        #expect(again.contains { $0.operation == "recv" && $0.fd == connection.rawValue })

        // ring-top, from outside: this executor's ring has a receive waiting in the kernel.
        let ringFD = try await executor.run { try executor.withRing { $0.fd.rawValue } }
        if let tool = ToolBehaviourTests.tool("ring-top") {
            let outcome = try await ToolBehaviourTests.run(tool, ["--json", "--interval", "0.1", String(getpid())])
            #expect(outcome.status == 0, "\(outcome.error)")
            let document = try ToolBehaviourTests.parseJSON(outcome.output)
            let rings = try #require(document["rings"] as? [[String: Any]])
            // ring-top shows a ring once, under its lowest descriptor: find ours by inode.
            let inode = RingFdinfo.parse(try RingInspectTests.ownFdinfo(ringFD)).inode
            let ours = rings.first { ring in
                guard let fd = ring["fd"] as? Int else { return false }
                return (try? RingInspectTests.ownFdinfo(Int32(fd))).map { RingFdinfo.parse($0).inode } == inode
            }
            let waiting = (ours?["oldest"] as? [[String: Any]] ?? []).filter {
                $0["place"] as? String == "waiting" && $0["operation"] as? String == "RECV"
            }
            #expect(waiting.count == 1, "\(outcome.output)")
        }

        // Cancelling the stalled read ends it; the list empties.
        server.cancel()
        _ = await server.result
        #expect(await waitForValue { await executor.inFlightOperations().isEmpty })
        let cancelled = await executor.run { executor.statistics.cancelled }
        #expect(cancelled >= 1)
    }

    @Test func queuedAndCancelRequestedStatesAndAnEmptyListAfterShutdown() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        let pipe = try PipePair()
        defer { pipe.close() }
        let states = try await executor.run { () async throws -> [RingExecutor.InFlightOperation] in
            let reader = Task { try await executor.read(pipe.read, upTo: 16) }
            #expect(await waitForOperationsInFlight(executor, atLeast: 1))
            let submitted = await executor.inFlightOperations()
            reader.cancel()
            _ = await reader.result
            return submitted
        }
        #expect(states.map(\.state) == [.submitted] && states.first?.operation == "read")
        #expect(states.first?.fd == pipe.read.rawValue && states.first?.bytes == 16)
        executor.shutdownGracefully()
        #expect(Self.blockingSnapshot(executor).isEmpty)
        #expect(await executor.inFlightOperations().isEmpty)
    }

    /// The blocking form of `inFlightOperations()` (an async context picks the async one).
    static func blockingSnapshot(_ executor: RingExecutor) -> [RingExecutor.InFlightOperation] {
        executor.inFlightOperations()
    }

    /// Polls `condition` (state of another thread nothing here can be told about) until it holds
    /// or `timeout` passes.
    func waitForValue(_ timeout: Duration = .seconds(30), _ condition: () async -> Bool) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !(await condition()) {
            if ContinuousClock.now > deadline { return false }
            try? await Task.sleep(for: .milliseconds(5))
        }
        return true
    }
}
