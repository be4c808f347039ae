import Glibc
import Ring
import SystemPackage
import Testing

@testable import RingExec

/// The descriptors of this process that are TCP sockets bound to `localPort` and connected to
/// one of `peerPorts` (the server side of our test's connections; other tests running in
/// parallel open their own descriptors, so counting all of /proc/self/fd would be flaky).
func serverSideSockets(localPort: UInt16, peerPorts: Set<UInt16>) -> [Int32] {
    guard let directory = opendir("/proc/self/fd") else { return [] }
    defer { closedir(directory) }
    var numbers: [Int32] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) {
            String(cString: $0.bindMemory(to: CChar.self).baseAddress!)
        }
        if let fd = Int32(name) { numbers.append(fd) }
    }
    return numbers.filter { fd in
        guard let local = port(of: fd, peer: false), let peer = port(of: fd, peer: true) else { return false }
        return local == localPort && peerPorts.contains(peer)
    }
}

private func port(of fd: Int32, peer: Bool) -> UInt16? {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    let status = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            peer ? getpeername(fd, $0, &length) : getsockname(fd, $0, &length)
        }
    }
    guard status == 0, address.sin_family == sa_family_t(AF_INET) else { return nil }
    return UInt16(bigEndian: address.sin_port)
}

/// Polls `condition` (yielding in between) until it holds; the test's time limit bounds it.
func pollUntil(_ condition: () -> Bool) async throws {
    while !condition() {
        try Task.checkCancellation()
        await Task.yield()
    }
}

/// Streams own what they have not handed out, and hold a bounded amount (issue 13, item 10).
@Suite(.timeLimit(.minutes(1))) struct StreamOwnershipTests {
    /// Under the old code the nine connections buffered in the stream when the consumer broke
    /// were never closed: their clients waited for EOF until the deadline (timedOut), and nine
    /// server-side descriptors stayed open.
    @Test func connectionsBufferedWhenTheConsumerBreaksAreClosed() async throws {
        let executor = try RingExecutor(entries: 64)
        defer { executor.shutdownGracefully() }
        let listener = try await executor.socket()
        defer { try? listener.close() }
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        let listenPort = boundPort(listener)

        var clients: [FileDescriptor] = []
        defer { for client in clients { try? client.close() } }
        for _ in 0..<10 {
            let client = try await executor.socket()
            clients.append(client)
            try await executor.connect(client, to: .loopback(port: listenPort))
        }
        let clientPorts = Set(clients.map { boundPort($0) })

        var taken: FileDescriptor?
        do {
            let stream = executor.connections(listener)
            // Wait until the multishot has accepted all ten (they sit in the stream's buffer).
            try await pollUntil { serverSideSockets(localPort: listenPort, peerPorts: clientPorts).count >= 10 }
            for try await connection in stream {
                taken = connection
                break
            }
        }  // the stream is gone here: its consumer has left
        let kept = try #require(taken)
        defer { try? kept.close() }
        let keptClientPort = try #require(port(of: kept.rawValue, peer: true))

        // Every other client sees EOF, soon.
        for client in clients where boundPort(client) != keptClientPort {
            let bytes = try await executor.withTimeout(.seconds(5)) { try await executor.receive(client, upTo: 16) }
            #expect(bytes.isEmpty)
        }
        // Only the descriptor the consumer took is left on the server side.
        #expect(serverSideSockets(localPort: listenPort, peerPorts: clientPorts) == [kept.rawValue])
        #expect(executor.operationsInFlight == 0)
    }

    /// A consumer that does not keep up pauses the multishot accept (nothing in flight, the
    /// rest waits in the listen backlog) instead of collecting descriptors without bound; taking
    /// them re-arms it, and every connection arrives.
    @Test func connectionsPauseWhileTheConsumerIsBehind() async throws {
        let executor = try RingExecutor(entries: 64)
        defer { executor.shutdownGracefully() }
        let listener = try await executor.socket()
        defer { try? listener.close() }
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        let listenPort = boundPort(listener)
        var clients: [FileDescriptor] = []
        defer { for client in clients { try? client.close() } }
        func connectClients(_ count: Int) async throws {
            for _ in 0..<count {
                let client = try await executor.socket()
                clients.append(client)
                try await executor.connect(client, to: .loopback(port: listenPort))
            }
        }
        func accepted() -> Int {
            serverSideSockets(localPort: listenPort, peerPorts: Set(clients.map { boundPort($0) })).count
        }

        let stream = executor.connections(listener, bufferLimit: 2)
        // Two or three (what the kernel accepted before the cancel took effect), then a pause.
        try await connectClients(3)
        try await pollUntil { accepted() >= 2 && executor.operationsInFlight == 0 }
        let acceptedWhilePaused = accepted()
        // Seven more wait in the listen backlog while the stream is paused.
        try await connectClients(7)
        for _ in 0..<10 { try await executor.nop() }
        #expect(accepted() == acceptedWhilePaused)
        let clientPorts = Set(clients.map { boundPort($0) })

        var received: [FileDescriptor] = []
        defer { for fd in received { try? fd.close() } }
        for try await connection in stream {
            received.append(connection)
            if received.count == 10 { break }
        }
        #expect(Set(received.compactMap { port(of: $0.rawValue, peer: true) }) == clientPorts)
    }

    /// `messages()` with a slow consumer: the receive is paused once `bufferLimit` messages wait,
    /// so the rest of the data stays in the socket; every byte still arrives, in order.
    @Test func messagesPauseWhileTheConsumerIsBehind() async throws {
        let executor = try RingExecutor(entries: 64)
        defer { executor.shutdownGracefully() }
        let pair = try SocketPair()
        defer { pair.close() }
        let payload = pattern(count: 64 * 40)
        let stream = try await executor.messages(pair.a, bufferSize: 64, bufferCount: 4, bufferLimit: 4)
        _ = try payload.withUnsafeBytes { try pair.b.writeAll($0) }
        _ = Glibc.shutdown(pair.b.rawValue, Int32(SHUT_WR))
        // Paused with data left in the socket (the old stream read it all into memory).
        try await pollUntil { executor.operationsInFlight == 0 && pendingBytes(pair.a) != Int32(payload.count) }
        #expect(pendingBytes(pair.a) > 0)
        var collected: [UInt8] = []
        for try await message in stream { collected += message }
        #expect(collected == payload)
    }
}

/// Buffer group ids of `messages()` streams are allocated, not counted (issue 13, item 18).
@Suite(.timeLimit(.minutes(1))) struct BufferGroupIDTests {
    /// Under the old code the first stream took group 0 whatever was registered there, and
    /// failed with EEXIST (after 65,536 streams the counter wrapped onto live groups the same way).
    @Test func messagesSkipsAGroupAlreadyRegistered() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        // The caller's own legacy buffer group 0.
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 256, alignment: 16)
        defer { memory.deallocate() }
        #expect(await executor.submit(.provideBuffers(memory, length: 64, count: 4, group: 0, firstID: 0)) == 0)
        let pair = try SocketPair()
        defer { pair.close() }
        let stream = try await executor.messages(pair.a, bufferSize: 64, bufferCount: 4)
        _ = try pair.b.writeAll([1, 2, 3])
        _ = Glibc.shutdown(pair.b.rawValue, Int32(SHUT_WR))
        var collected: [UInt8] = []
        for try await message in stream { collected += message }
        #expect(collected == [1, 2, 3])
    }

    /// With the id range narrowed to two, the third concurrent stream gets EBUSY (not a live
    /// stream's id), and an id comes back when its stream ends.
    @Test func idsOfEndedStreamsAreReusedAndLiveOnesNeverShared() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        guard executor.kernelOffers(.multishotReceive) else { return }
        executor.bufferGroups.narrow(to: 7...8)
        let first = try SocketPair()
        defer { first.close() }
        let second = try SocketPair()
        defer { second.close() }
        let third = try SocketPair()
        defer { third.close() }

        var firstStream: AsyncThrowingStream<[UInt8], any Error>? = try await executor.messages(
            first.a, bufferSize: 64, bufferCount: 4)
        let secondStream = try await executor.messages(second.a, bufferSize: 64, bufferCount: 4)
        #expect(executor.bufferGroups.ownedCount == 2)
        await #expect(throws: Errno.resourceBusy) {
            _ = try await executor.messages(third.a, bufferSize: 64, bufferCount: 4)
        }

        firstStream = nil  // ends it: the request is cancelled, the ring released, the id freed
        _ = firstStream
        try await pollUntil { executor.bufferGroups.ownedCount == 1 }
        let thirdStream = try await executor.messages(third.a, bufferSize: 64, bufferCount: 4)

        _ = try second.b.writeAll([2, 2])
        _ = try third.b.writeAll([3, 3, 3])
        _ = Glibc.shutdown(second.b.rawValue, Int32(SHUT_WR))
        _ = Glibc.shutdown(third.b.rawValue, Int32(SHUT_WR))
        var fromSecond: [UInt8] = []
        for try await message in secondStream { fromSecond += message }
        var fromThird: [UInt8] = []
        for try await message in thirdStream { fromThird += message }
        #expect(fromSecond == [2, 2])
        #expect(fromThird == [3, 3, 3])
        try await pollUntil { executor.bufferGroups.ownedCount == 0 }
    }
}

/// A multishot request that the kernel ends with ENOBUFS before it delivered anything has no
/// buffers to work with (a group that does not exist, or one nobody refills): re-arming it would
/// spin the loop forever, so the stream ends with the error.
@Suite(.timeLimit(.minutes(1))) struct MultishotWithoutBuffersTests {
    @Test func aMultishotReceiveFromAGroupThatDoesNotExistEndsWithENOBUFS() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let pair = try SocketPair()
        defer { pair.close() }
        _ = try pair.b.writeAll([1, 2, 3])
        let stream = executor.multishot(.recv(pair.a, bufferGroup: 4242, options: .multishot))
        await #expect(throws: Errno.noBufferSpace) {
            for try await _ in stream {}
        }
        try await executor.nop()  // the loop is free
    }
}
