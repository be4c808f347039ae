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

    /// Where the kernel has receive bundles (6.10), one receive fills several of the pool's
    /// buffers when more bytes wait than one holds: an element longer than a buffer, and every
    /// byte of two TCP connections sharing the pool, in order (their buffers go back to the
    /// ring interleaved, so a bundle's buffers are not in id order).
    @Test func aBundleFillsSeveralBuffersOfThePoolAndKeepsTheOrder() async throws {
        let executor = try RingExecutor(entries: 64)
        defer { executor.shutdownGracefully() }
        guard executor.kernelOffers(.multishotReceive) else { return }
        guard executor.uringEngine?.receivesBundles == true else {
            skip(.kernel, "receive bundles (IORING_FEAT_RECVSEND_BUNDLE) need Linux 6.10")
            return
        }
        let pool = try await executor.makeReceiveBufferPool(bufferSize: 64, bufferCount: 64)
        let pairs = [try await Transport.tcp.pair(executor), try await Transport.tcp.pair(executor)]
        defer {
            for (server, client) in pairs {
                try? server.close()
                try? client.close()
            }
        }
        let payloads = (0..<2).map { pattern(count: 64 * 300 + 17, from: $0 * 77) }
        var streams: [AsyncThrowingStream<[UInt8], any Error>] = []
        for (server, _) in pairs { streams.append(try await executor.messages(server, pool: pool, bufferLimit: 8)) }
        let senders = zip(pairs, payloads).map { pair, payload in
            Task {
                try await executor.send(pair.1, bytes: payload)
                try await executor.shutdown(pair.1)
            }
        }
        let longest = try await withThrowingTaskGroup(of: Int.self) { group in
            for (index, stream) in streams.enumerated() {
                let expected = payloads[index]
                group.addTask {
                    var collected: [UInt8] = []
                    var longest = 0
                    for try await message in stream {
                        collected += message
                        longest = max(longest, message.count)
                    }
                    #expect(collected == expected, "stream \(index): \(collected.count) bytes")
                    return longest
                }
            }
            return try await group.reduce(0) { max($0, $1) }
        }
        for sender in senders { try await sender.value }
        #expect(longest > 64, "no receive filled more than one buffer")
    }

    /// A stream nobody reads stops receiving once about `bufferLimit` buffers' worth of bytes
    /// wait in it, also when a receive is a bundle of many buffers: the rest stays in the socket.
    /// The sender writes until the socket takes no more; what left the socket for the stream is
    /// then at most `bufferLimit` buffers, one more bundle (a pool's worth) and what the kernel
    /// posted while the pause was on its way (another pool's worth). Counting elements instead
    /// let 8 bundles of a whole pool each wait (512 KiB here). Every byte arrives in order after.
    @Test func anUnreadStreamLeavesTheRestInTheSocket() async throws {
        let executor = try RingExecutor(entries: 64)
        defer { executor.shutdownGracefully() }
        guard executor.kernelOffers(.multishotReceive) else { return }
        let pool = try await executor.makeReceiveBufferPool(bufferSize: 1024, bufferCount: 64)
        let (server, client) = try await Transport.tcp.pair(executor)
        defer { try? server.close() }
        defer { try? client.close() }
        // Small socket buffers, so a few MiB are more than the connection holds.
        var size: Int32 = 64 << 10
        setsockopt(client.rawValue, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(4))
        setsockopt(server.rawValue, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(4))
        let stream = try await executor.messages(server, pool: pool, bufferLimit: 8)
        let payload = pattern(count: 4 << 20)
        var written = 0
        var settled = 0
        var taken = -1
        let deadline = ContinuousClock.now + waitLimit
        // Write until the socket takes nothing more and what the stream took stops changing.
        while settled < 5 && ContinuousClock.now < deadline && written < payload.count {
            let sent = payload[written...].withUnsafeBytes {
                Glibc.send(client.rawValue, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
            }
            if sent > 0 {
                written += sent
                settled = 0
                continue
            }
            let now = written - Int(Self.queued(server, FIONREAD)) - Int(Self.queued(client, TIOCOUTQ))
            settled = now == taken ? settled + 1 : 0
            taken = now
            try await Task.sleep(for: .milliseconds(20))
        }
        #expect(written < payload.count, "the socket took all \(written) bytes: nothing was held back")
        #expect(taken >= 0 && taken <= (8 + 64 + 64) * 1024, "the stream took \(taken) bytes before it paused")
        // Now read it all, sending the rest as room opens.
        let rest = Task.detached {
            _ = try payload[written...].withUnsafeBytes { try client.writeAll($0) }
            _ = Glibc.shutdown(client.rawValue, Int32(SHUT_WR))
        }
        #expect(try await Self.collect(stream) == payload)
        try await rest.value
    }

    /// Bytes queued on `fd`: `FIONREAD` (received, not read) or `TIOCOUTQ` (sent, not acknowledged).
    static func queued(_ fd: FileDescriptor, _ request: Int32) -> Int32 {
        var count: Int32 = 0
        return ioctl(fd.rawValue, UInt(request), &count) == 0 ? count : 0
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
