import Foundation
import Glibc
import Ring
import Synchronization
import SystemPackage
import Testing

@testable import RingExec

/// Polls `condition` (a state the test can observe) until it holds or `timeout` passes; returns
/// whether it held (false too when the waiting task is cancelled). For bounded waits on another
/// thread's progress, not as synchronisation.
func waitUntil(_ timeout: Duration = waitLimit, _ condition: () -> Bool) async -> Bool {
    let end = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now >= end { return false }
        guard await pauseBeforeLookingAgain() else { return condition() }
    }
    return true
}

/// Blocking variant for code that runs outside Swift concurrency (test seams).
func spinUntil(_ timeout: Duration = .seconds(10), _ condition: () -> Bool) -> Bool {
    let end = ContinuousClock.now + timeout
    while !condition() {
        if ContinuousClock.now >= end { return false }
        usleep(200)
    }
    return true
}

/// Runs blocking `body` on a thread of its own (not one of the few cooperative threads, which
/// other tests need) and waits for it without blocking.
func onOwnThread(_ body: @escaping @Sendable () -> Void) async {
    await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
        let started = startThread {
            body()
            continuation.resume()
        }
        precondition(started, "could not start a thread")
    }
}

final class Flag: Sendable {
    let value = Atomic<Bool>(false)
    var isSet: Bool { value.load(ordering: .acquiring) }
    func set() { value.store(true, ordering: .releasing) }
}

/// How many actor jobs run at once, at most.
final class Occupancy: Sendable {
    let inside = Atomic<Int>(0)
    let peak = Atomic<Int>(0)
    func enter() {
        let now = inside.add(1, ordering: .sequentiallyConsistent).newValue
        var seen = peak.load(ordering: .relaxed)
        while now > seen {
            let (exchanged, original) = peak.compareExchange(expected: seen, desired: now, ordering: .relaxed)
            if exchanged { break }
            seen = original
        }
    }
    func leave() { inside.subtract(1, ordering: .sequentiallyConsistent) }
}

actor GuardedCounter {
    let executor: RingExecutor
    let occupancy: Occupancy
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    var count = 0
    init(executor: RingExecutor, occupancy: Occupancy) {
        self.executor = executor
        self.occupancy = occupancy
    }
    func bump() {
        occupancy.enter()
        // Widens the window in which a second job could overlap. A spin, not sched_yield: on a
        // loaded machine each yield hands the core to another program for a time slice, and
        // 20,000 of them outlasted the test's time limit.
        let until = ContinuousClock.now + .microseconds(20)
        while ContinuousClock.now < until {}
        count += 1
        occupancy.leave()
    }
}

@Suite(.timeLimit(.minutes(3))) struct LifecycleTests {
    /// Item 11: glibc hands a finished thread's pthread_t to the next thread. An executor whose
    /// loop thread had that id must not believe it is on its loop thread there. Both loop
    /// threads run on one stack, one after the other, which gives them the same id.
    @Test(.timeLimit(.minutes(1))) func shutDownExecutorIsNotCurrentOnAThreadThatReusedItsID() async throws {
        let stack = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { stack.deallocate() }  // after both loop threads are joined (defers run in reverse)
        func onStack() throws -> RingExecutor {
            try RingExecutor(
                makeEngine: { () throws(EngineError) in
                    try EngineFactory.make(.automatic, entries: 16, submitBatch: RingExecutor.defaultSubmitBatch)
                }, loopStack: stack)
        }
        let a = try onStack()
        let oldThread = await a.run { pthread_self() }
        a.shutdownGracefully()
        let b = try onStack()
        try #require(pthread_equal(await b.run { pthread_self() }, oldThread) != 0, "one stack, one thread id")
        defer { b.shutdownGracefully() }
        let (onA, isolating, ringRefused) = await b.run { () -> (Bool, Bool?, Bool) in
            let refused = (try? a.withRing { _ in 1 }) == nil
            return (a.isOnLoopThread, a.isIsolatingCurrentContext(), refused)
        }
        #expect(!onA)
        #expect(isolating != true)
        #expect(ringRefused, "withRing of a shut-down executor ran on another executor's thread")
        // A submission to A from B's loop thread fails at once instead of queuing forever.
        let done = Flag()
        let result = Mutex<Int32>(0)
        Task(executorPreference: b) {
            let value = await a.submit(.nop())
            result.withLock { $0 = value }
            done.set()
        }
        #expect(await waitUntil { done.isSet }, "the submission never came back")
        #expect(result.withLock { $0 } == -ESHUTDOWN)
    }

    /// Item 12: an actor pinned to a shut-down executor still runs one job at a time.
    @Test(.timeLimit(.minutes(1))) func actorPinnedToAShutDownExecutorStaysSerial() async throws {
        let executor = try RingExecutor(entries: 16)
        let occupancy = Occupancy()
        let counter = GuardedCounter(executor: executor, occupancy: occupancy)
        await counter.bump()
        executor.shutdownGracefully()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<1_000 { group.addTask { await counter.bump() } }
        }
        #expect(occupancy.peak.load(ordering: .relaxed) == 1, "two actor jobs ran at once")
        #expect(await counter.count == 1_001)
    }

    /// Item 14: the loop must never see `stopping` without the caller's deadline. The seam holds
    /// the caller right after it published `stopping` until the (busy) loop has seen it; only
    /// then does the pending read get its byte.
    @Test(.timeLimit(.minutes(1))) func longShutdownDeadlineIsNotCutShort() async throws {
        let executor = try RingExecutor(entries: 16)
        let pipe = try PipePair()
        defer { pipe.close() }
        let stop = Flag()
        let ticker = Task(executorPreference: executor) {
            while !stop.isSet { await Task.yield() }  // keeps the loop awake
        }
        let reader = Task { try await executor.read(pipe.read, upTo: 1) }
        #expect(await waitUntil { executor.operationsInFlight >= 1 })
        let writeEnd = pipe.write
        executor.afterStoppingPublished = {
            _ = spinUntil(.seconds(5)) { executor.ticksWhileStopping.load(ordering: .relaxed) > 2 }
            _ = try? writeEnd.writeAll([9])
        }
        Task {
            _ = await reader.result
            stop.set()
        }
        await onOwnThread { executor.shutdownGracefully(deadline: .seconds(30)) }
        await ticker.value
        let outcome = await reader.result
        #expect((try? outcome.get()) == [9], "\(outcome)")
    }

    /// Item 14: a second, concurrent shutdownGracefully returns only once the loop has exited
    /// (here: once a pending read, completed 200 ms after the second call, has finished).
    @Test(.timeLimit(.minutes(1))) func concurrentShutdownsBothWaitForTheLoop() async throws {
        let executor = try RingExecutor(entries: 16)
        let pipe = try PipePair()
        defer { pipe.close() }
        let reader = Task { try await executor.read(pipe.read, upTo: 1) }
        #expect(await waitUntil { executor.operationsInFlight >= 1 })
        let first = Task { await onOwnThread { executor.shutdownGracefully(deadline: .seconds(30)) } }
        #expect(await waitUntil { executor.ticksWhileStopping.load(ordering: .relaxed) > 0 })
        let writeEnd = pipe.write
        Task.detached {
            try? await Task.sleep(for: .milliseconds(200))
            _ = try? writeEnd.writeAll([9])
        }
        await onOwnThread { executor.shutdownGracefully(deadline: .seconds(30)) }
        #expect(executor.operationsInFlight == 0, "the second caller returned with work in flight")
        await first.value
        let outcome = await reader.result
        #expect((try? outcome.get()) == [9], "\(outcome)")
    }

    /// Item 15: after shutdown, `messages()` and `registerFixedBuffers` throw ESHUTDOWN.
    @Test func streamAndBufferSetupAfterShutdownThrow() async throws {
        let executor = try RingExecutor(entries: 16)
        executor.shutdownGracefully()
        let pipe = try PipePair()
        defer { pipe.close() }
        await #expect(throws: Errno(rawValue: ESHUTDOWN)) { _ = try await executor.messages(pipe.read) }
        await #expect(throws: Errno(rawValue: ESHUTDOWN)) {
            _ = try await executor.registerFixedBuffers(count: 2, size: 4096)
        }
    }

    /// Item 15: withRing off the loop thread (or after shutdown) throws instead of trapping.
    @Test func withRingOffTheLoopThreadThrows() async throws {
        let executor = try RingExecutor(entries: 16)
        #expect(throws: (any Error).self) { try executor.withRing { _ in 1 } }
        #expect(try await executor.run { try executor.withRing { _ in 1 } } == 1)
        executor.shutdownGracefully()
        #expect(throws: Errno(rawValue: ESHUTDOWN)) { try executor.withRing { _ in 1 } }
    }

    /// Item 15: Task.sleep after shutdown, in a task that still prefers the executor, sleeps.
    @Test func taskSleepAfterShutdownSleepsItsFullDuration() async throws {
        let executor = try RingExecutor(entries: 16)
        executor.shutdownGracefully()
        let elapsed = try await executor.run { () async throws -> Duration in
            let start = ContinuousClock.now
            try await Task.sleep(for: .milliseconds(100))
            return ContinuousClock.now - start
        }
        #expect(elapsed >= .milliseconds(95))
    }

    /// Item 17: cancelled Task.sleep timers leave the ring promptly. (Arming 100,000 timers takes
    /// 12–18 s in the full suite and 80 s or more on a loaded machine: the suite's 3-minute
    /// limit applies.)
    @Test func cancelledSleepsDisarmTheirTimers() async throws {
        let executor = try RingExecutor(entries: 256)
        defer { executor.shutdownGracefully() }
        let count = max(1_000, Int(100_000 * stressScale))
        let before = executor.scheduledTimers.load(ordering: .relaxed)
        let sleepers = Task(executorPreference: executor) {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<count { group.addTask { try? await Task.sleep(for: .seconds(60)) } }
            }
        }
        #expect(
            await waitUntil {
                executor.scheduledTimers.load(ordering: .relaxed) - before == count
                    && executor.operationsInFlight >= count
            })
        sleepers.cancel()
        await sleepers.value
        #expect(
            await waitUntil { executor.operationsInFlight == 0 },
            "\(executor.operationsInFlight) timers still armed")
    }

    /// Item 22: an open connections() stream does not hold shutdown for its whole deadline.
    @Test(.timeLimit(.minutes(1))) func openStreamDoesNotDelayShutdown() async throws {
        let executor = try RingExecutor(entries: 16)
        let listener = try await executor.socket()
        defer { try? listener.close() }
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        let acceptor = Task { () async throws -> Int in
            var count = 0
            for try await connection in executor.connections(listener) {
                try? connection.close()
                count += 1
            }
            return count
        }
        // And a messages() stream on one end of a socket pair.
        var pair: [Int32] = [-1, -1]
        #expect(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0, &pair) == 0)
        defer { for fd in pair { close(fd) } }
        let receiving = FileDescriptor(rawValue: pair[0])
        let receiver = Task { () async throws -> Int in
            var count = 0
            for try await _ in try await executor.messages(receiving, bufferSize: 256, bufferCount: 4) { count += 1 }
            return count
        }
        #expect(await waitUntil { executor.operationsInFlight >= 2 })
        let start = ContinuousClock.now
        await onOwnThread { executor.shutdownGracefully(deadline: .seconds(30)) }
        // Well under the 30 s deadline, with room for sanitizer builds on a loaded machine.
        #expect(ContinuousClock.now - start < .seconds(20))
        let ended = (Flag(), Flag())
        Task {
            _ = await acceptor.result
            ended.0.set()
        }
        Task {
            _ = await receiver.result
            ended.1.set()
        }
        #expect(await waitUntil { ended.0.isSet && ended.1.isSet }, "a stream did not end")
    }

    /// Item 23: a MSG_RING wake-up that fails (here: its target fd is not a ring) falls back to
    /// the target's eventfd, so the target still wakes.
    @Test(.timeLimit(.minutes(1))) func failedMessageWakeUpFallsBackToTheEventfd() async throws {
        let group = try RingExecutorGroup(threads: 2, entries: 32)
        defer { group.shutdownGracefully() }
        guard group.executors[0].kernelOffers(.messageRing) else { return }
        let (a, b) = (group.executors[0], group.executors[1])
        let pipe = try PipePair()
        defer { pipe.close() }
        b.ringFD = pipe.write  // MSG_RING to a pipe fails with EBADFD
        let done = Flag()
        let rounds = Atomic<Int>(0)
        Task(executorPreference: a) {
            for _ in 0..<200 {
                try? await b.nop()  // submitted from a's thread into b's queue, b mostly asleep
                rounds.add(1, ordering: .relaxed)
            }
            done.set()
        }
        #expect(
            await waitUntil { done.isSet },
            "b missed a wake-up after \(rounds.load(ordering: .relaxed)) rounds")
        #expect(a.messagesFailed.load(ordering: .relaxed) > 0, "no MSG_RING failed: the test did not test the fallback")
        b.ringFD = nil
    }

    /// Item 14: the async shutdown joins the loop thread without holding a cooperative thread:
    /// more concurrent shutdowns than the pool has threads, each waiting for a pipe read that
    /// only a later task can satisfy.
    @Test(.timeLimit(.minutes(1))) func asyncShutdownDoesNotBlockCooperativeThreads() async throws {
        let count = ProcessInfo.processInfo.activeProcessorCount * 2 + 2
        var executors: [RingExecutor] = []
        var pipes: [PipePair] = []
        for _ in 0..<count {
            executors.append(try RingExecutor(entries: 16))
            pipes.append(try PipePair())
        }
        defer { for pipe in pipes { pipe.close() } }
        let (started, ends) = (executors, pipes)
        let reads = zip(executors, pipes).map { executor, pipe in Task { try await executor.read(pipe.read, upTo: 1) } }
        for executor in executors { #expect(await waitUntil { executor.operationsInFlight == 1 }) }
        await withTaskGroup(of: Void.self) { group in
            for executor in started { group.addTask { await executor.shutdown(deadline: .seconds(30)) } }
            group.addTask {
                for executor in started {
                    _ = await waitUntil { executor.ticksWhileStopping.load(ordering: .relaxed) > 0 }
                }
                for pipe in ends { _ = try? pipe.write.writeAll([7]) }
            }
        }
        for executor in executors { #expect(executor.operationsInFlight == 0) }
        for read in reads { #expect(try await read.value == [7]) }
        // From the executor's own task as well.
        let own = try RingExecutor(entries: 16)
        await own.run { await own.shutdown() }
        await #expect(throws: Errno(rawValue: ESHUTDOWN)) { try await own.nop() }
    }

    /// Item 20: the scoped form always shuts down; 500 cycles leave no thread or descriptor
    /// behind (other tests run in parallel, so the counts get some slack; a leak would show as
    /// 500 threads and 1,000 descriptors).
    @Test(.timeLimit(.minutes(2))) func scopedExecutorsLeaveNothingBehind() async throws {
        func threads() -> Int { (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? -1 }
        let (fdsBefore, threadsBefore, liveBefore) = (openDescriptorCount(), threads(), RingExecutor.liveCount)
        for cycle in 0..<500 {
            let onRing = try await withRingExecutor(entries: 8) { executor in
                #expect(RingExecutor.liveCount >= 1)
                try await executor.nop()
                return await executor.run { executor.isOnLoopThread }
            }
            #expect(onRing, "cycle \(cycle)")
        }
        struct Failure: Error {}
        await #expect(throws: Failure.self) {
            try await withRingExecutor(entries: 8) { _ in throw Failure() }
        }
        let settled = await waitUntil {
            openDescriptorCount() <= fdsBefore + 40 && threads() <= threadsBefore + 20
                && RingExecutor.liveCount <= liveBefore + 10
        }
        #expect(settled, "fds \(fdsBefore) -> \(openDescriptorCount()), threads \(threadsBefore) -> \(threads())")
    }

    /// Item 20: a shut-down executor that armed watched sleep timers and streams is freed once
    /// dropped (no record keeps it alive).
    @Test func shutDownExecutorIsFreed() async throws {
        final class Box: @unchecked Sendable { weak var executor: RingExecutor? }
        let box = Box()
        do {
            let executor = try RingExecutor(entries: 16)
            box.executor = executor
            try await executor.run { try await Task.sleep(for: .milliseconds(150)) }
            let sleeper = Task(executorPreference: executor) { try await Task.sleep(for: .seconds(30)) }
            #expect(await waitUntil { executor.operationsInFlight == 1 })
            sleeper.cancel()
            _ = await sleeper.result
            #expect(await waitUntil { executor.operationsInFlight == 0 })
            await executor.shutdown()
        }
        #expect(await waitUntil { box.executor == nil }, "something still holds the executor")
    }

    @Test func groupShutsDownWithoutBlocking() async throws {
        let group = try RingExecutorGroup(threads: 2, entries: 16)
        await group.shutdown(deadline: .seconds(5))
        for executor in group.executors {
            await #expect(throws: Errno(rawValue: ESHUTDOWN)) { try await executor.nop() }
        }
        group.shutdownGracefully()  // a second shutdown returns at once
    }

    /// Item 17 on the aio engines (their timers are the engine's own list): fewer sleeps.
    @Test(.timeLimit(.minutes(1)), arguments: [EngineKind.libaio, .posixAIO])
    func cancelledSleepsDisarmTheirTimersOnAIO(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine) else { return }
        defer { executor.shutdownGracefully() }
        let count = 2_000
        let before = executor.scheduledTimers.load(ordering: .relaxed)
        let sleepers = Task(executorPreference: executor) {
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<count { group.addTask { try? await Task.sleep(for: .seconds(60)) } }
            }
        }
        #expect(
            await waitUntil {
                executor.scheduledTimers.load(ordering: .relaxed) - before == count
                    && executor.operationsInFlight >= count
            })
        sleepers.cancel()
        await sleepers.value
        #expect(
            await waitUntil { executor.operationsInFlight == 0 },
            "\(executor.operationsInFlight) timers still armed")
    }
}
