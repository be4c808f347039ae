import Glibc
import Ring
import SystemPackage
import Testing

@testable import RingExec

/// The older-kernel fallbacks under pressure: more work than the queue holds at shutdown, wait
/// deadlines that shrink and grow, streams paused, dropped and cancelled with single-shot
/// re-arms. Emulated on the running kernel (`KernelEmulation`).
@Suite struct OlderKernelEdgeTests {
    /// Without ASYNC_CANCEL_ANY each operation needs a cancel entry of its own: with far more
    /// operations in flight than the submission queue holds, shutdown past its deadline must
    /// still cancel every one, over several ticks, and return.
    @Test(.timeLimit(.minutes(1)))
    func shutdownCancelsMoreOperationsThanTheQueueHoldsOneByOne() async throws {
        let executor = try KernelFallbackTests.executor(emulating: KernelVersion(5, 10), entries: 8)
        let pipe = try PipePair()
        defer { pipe.close() }
        let readers = (0..<40).map { _ in Task { try await executor.read(pipe.read, upTo: 1) } }
        #expect(await waitForOperationsInFlight(executor, atLeast: 40))
        await executor.shutdown(deadline: .milliseconds(10))
        for reader in readers {
            await #expect(throws: (any Error).self) { _ = try await reader.value }
        }
        #expect(executor.operationsInFlight == 0)
    }

    /// The engine's close drains its armed wake-up read by cancelling it; a queue that is full
    /// at that moment must not leave it waiting for a completion that never comes.
    @Test(.timeLimit(.minutes(1)))
    func closeEndsTheWakeReadAlsoWhenTheQueueIsFull() throws {
        let engine = try URingEngine(entries: 8, submitBatch: 64, emulating: KernelVersion(5, 10))
        var token = ReservedToken.limit
        while engine.prepare(.nop(), token: token) { token += 8 }
        #expect(engine.submissionSpace <= 0)
        engine.close()  // returned: the wake read was cancelled and reaped
    }

    /// Without EXT_ARG each timed wait is bounded by a TIMEOUT entry of the engine's own. A
    /// long wait that ended early (a wake-up) leaves its entry armed; a shorter wait after it
    /// must not sleep until the long one fires, and the entries must not pile up.
    @Test(.timeLimit(.minutes(1)))
    func timedWaitsWithShrinkingAndGrowingDeadlinesNeitherOversleepNorLeak() throws {
        let engine = try URingEngine(entries: 8, submitBatch: 8, emulating: KernelVersion(5, 10))
        defer { engine.close() }
        for round in 0..<4 {
            engine.wake()
            engine.submit(wait: true, timeout: .seconds(30))  // ends at once: the wake read completes
            engine.reap { _, _, _ in }
            #expect(
                engine.waitTimeoutsInFlight <= 2, "round \(round): \(engine.waitTimeoutsInFlight) wait timeouts armed")
            let start = ContinuousClock.now
            // The loop's way: wait again until the short deadline has passed.
            let deadline = start + .milliseconds(20)
            while ContinuousClock.now < deadline {
                engine.submit(wait: true, timeout: deadline - .now)
                engine.reap { _, _, _ in }
            }
            let waited = ContinuousClock.now - start
            #expect(waited < .seconds(5), "round \(round): a 20 ms wait took \(waited)")
            #expect(
                engine.waitTimeoutsInFlight <= 2, "round \(round): \(engine.waitTimeoutsInFlight) wait timeouts armed")
        }
    }

    /// A single-shot receive stream under backpressure (bufferLimit 1): every byte arrives, in
    /// order, however the consumer lags.
    @Test(.timeLimit(.minutes(1)))
    func singleShotReceivesUnderBackpressureLoseNothing() async throws {
        let executor = try KernelFallbackTests.executor(emulating: KernelVersion(5, 19))
        defer { executor.shutdownGracefully() }
        let (a, b) = try socketPair()
        defer {
            try? a.close()
            try? b.close()
        }
        let payload = pattern(count: 200_000)
        let sender = Task {
            try await executor.send(a, bytes: payload); try await executor.shutdown(a)
        }
        var received: [UInt8] = []
        for try await message in try await executor.messages(b, bufferSize: 1000, bufferLimit: 1) {
            received += message
            if received.count % 10_000 < 1000 { await Task.yield() }
        }
        try await sender.value
        #expect(received == payload)
    }

    /// Dropping a single-shot stream while a receive is in flight, while it is paused, or by
    /// cancelling its consumer: the stream ends, the executor stays usable and shuts down.
    @Test(.timeLimit(.minutes(1)), arguments: [0, 1, 2])
    func singleShotStreamsEndWhenDroppedPausedOrCancelled(way: Int) async throws {
        GuardedMemory.enabled.store(true, ordering: .relaxed)
        defer { GuardedMemory.enabled.store(false, ordering: .relaxed) }
        let executor = try KernelFallbackTests.executor(emulating: KernelVersion(5, 15))
        let (a, b) = try socketPair()
        defer {
            try? a.close()
            try? b.close()
        }
        let stream = try await executor.messages(b, bufferSize: 64, bufferLimit: 2)
        switch way {
        case 0:
            // In flight, then dropped.
            #expect(await waitForOperationsInFlight(executor, atLeast: 1))
        case 1:
            // Paused: more sent than the stream buffers, nobody reading.
            for _ in 0..<8 { try await executor.send(a, bytes: pattern(count: 64)) }
            var iterator = stream.makeAsyncIterator()
            _ = try await iterator.next()
        default:
            let consumer = Task {
                var count = 0
                for try await _ in stream { count += 1 }
                return count
            }
            #expect(await waitForOperationsInFlight(executor, atLeast: 1))
            consumer.cancel()
            _ = try await consumer.value
        }
        _ = consume stream
        try await executor.send(a, bytes: pattern(count: 64))
        let file = try TemporaryFile(contents: [1, 2, 3])
        defer { file.remove() }
        #expect(try await executor.read(file.fd, upTo: 3, offset: 0) == [1, 2, 3])
        await executor.shutdown(deadline: .seconds(5))
        #expect(executor.operationsInFlight == 0)
        #expect(GuardedMemory.checkParked() == 0)
    }

    /// A receive buffer larger than a receive can fill (the kernel's length is 32 bits) is bad
    /// input, refused with EINVAL as the buffer-ring path refuses it, not a trap in the
    /// allocator.
    @Test(arguments: [KernelVersion(5, 19), nil] as [KernelVersion?])
    func anOversizedReceiveBufferIsRefusedOnEveryKernel(version: KernelVersion?) async throws {
        let executor =
            try version.map { try KernelFallbackTests.executor(emulating: $0) }
            ?? RingExecutor(entries: 16, engine: .ioURing)
        defer { executor.shutdownGracefully() }
        let (a, b) = try socketPair()
        defer {
            try? a.close()
            try? b.close()
        }
        for size in [Int.max, Int(UInt32.max) + 1] {
            await #expect(throws: Errno.invalidArgument) {
                _ = try await executor.messages(b, bufferSize: size, bufferCount: 1)
            }
        }
    }

    /// A request a kernel worker is running when the cancel comes is interrupted and ends with
    /// `-EINTR` (Linux 6.1 does this to plain pipe reads; an open of a FIFO for writing without
    /// a reader waits in a worker on any kernel: O_TRUNC keeps io_uring from trying it
    /// non-blocking first). The cancel won, so the raw result is `-ECANCELED`, as
    /// documented, whether the task or a shutdown past its deadline asked.
    @Test(.timeLimit(.minutes(1)), arguments: [false, true])
    func aCancelledRequestAKernelWorkerWasRunningEndsWithECANCELED(byShutdown: Bool) async throws {
        let executor = try KernelFallbackTests.executor(emulating: KernelVersion(5, 15))
        defer { executor.shutdownGracefully() }
        let fifo = "/tmp/ringexec-fifo-\(getpid())-\(byShutdown)"
        unlink(fifo)
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let path = try #require(strdup(fifo))
        defer { free(path) }
        let address = UInt(bitPattern: path)
        let opener = Task { () async -> Int32 in
            let path = UnsafePointer<CChar>(bitPattern: address)!
            return await executor.submit(
                .openat(
                    directory: FileDescriptor(rawValue: AT_FDCWD), path: path, flags: O_WRONLY | O_TRUNC | O_CLOEXEC,
                    mode: 0))
        }
        #expect(await waitForOperationsInFlight(executor, atLeast: 1))
        if byShutdown {
            await executor.shutdown(deadline: .milliseconds(10))
        } else {
            opener.cancel()
        }
        let result = await opener.value
        if result >= 0 { Glibc.close(result) }
        #expect(result == -ECANCELED)
    }

    /// The same through the throwing API: a cancelled task's open that a worker was running
    /// throws CancellationError, not the kernel-internal ERESTARTSYS (512) as an Errno.
    @Test(.timeLimit(.minutes(1)))
    func aCancelledOpenThatAWorkerWasRunningThrowsCancellationError() async throws {
        let executor = try KernelFallbackTests.executor(emulating: KernelVersion(5, 15))
        defer { executor.shutdownGracefully() }
        let fifo = "/tmp/ringexec-fifo-\(getpid())-open"
        unlink(fifo)
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        let opener = Task { try await executor.open(FilePath(fifo), .writeOnly, options: .truncate) }
        #expect(await waitForOperationsInFlight(executor, atLeast: 1))
        opener.cancel()
        do {
            let fd = try await opener.value
            try? fd.close()
            Issue.record("the open returned \(fd)")
        } catch is CancellationError {
        } catch {
            Issue.record("threw \(error) instead of CancellationError")
        }
    }

    /// A multishot stream of an operation the kernel's probe lacks ends with the same typed
    /// error an awaited one throws, naming the release, not with the kernel's bare EINVAL
    /// (nor, emulated, with whatever the newer running kernel makes of it).
    @Test(.timeLimit(.minutes(1)))
    func aMultishotStreamOfAnOperationTheKernelLacksEndsWithATypedError() async throws {
        let executor = try KernelFallbackTests.executor(emulating: KernelVersion(6, 1))
        defer { executor.shutdownGracefully() }
        let pipe = try PipePair()
        defer { pipe.close() }
        let stream = executor.multishot(.readMultishot(pipe.read, bufferGroup: 7, offset: 0))
        await #expect(throws: EngineError.kernelLacks(operation: "read_multishot", needs: KernelVersion(6, 7))) {
            for try await _ in stream {}
        }
    }

    /// After shutdown every call refuses with ESHUTDOWN, the plain-system-call fallbacks and the
    /// single-shot streams as much as the io_uring operations.
    @Test(.timeLimit(.minutes(1)))
    func afterShutdownTheFallbacksRefuseLikeTheOperations() async throws {
        let executor = try KernelFallbackTests.executor(emulating: KernelVersion(5, 10))
        let (a, b) = try socketPair()
        defer {
            try? a.close()
            try? b.close()
        }
        executor.shutdownGracefully()
        let shutDown = Errno(rawValue: ESHUTDOWN)
        await #expect(throws: shutDown) { _ = try await executor.socket() }
        await #expect(throws: shutDown) { try await executor.shutdown(a) }
        await #expect(throws: shutDown) { try await executor.listen(a) }
        await #expect(throws: shutDown) {
            for try await _ in try await executor.messages(b, bufferSize: 64) {}
        }
        await #expect(throws: shutDown) {
            for try await _ in executor.connections(a) {}
        }
    }

    /// Accepts one at a time under backpressure: connections made before the consumer looks
    /// are all handed out.
    @Test(.timeLimit(.minutes(1)))
    func singleShotAcceptsUnderBackpressureHandOutEveryConnection() async throws {
        let executor = try KernelFallbackTests.executor(emulating: KernelVersion(5, 15))
        defer { executor.shutdownGracefully() }
        let listener = try await executor.socket()
        defer { try? listener.close() }
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        let port = boundPort(listener)
        var clients: [FileDescriptor] = []
        defer { for client in clients { try? client.close() } }
        let stream = executor.connections(listener, bufferLimit: 1)
        for _ in 0..<5 {
            let client = try await executor.socket()
            clients.append(client)
            try await executor.connect(client, to: .loopback(port: port))
        }
        var accepted = 0
        for try await connection in stream {
            try? connection.close()
            accepted += 1
            if accepted == 5 { break }
        }
        #expect(accepted == 5)
    }

    /// `withTimeout` and sleeps on a kernel without EXT_ARG: the loop's own wait timeouts and
    /// the operations' linked timeouts do not get in each other's way.
    @Test(.timeLimit(.minutes(1)))
    func timeoutsWorkWithoutExtendedArguments() async throws {
        let executor = try KernelFallbackTests.executor(emulating: KernelVersion(5, 10))
        defer { executor.shutdownGracefully() }
        let pipe = try PipePair()
        defer { pipe.close() }
        // Timed on the loop thread (a task preferring the executor), so a busy global pool
        // cannot stretch what is measured.
        let waits = try await executor.run { () async throws -> [Duration] in
            var waits: [Duration] = []
            for _ in 0..<3 {
                let start = ContinuousClock.now
                do {
                    _ = try await executor.withTimeout(.milliseconds(30)) {
                        try await executor.read(pipe.read, upTo: 1)
                    }
                    Issue.record("the read returned")
                } catch Errno.timedOut {
                    waits.append(ContinuousClock.now - start)
                }
                try await executor.sleep(for: .milliseconds(2))
            }
            return waits
        }
        #expect(waits.count == 3)
        for waited in waits {
            #expect(waited >= .milliseconds(25) && waited < .seconds(5), "a 30 ms timeout took \(waited)")
        }
    }
}

func socketPair() throws -> (FileDescriptor, FileDescriptor) {
    var fds: [Int32] = [0, 0]
    guard socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0, &fds) == 0 else {
        throw Errno(rawValue: errno)
    }
    return (FileDescriptor(rawValue: fds[0]), FileDescriptor(rawValue: fds[1]))
}
