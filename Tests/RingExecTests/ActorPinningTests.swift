import Glibc
import Ring
import RingExec
import SystemPackage
import Testing

/// What an awaited operation costs the loop, in jobs, when the awaiting code is isolated to an
/// actor pinned to the ring (`unownedExecutor` is `asUnownedSerialExecutor()`). A job beyond the
/// one that resumes the task is a hop: the runtime found the task on the wrong executor (or on
/// the right one with the wrong task executor) and queued it again. These counts are exact, not
/// timings: each test runs its operations alone on its own executor.
@Suite(.timeLimit(.minutes(1))) struct ActorPinningTests {
    actor Pinned {
        let executor: RingExecutor
        nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
        init(_ executor: RingExecutor) { self.executor = executor }

        func nops(_ count: Int) async throws {
            for _ in 0..<count {
                try await executor.nop()
                assertIsolated()
            }
        }

        /// Reads from `fd` into a buffer of its own; the buffer is freed only after the call.
        func readOnce(_ fd: FileDescriptor) async throws -> Int {
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 16)
            defer { buffer.deallocate() }
            defer { assertIsolated() }  // whatever the read ended with, still on the actor
            return try await executor.read(fd, into: buffer)
        }

        /// Opens and closes /dev/null `count` times (close waits without a cancellation handler).
        func openAndClose(_ count: Int) async throws {
            for _ in 0..<count {
                let fd = try await executor.open("/dev/null", .readOnly)
                try await executor.close(fd)
                assertIsolated()
            }
        }

        /// Batches of three 64-byte reads of /dev/zero.
        func batches(_ count: Int) async throws {
            let fd = try FileDescriptor.open("/dev/zero", .readOnly)
            defer { try? fd.close() }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 192, alignment: 64)
            defer { buffer.deallocate() }
            let requests = (0..<3).map { index in
                IORequest.read(
                    fd, into: UnsafeMutableRawBufferPointer(rebasing: buffer[(index * 64)..<(index * 64 + 64)]),
                    offset: 0)
            }
            for _ in 0..<count {
                let results = try await executor.perform(requests)
                #expect(results.map { try? $0.get() } == [64, 64, 64])
                assertIsolated()
            }
        }
    }

    static let rounds = 200

    /// What the loop counted while `body` ran `rounds` rounds (after a warm-up round of 20):
    /// jobs it ran, and jobs other threads queued, per round.
    private func jobsPerRound(
        _ executor: RingExecutor, _ body: @escaping @Sendable (Int) async throws -> Void
    ) async throws -> (run: Double, fromOtherThreads: Double) {
        try await body(20)
        let before = await executor.statistics()
        try await body(Self.rounds)
        let after = await executor.statistics()
        let run = Double(after.jobsRun - before.jobsRun) / Double(Self.rounds)
        let remote = Double(after.jobsFromOtherThreads - before.jobsFromOtherThreads) / Double(Self.rounds)
        print("per round: \(run) jobs run, \(remote) from other threads")
        return (run, remote)
    }

    /// Swift resumes a continuation on the task's executor preference, and that of a task without
    /// one on the global executor: code isolated to a pinned actor woke a global thread after
    /// every operation, which queued the task back on the ring (one job from another thread per
    /// operation; ~24k NOPs/s at one in flight). The executor now gives such a task itself as its
    /// preference while it waits, so it resumes on the loop. Before that, the closure that waits
    /// inside `withTaskCancellationHandler` was nonisolated (it captured nothing isolated) and
    /// went to the global executor and back as well.
    /// Each round one NOP, one batch of three reads, or an open and a close (two operations, the
    /// close without a cancellation handler).
    @Test(arguments: ["nop", "batch", "open and close"])
    func aPinnedActorInATaskWithoutPreferenceResumesOnTheLoop(operation: String) async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let pinned = Pinned(executor)
        let counts = try await jobsPerRound(executor) { count in
            try await Task {
                switch operation {
                case "nop": try await pinned.nops(count)
                case "batch": try await pinned.batches(count)
                default: try await pinned.openAndClose(count)
                }
            }.value
        }
        // Starting each round's task and asking for statistics come from outside: a few jobs.
        #expect(counts.fromOtherThreads < 0.1)
        // It switches between the actor and the ring as a task executor on the loop itself
        // (4 jobs per operation), where the global hop cost a thread wake-up per operation.
        #expect(counts.run <= (operation == "open and close" ? 10 : 5))
    }

    /// A task that prefers the ring and calls into an actor pinned to it: its continuation
    /// resumes on the ring as a task executor (one job), then it switches to the actor face (one
    /// more). Running actor jobs without the ring as their task executor would make every
    /// further switch a hop (7 jobs per operation); the loop learns which tasks prefer it.
    @Test func aPinnedActorInATaskThatPrefersTheRingCostsTwoJobsPerOperation() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let pinned = Pinned(executor)
        let counts = try await jobsPerRound(executor) { count in
            try await Task(executorPreference: executor) { try await pinned.nops(count) }.value
        }
        #expect(counts.fromOtherThreads < 0.1)
        #expect(counts.run <= 2.5)
    }

    /// Both kinds of task on one actor at once: the loop keeps them apart (each at its own
    /// cost, neither leaving the loop) and the actor's isolation holds throughout.
    @Test func tasksWithAndWithoutPreferenceShareAPinnedActor() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let pinned = Pinned(executor)
        let counts = try await jobsPerRound(executor) { count in
            async let plain: Void = Task { try await pinned.nops(count) }.value
            async let preferring: Void = Task(executorPreference: executor) { try await pinned.nops(count) }.value
            _ = try await (plain, preferring)
        }
        #expect(counts.fromOtherThreads < 0.1)
        #expect(counts.run <= 8)  // one operation of each per round
    }

    /// More tasks at once than the loop has room to remember (its guesses are kept in a table
    /// of 1,024 slots by task address): a task whose guess was lost must still resume on the
    /// loop. The decision to lend the executor as the task's preference is made from the
    /// task's actual preference, not from the guess, which only saves jobs.
    @Test func thousandsOfTasksWithoutPreferenceOnAPinnedActorAllResumeOnTheLoop() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let pinned = Pinned(executor)
        let tasks = 4096
        let operations = 8
        let before = await executor.statistics()
        try await withThrowingTaskGroup(of: Void.self) { group in
            for _ in 0..<tasks { group.addTask { try await pinned.nops(operations) } }
            try await group.waitForAll()
        }
        let after = await executor.statistics()
        let remotePerTask = Double(after.jobsFromOtherThreads - before.jobsFromOtherThreads) / Double(tasks)
        print("per task of \(operations) operations: \(remotePerTask) jobs from other threads")
        // Each task comes to the actor once from the global executor where it starts; a lost
        // guess that let a task resume on the global executor would add one per operation.
        #expect(remotePerTask < 2)
    }

    /// Plain code in a task that prefers the ring, for comparison: one job per operation.
    @Test func aTaskThatPrefersTheRingCostsOneJobPerOperation() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let counts = try await jobsPerRound(executor) { count in
            try await Task(executorPreference: executor) {
                for _ in 0..<count { try await executor.nop() }
            }.value
        }
        #expect(counts.fromOtherThreads < 0.1)
        #expect(counts.run <= 1.5)
    }

    // MARK: The preference the executor lends a waiting task, attacked

    /// Cancelled while it waits with the executor as its lent preference: the read is cancelled
    /// in the kernel, the call throws `CancellationError`, and the actor's next operations run
    /// as usual (the task's own lack of preference is back).
    @Test func aPinnedActorsReadCancelledInFlightEndsAndTheActorGoesOn() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let pipe = try PipePair()
        defer { pipe.close() }
        let pinned = Pinned(executor)
        for _ in 0..<20 {
            let reader = Task { try await pinned.readOnce(pipe.read) }
            #expect(await waitUntilInFlightList(of: executor) { $0.count == 1 })
            reader.cancel()
            await #expect(throws: CancellationError.self) { try await reader.value }
        }
        #expect(await waitUntilNothingInFlight(executor))
        let counts = try await jobsPerRound(executor) { count in
            try await Task { try await pinned.nops(count) }.value
        }
        #expect(counts.fromOtherThreads < 0.1)
    }

    /// Shut down while a pinned actor's task waits: the read ends with an error, and the rest of
    /// the actor's code runs isolated to it on the thread that runs late actor jobs (the task's
    /// lent preference points at an executor that no longer runs jobs).
    @Test func aPinnedActorsWaitEndsAtShutdownAndItsCodeStaysIsolated() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        let pipe = try PipePair()
        defer { pipe.close() }
        let pinned = Pinned(executor)
        let reader = Task { try await pinned.readOnce(pipe.read) }
        #expect(await waitUntilInFlightList(of: executor) { $0.count == 1 })
        await executor.shutdown(deadline: .milliseconds(20))  // the read would never end by itself
        await #expect(throws: (any Error).self) { try await reader.value }
        // After shutdown the actor still runs its code, one job at a time.
        await #expect(throws: Errno.self) { try await pinned.nops(1) }
    }

    /// The same task alternates between code isolated to the pinned actor and a scope that
    /// prefers the ring itself (`executor.run`): the loop relearns it both ways and every
    /// operation completes.
    @Test func aTaskMovingInAndOutOfAPreferenceStaysCorrect() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let pinned = Pinned(executor)
        try await Task {
            for round in 0..<100 {
                if round.isMultiple(of: 2) {
                    try await pinned.nops(3)
                } else {
                    try await executor.run { try await pinned.nops(3) }
                }
            }
        }.value
        #expect(await waitUntilNothingInFlight(executor))
    }
}
