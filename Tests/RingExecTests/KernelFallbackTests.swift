import Glibc
import Ring
import SystemPackage
import Testing

@testable import RingExec

/// The io_uring engine on older kernels, emulated on this one (`KernelEmulation`): the ring shape
/// it settles for, what it reports, and that every fallback it takes still does the job. On a
/// real old kernel the kernel matrix (Scripts/kernel-matrix) runs the whole suite.
@Suite struct KernelFallbackTests {
    /// An executor whose ring answers as `version` would.
    static func executor(emulating version: KernelVersion, entries: Int = 64) throws -> RingExecutor {
        try RingExecutor(makeEngine: { () throws(EngineError) -> (any IOEngine, EngineSelection) in
            let engine = try URingEngine(
                entries: entries, submitBatch: RingExecutor.defaultSubmitBatch, emulating: version)
            return (engine, EngineFactory.selection(engine, passedOver: [], fromEnvironment: false))
        })
    }

    static let versions: [KernelVersion] = [.init(5, 10), .init(5, 15), .init(5, 19), .init(6, 0)]

    @Test(
        arguments: [
            (KernelVersion(5, 10), SetupFlags()),
            (KernelVersion(5, 19), SetupFlags([.coopTaskRun, .taskRunFlag])),
            (KernelVersion(6, 0), SetupFlags([.coopTaskRun, .taskRunFlag])),
            (KernelVersion(6, 1), SetupFlags([.singleIssuer, .deferTaskRun, .taskRunFlag])),
        ] as [(KernelVersion, SetupFlags)])
    func theRingTakesTheBestShapeTheKernelAccepts(version: KernelVersion, shape: SetupFlags) throws {
        let executor = try Self.executor(emulating: version)
        defer { executor.shutdownGracefully() }
        let selection = executor.engineSelection
        // CQSIZE is always there: the executor sizes its CQ itself.
        #expect(selection.ringFlags.subtracting(.cqSize) == shape)
        if version < KernelVersion(6, 1) {
            #expect(selection.adaptations.contains { $0.contains("refused") && $0.contains("needs Linux 6.1") })
            #expect(selection.description.contains("needs Linux 6.1"))
        }
    }

    @Test func anOlderKernelIsReportedWithEveryFallbackAndTheReleaseThatWouldAvoidIt() throws {
        let executor = try Self.executor(emulating: KernelVersion(5, 10))
        defer { executor.shutdownGracefully() }
        let notes = executor.engineSelection.adaptations.joined(separator: "\n")
        for expected in [
            "Linux 5.11", "Linux 5.18", "Linux 5.19", "Linux 6.0", "Linux 6.11", "EXT_ARG", "MSG_RING", "CANCEL_ANY",
        ] {
            #expect(notes.contains(expected), "\(expected) missing from:\n\(notes)")
        }
        let uring = try #require(executor.engine as? URingEngine)
        #expect(!uring.hasTimedWaits && !uring.canMessage && !uring.canCancelAny)
        #expect(executor.ringFD == nil)  // no MSG_RING wake-ups from other executors
    }

    @Test func aKernelWithEverythingNeedsNoFallback() throws {
        guard let running = KernelEmulation.fromEnvironment ?? KernelVersion.running, running >= KernelVersion(6, 11)
        else {
            let release = (KernelEmulation.fromEnvironment ?? KernelVersion.running)?.description ?? "unknown"
            skip(
                .kernel,
                "every feature the executor uses needs Linux 6.11 (bind/listen); this kernel answers as \(release)")
            return
        }
        let executor = try RingExecutor(entries: 16, engine: .ioURing)
        defer { executor.shutdownGracefully() }
        #expect(executor.engineSelection.adaptations == [])
    }

    /// Without EXT_ARG a timed wait arms its own TIMEOUT entry: the wait must still end by
    /// itself (not at once, not never) and the entry must be reaped.
    @Test func timedWaitsWithoutExtendedArgumentsEndByThemselves() throws {
        let engine = try URingEngine(entries: 8, submitBatch: 8, emulating: KernelVersion(5, 10))
        defer { engine.close() }
        #expect(!engine.hasTimedWaits)
        for _ in 0..<3 {
            let start = ContinuousClock.now
            engine.submit(wait: true, timeout: .milliseconds(30))
            let waited = ContinuousClock.now - start
            var completions = 0
            engine.reap { _, _, _ in completions += 1 }
            #expect(completions == 0)  // the timeout is the engine's own
            #expect(waited >= .milliseconds(25), "returned after \(waited) instead of waiting")
            #expect(waited < .seconds(20), "the wait did not end by itself")
        }
    }

    @Test(arguments: versions)
    func filesTimersAndCancellationWorkOnAnOlderKernel(version: KernelVersion) async throws {
        let executor = try Self.executor(emulating: version)
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile()
        defer { file.remove() }
        let bytes = pattern(count: 10_000)
        #expect(try await executor.write(file.fd, bytes: bytes, offset: 0) == bytes.count)
        #expect(try await executor.read(file.fd, upTo: 10_000, offset: 0) == bytes)
        // A kernel timeout, and a task sleeping on the executor.
        try await executor.sleep(for: .milliseconds(5))
        try await executor.run { try await Task.sleep(for: .milliseconds(5)) }
        // A read nobody answers, cancelled by its task.
        let pipe = try PipePair()
        defer { pipe.close() }
        let reader = Task { try await executor.read(pipe.read, upTo: 1) }
        #expect(await waitForOperationsInFlight(executor, atLeast: 1))
        reader.cancel()
        await #expect(throws: CancellationError.self) { try await reader.value }
    }

    /// Without ASYNC_CANCEL_ANY, shutdown past its deadline cancels what is left one by one.
    @Test(arguments: [KernelVersion(5, 10), KernelVersion(5, 15)])
    func shutdownPastItsDeadlineCancelsEachOperationOnAnOlderKernel(version: KernelVersion) async throws {
        let executor = try Self.executor(emulating: version)
        #expect((executor.engine as? URingEngine)?.canCancelAny == false)
        let pipe = try PipePair()
        defer { pipe.close() }
        let readers = (0..<5).map { _ in Task { try await executor.read(pipe.read, upTo: 1) } }
        #expect(await waitForOperationsInFlight(executor, atLeast: 5))
        await executor.shutdown(deadline: .milliseconds(20))
        for reader in readers {
            await #expect(throws: (any Error).self) { _ = try await reader.value }
        }
        #expect(executor.operationsInFlight == 0)
    }

    /// Wake-ups between executors go through the eventfd when the kernel has no MSG_RING.
    @Test func executorsWakeEachOtherWithoutMessageRing() async throws {
        let first = try Self.executor(emulating: KernelVersion(5, 15))
        let second = try Self.executor(emulating: KernelVersion(5, 15))
        defer {
            first.shutdownGracefully()
            second.shutdownGracefully()
        }
        // Each hop resumes a task on the other executor while that one sleeps in the kernel.
        let hops = try await first.run { () async throws -> Int in
            var count = 0
            for _ in 0..<50 {
                try await second.run { try await second.nop() }
                try await first.nop()
                count += 1
            }
            return count
        }
        #expect(hops == 50)
    }

    /// bind/listen as system calls, connections() one accept at a time, messages() one receive
    /// at a time into the stream's own buffer.
    @Test(arguments: [KernelVersion(5, 15), KernelVersion(5, 19)])
    func serversWorkOnAnOlderKernel(version: KernelVersion) async throws {
        let executor = try Self.executor(emulating: version)
        defer { executor.shutdownGracefully() }
        let uring = try #require(executor.engine as? URingEngine)
        #expect(!uring.supportsBindAndListen && !uring.supportsMultishotReceive)
        #expect(uring.supportsMultishotAccept == (version >= KernelVersion(5, 19)))
        let listener = try await executor.socket()
        defer { try? listener.close() }
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        let port = boundPort(listener)
        #expect(port != 0)
        let server = startEchoServer(executor, listener: listener, connections: 6, bufferSize: 256, bufferLimit: 2)
        try await runEchoClients(executor, port: port, clients: 6, bytesEach: 3000)
        try await server.value
    }

    /// An operation the kernel's probe lacks throws a typed error naming it and its release,
    /// not the kernel's bare EINVAL; the executor stays usable.
    @Test func anOperationTheKernelLacksThrowsATypedErrorNamingItsRelease() async throws {
        let executor = try Self.executor(emulating: KernelVersion(6, 1))
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 100))
        defer { file.remove() }
        await #expect(throws: EngineError.kernelLacks(operation: "ftruncate", needs: KernelVersion(6, 9))) {
            try await executor.truncate(file.fd, length: 10)
        }
        #expect(
            EngineError.kernelLacks(operation: "ftruncate", needs: KernelVersion(6, 9)).description.contains(
                "Linux 6.9"))
        #expect(try await executor.read(file.fd, upTo: 100, offset: 0) == pattern(count: 100))
    }

    @Test func bindAndListenAsSystemCallsKeepTheExecutorsRules() async throws {
        let executor = try Self.executor(emulating: KernelVersion(6, 1))
        let socket = try await executor.socket()
        defer { try? socket.close() }
        // Cancelled before the call: nothing happens.
        let cancelled = Task {
            withUnsafeCurrentTask { $0?.cancel() }
            try await executor.bind(socket, to: .loopback(port: 0))
        }
        await #expect(throws: CancellationError.self) { try await cancelled.value }
        // A bad address is the kernel's error, typed.
        let other = try await executor.socket()
        defer { try? other.close() }
        try await executor.bind(other, to: .loopback(port: 0))
        await #expect(throws: Errno.invalidArgument) { try await executor.bind(other, to: .loopback(port: 0)) }
        executor.shutdownGracefully()
        await #expect(throws: Errno(rawValue: ESHUTDOWN)) { try await executor.listen(socket) }
    }
}

/// Executor features that older kernels lack, for the tests that exercise them.
enum ExecutorKernelFeature {
    /// `IORING_OP_MSG_RING` wake-ups between executors (5.18).
    case messageRing
    /// `messages()` on a provided-buffer ring with multishot receive (6.0).
    case multishotReceive
    /// An io_uring operation (its release is in `Opcode.introduced`).
    case opcode(Opcode)
}

extension RingExecutor {
    /// Whether this executor's kernel offers `op` (no skip: for tests that check both ways).
    func kernelOffers(_ op: Opcode) -> Bool { (engine as? URingEngine)?.offers(op) ?? false }

    /// The error an awaited `op` throws on this executor's kernel when it lacks `op`, else nil.
    func errorForLacking(_ op: Opcode) -> EngineError? {
        guard let uring = engine as? URingEngine, !uring.offers(op), let needs = op.introduced else { return nil }
        return .kernelLacks(operation: RingExecutor.operationName(op), needs: needs)
    }

    /// True when this executor's kernel offers `feature`; otherwise the test (case) is reported
    /// as skipped for the `kernel` need, naming the release that adds it.
    func kernelOffers(_ feature: ExecutorKernelFeature, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        let uring = engine as? URingEngine
        let (offered, what): (Bool, String) =
            switch feature {
            case .messageRing: (uring?.canMessage ?? false, "MSG_RING wake-ups need Linux 5.18")
            case .multishotReceive:
                (uring?.supportsMultishotReceive ?? false, "multishot receive into a buffer ring needs Linux 6.0")
            case .opcode(let op): (uring?.offers(op) ?? false, "\(op) needs Linux \(op.introduced?.description ?? "?")")
            }
        if !offered { skip(.kernel, what, sourceLocation: sourceLocation) }
        return offered
    }
}
