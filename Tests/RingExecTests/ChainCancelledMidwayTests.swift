import Glibc
import Ring
import SystemPackage
import Testing

@testable import RingExec

/// Linked chains cancelled at every point. The kernel issues a chain's next entry only after the
/// one before it completes (as task work, which with `DEFER_TASKRUN` runs while the ring's
/// thread waits in `io_uring_enter`, after the entries it submitted). A cancel that reaches the
/// kernel in between finds nothing to cancel (`-ENOENT`), and the entry starts afterwards: a
/// read that waits for data never ends, and neither does the task. The executor asks again
/// until the chain has ended.
@Suite(.timeLimit(.minutes(1))) struct ChainCancelledMidwayTests {
    /// A NOP (run by a kernel worker) linked to a read of an empty pipe: each round cancels the chain at another point
    /// (before it is submitted, after a yield, once it is in flight); every call must end.
    @Test func aChainCancelledBetweenItsEntriesStillEnds() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let pipe = try PipePair()
        defer { pipe.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64, alignment: 16)
        defer { buffer.deallocate() }
        nonisolated(unsafe) let target = buffer
        for round in 0..<300 {
            let chain = Task(executorPreference: executor) {
                // The NOP runs in a kernel worker (`.async`), so the read is issued by task work
                // after the NOP's completion comes back to the ring's thread.
                try await executor.submitChain([
                    .nop().flags([.link, .async]), .read(pipe.read, into: target, offset: 0),
                ])
            }
            switch round % 3 {
            case 0: break
            case 1: await Task.yield()
            default: #expect(await waitUntilInFlightList(of: executor) { !$0.isEmpty })
            }
            chain.cancel()
            do {
                let results = try await chain.value
                // The NOP ran; the read was cancelled (it never had data).
                #expect(results[1] == -ECANCELED)
            } catch is CancellationError {}
        }
        #expect(await waitUntilNothingInFlight(executor))
    }

    /// Free slots in the executor's `readFile` table; nil before it has one.
    static func freeSlots(of executor: RingExecutor) -> Int? {
        FixedSlots.states.withLock { states in
            if case .free(let slots)? = states[executor.wakeID] { return slots.count }
            return nil
        }
    }

    /// A FIFO with a writer that never writes: a read of it waits until it is cancelled. (The
    /// writer opens it read-write, which never blocks, so opening it to read does not block.)
    @Test func readFileCancelledAtEveryPointOfItsChainGivesEverySlotBackAndLeavesNothingOpen() async throws {
        guard let executor = try makeExecutor(.ioURing) else { return }
        defer { executor.shutdownGracefully() }
        let path = "/tmp/swift-ring-fifo-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        guard mkfifo(path, 0o600) == 0 else { throw Errno(rawValue: errno) }
        defer { unlink(path) }
        var writer: FileDescriptor? = try FileDescriptor.open(FilePath(path), .readWrite)
        defer { try? writer?.close() }

        // A regular file first: the chain registers the slot table, or the kernel has no slots.
        let file = try TemporaryFile(contents: pattern(count: 100))
        defer { file.remove() }
        _ = try await executor.readFile(at: FilePath(file.path), upTo: 4096)
        guard let slots = Self.freeSlots(of: executor) else {
            // Separate operations (a kernel before 5.15, or no table): nothing chained to test.
            skip(.kernel, "readFile reads in separate operations here (no fixed-file slots)")
            return
        }
        #expect(slots == Int(FixedSlots.count))

        // More rounds than slots, so a slot lost on any path would run the table dry.
        for round in 0..<(Int(FixedSlots.count) + 16) {
            let reader = Task(executorPreference: executor) {
                try await executor.readFile(at: FilePath(path), upTo: 4096)
            }
            switch round % 3 {
            case 0: break  // cancelled before or while it submits
            case 1: await Task.yield()
            default:
                // The chain is in the kernel (statx and open done or under way, the read waiting).
                #expect(await waitUntilInFlightList(of: executor) { !$0.isEmpty })
            }
            reader.cancel()
            await #expect(throws: CancellationError.self) { _ = try await reader.value }
        }

        // A slot cancelled after its open is closed by a task of its own: wait for the table.
        let deadline = ContinuousClock.now + waitLimit
        while Self.freeSlots(of: executor) != Int(FixedSlots.count) && ContinuousClock.now < deadline {
            guard await pauseBeforeLookingAgain() else { break }
        }
        #expect(Self.freeSlots(of: executor) == Int(FixedSlots.count))
        #expect(await waitUntilNothingInFlight(executor))

        // No slot holds the FIFO open: with our writer closed, opening it to write without
        // blocking finds no reader (ENXIO).
        try writer?.close()
        writer = nil
        #expect(throws: Errno.noSuchAddressOrDevice) {
            try FileDescriptor.open(FilePath(path), .writeOnly, options: .nonBlocking).close()
        }
        // And the chain still reads a regular file.
        #expect(try await executor.readFile(at: FilePath(file.path), upTo: 4096) == pattern(count: 100))
    }
}
