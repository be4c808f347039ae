import Glibc
import Ring
import Synchronization
import Testing

@testable import RingExec

/// The cancellation rule, checked against an engine that plays a kernel which will not let go:
/// a cancelled operation's task must stay suspended for as long as the engine holds the
/// operation (a real kernel may still be writing into its buffer), and resume only from the
/// operation's own completion.
@Suite(.timeLimit(.minutes(1))) struct CancellationHoldTests {
    /// Holds every operation until the test calls `release()`. Touched on the loop thread, except
    /// the atomics the test reads.
    final class HoldingEngine: IOEngine, @unchecked Sendable {
        private var held: [UInt64] = []
        private var ready: [(UInt64, Int32, UInt32)] = []
        let heldCount = Atomic<Int>(0)
        let cancelRequests = Atomic<Int>(0)
        private let releaseRequested = Atomic<Bool>(false)
        private let woken = Atomic<Bool>(false)

        /// How many operations it holds at most: the rest wait in the executor's queue.
        let capacity: Int
        init(capacity: Int = 64) { self.capacity = capacity }

        var kind: EngineKind { .ioURing }
        var systemCalls: Int { 0 }
        var submitBatch: Int { .max }
        var submissionCapacity: Int { capacity }
        var submissionSpace: Int { capacity - held.count }
        func supports(_ entry: SubmissionEntry) -> Bool { true }

        func prepare(_ entry: SubmissionEntry, token: UInt64) -> Bool {
            held.append(token)
            heldCount.add(1, ordering: .releasing)
            return true
        }

        /// Asked to cancel, the "kernel" says it is still busy: the completion comes later.
        func cancel(token: UInt64) -> Bool {
            cancelRequests.add(1, ordering: .releasing)
            return true
        }

        func cancelAll() { releaseRequested.store(true, ordering: .releasing) }

        /// From the test: the kernel is done; every held operation completes as cancelled.
        func release() {
            releaseRequested.store(true, ordering: .releasing)
            wake()
        }

        func submit(wait: Bool, timeout: Duration?) {
            if releaseRequested.load(ordering: .acquiring) {
                ready += held.map { ($0, -ECANCELED, 0) }
                held.removeAll()
            }
            if wait && ready.isEmpty && !woken.exchange(false, ordering: .acquiring) { usleep(200) }
        }

        func reap(_ body: (UInt64, Int32, UInt32) -> Void) {
            let batch = ready
            ready.removeAll()
            for (token, result, flags) in batch { body(token, result, flags) }
        }

        func wake() { woken.store(true, ordering: .releasing) }
        func close() {}
    }

    @Test func cancelledOperationWaitsForTheEngineToLetGo() async throws {
        let engine = HoldingEngine()
        let executor = try RingExecutor { () throws(EngineError) in
            (engine, EngineSelection(engine: .ioURing, passedOver: [], fromEnvironment: false))
        }
        defer { executor.shutdownGracefully(deadline: .seconds(5)) }
        let resumed = Atomic<Bool>(false)
        let task = Task {
            let result = await executor.submit(.nop())
            resumed.store(true, ordering: .releasing)
            return result
        }
        #expect(
            await waitUntil { engine.heldCount.load(ordering: .acquiring) == 1 },
            "the operation reached the engine")
        task.cancel()
        #expect(
            await waitUntil { engine.cancelRequests.load(ordering: .acquiring) == 1 },
            "the cancel reached the engine")
        // Many more loop ticks: the task must still be suspended, the engine still holds it.
        for _ in 0..<50 { _ = await executor.run { 0 } }
        let resumedEarly = resumed.load(ordering: .acquiring)
        #expect(!resumedEarly, "resumed while the engine still held the operation")
        engine.release()
        #expect(await task.value == -ECANCELED)
        let resumedAfterRelease = resumed.load(ordering: .acquiring)
        #expect(resumedAfterRelease)
    }
}
