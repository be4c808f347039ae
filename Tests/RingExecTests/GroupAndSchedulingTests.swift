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

    /// Work handed from one ring's thread to another, asleep, wakes it with MSG_RING.
    @Test func crossRingWakeUpsUseMessages() async throws {
        let group = try RingExecutorGroup(threads: 2, entries: 32)
        defer { group.shutdownGracefully() }
        guard group.executors[0].kernelOffers(.messageRing) else { return }
        let (a, b) = (group.executors[0], group.executors[1])
        let rounds = 2_000
        let done = try await a.run { () async throws -> Int in
            var count = 0
            for _ in 0..<rounds {
                try await b.nop()  // submitted from a's thread into b's queue
                #expect(a.isOnLoopThread)
                count += 1
            }
            return count
        }
        #expect(done == rounds)
        let messages = a.messagesSent.load(ordering: .relaxed)
        #expect(messages > 0, "b sleeps between rounds, so some wake-ups must have been messages")
        #expect(messages <= rounds)
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
