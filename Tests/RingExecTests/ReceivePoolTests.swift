import Glibc
import Ring
import SystemPackage
import Testing

@testable import RingExec

/// `messages(_:pool:)` streams sharing one `ReceiveBufferPool`.
@Suite(.timeLimit(.minutes(1))) struct ReceivePoolTests {
    /// Sends `payload` into `pair.b` and closes its sending side (on a thread of its own: the
    /// socket holds less than the payload until the stream reads).
    static func feed(_ pair: SocketPair, _ payload: [UInt8]) -> Task<Void, any Error> {
        Task.detached {
            _ = try payload.withUnsafeBytes { try pair.b.writeAll($0) }
            _ = Glibc.shutdown(pair.b.rawValue, Int32(SHUT_WR))
        }
    }

    static func collect(_ stream: AsyncThrowingStream<[UInt8], any Error>) async throws -> [UInt8] {
        var collected: [UInt8] = []
        for try await message in stream { collected += message }
        return collected
    }

    /// Three streams on a pool of two 64-byte buffers, all flooded at once: the pool runs dry
    /// (the kernel ends receives with ENOBUFS, counted in the statistics), the streams receive
    /// again, and every stream gets its own bytes, all of them, in order. One buffer group
    /// serves all three.
    @Test func streamsSharingADryPoolGetEveryByteInOrder() async throws {
        let executor = try RingExecutor(entries: 64)
        defer { executor.shutdownGracefully() }
        guard executor.kernelOffers(.multishotReceive) else { return }
        let pool = try await executor.makeReceiveBufferPool(bufferSize: 64, bufferCount: 2)
        let pairs = try (0..<3).map { _ in try SocketPair() }
        defer { pairs.forEach { $0.close() } }
        let payloads = (0..<3).map { pattern(count: 64 * 200, from: $0 * 1000) }
        var streams: [AsyncThrowingStream<[UInt8], any Error>] = []
        for pair in pairs { streams.append(try await executor.messages(pair.a, pool: pool, bufferLimit: 4)) }
        #expect(executor.bufferGroups.ownedCount == 1)
        let feeders = zip(pairs, payloads).map { Self.feed($0, $1) }
        try await withThrowingTaskGroup(of: (Int, [UInt8]).self) { group in
            for (index, stream) in streams.enumerated() {
                group.addTask { (index, try await Self.collect(stream)) }
            }
            for try await (index, collected) in group {
                #expect(collected == payloads[index], "stream \(index): \(collected.count) bytes")
            }
        }
        for feeder in feeders { try await feeder.value }
        let statistics = await executor.statistics()
        #expect(statistics.failuresByErrno[.noBufferSpace, default: 0] > 0, "the pool never ran dry")
    }

    /// The pool's buffer group is unregistered (its id free again) only after the pool and every
    /// stream on it are gone.
    @Test func aPoolIsReleasedAfterItAndItsStreamsAreGone() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        guard executor.kernelOffers(.multishotReceive) else { return }
        let pair = try SocketPair()
        defer { pair.close() }
        var pool: ReceiveBufferPool? = try await executor.makeReceiveBufferPool(bufferSize: 64, bufferCount: 4)
        var stream: AsyncThrowingStream<[UInt8], any Error>? = try await executor.messages(pair.a, pool: pool!)
        pool = nil
        #expect(executor.bufferGroups.ownedCount == 1, "the stream keeps the pool")
        _ = try pair.b.writeAll([1, 2, 3])
        var iterator = stream!.makeAsyncIterator()
        #expect(try await iterator.next() == [1, 2, 3])
        stream = nil
        iterator = AsyncThrowingStream<[UInt8], any Error> { nil }.makeAsyncIterator()
        try await pollUntil { executor.bufferGroups.ownedCount == 0 }
        _ = iterator
    }

    @Test func aPoolOfAnotherExecutorIsRefused() async throws {
        let first = try RingExecutor(entries: 16)
        defer { first.shutdownGracefully() }
        let second = try RingExecutor(entries: 16)
        defer { second.shutdownGracefully() }
        let pair = try SocketPair()
        defer { pair.close() }
        let pool = try await first.makeReceiveBufferPool(bufferSize: 64, bufferCount: 4)
        await #expect(throws: Errno.invalidArgument) { _ = try await second.messages(pair.a, pool: pool) }
    }

    @Test(arguments: [(0, 4), (64, 0), (64, 32769)])
    func aPoolOfNoSizeIsRefused(size: Int, count: Int) async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        await #expect(throws: Errno.invalidArgument) {
            _ = try await executor.makeReceiveBufferPool(bufferSize: size, bufferCount: count)
        }
    }

    /// Before Linux 6.0 the pool registers nothing and each stream receives on its own.
    @Test func onLinux5_15APoolsStreamsStillReceive() async throws {
        let executor = try KernelFallbackTests.executor(emulating: KernelVersion(5, 15))
        defer { executor.shutdownGracefully() }
        let pool = try await executor.makeReceiveBufferPool(bufferSize: 64, bufferCount: 4)
        #expect(executor.bufferGroups.ownedCount == 0)
        let pair = try SocketPair()
        defer { pair.close() }
        let payload = pattern(count: 64 * 20)
        let stream = try await executor.messages(pair.a, pool: pool)
        let feeder = Self.feed(pair, payload)
        #expect(try await Self.collect(stream) == payload)
        try await feeder.value
    }

    @Test(arguments: [EngineKind.libaio, .posixAIO])
    func theAIOEnginesHaveNoPools(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine) else { return }
        defer { executor.shutdownGracefully() }
        await #expect(throws: EngineError.self) { _ = try await executor.makeReceiveBufferPool() }
    }

    @Test func noPoolAfterShutdown() async throws {
        let executor = try RingExecutor(entries: 16)
        executor.shutdownGracefully()
        await #expect(throws: Errno(rawValue: ESHUTDOWN)) { _ = try await executor.makeReceiveBufferPool() }
    }
}
