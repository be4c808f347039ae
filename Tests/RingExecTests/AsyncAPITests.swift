import Glibc
import Ring
import RingExec
import SystemPackage
import Testing

/// The io_uring-only parts of the async API against the real kernel.
@Suite(.timeLimit(.minutes(3))) struct AsyncAPITests {
    @Test func filesByName() async throws {
        let executor = try RingExecutor(entries: 32)
        defer { executor.shutdownGracefully() }
        guard executor.kernelOffers(.opcode(.mkdirat)), executor.kernelOffers(.opcode(.renameat)) else { return }
        // Unique per run: a directory left by an earlier failed run (or a reused pid) must not collide.
        let directory = FilePath("/tmp/ringexec-names-\(getpid())-\(UInt32.random(in: 0...UInt32.max))")
        try await executor.makeDirectory(directory)
        let dirStatus = try await executor.status(of: directory)
        #expect(dirStatus.isDirectory)
        await #expect(throws: Errno.fileExists) { try await executor.makeDirectory(directory) }

        let first = directory.appending("a")
        let fd = try await executor.open(
            first, .readWrite, options: [.create, .exclusiveCreate], permissions: .ownerReadWrite)
        #expect(try await executor.write(fd, bytes: pattern(count: 5000), offset: nil) == 5000)
        // The file position moved.
        #expect(try await executor.write(fd, bytes: pattern(count: 10, from: 5000), offset: nil) == 10)
        try await executor.fallocate(fd, offset: 0, length: 1 << 20)
        #expect(try await executor.status(of: fd).size == 1 << 20)
        if executor.kernelOffers(.ftruncate) {
            try await executor.truncate(fd, length: 5010)
        } else {
            // Linux < 6.9: the typed error (ExecutorBadInputTests checks it); the rest still runs.
            #expect(Glibc.ftruncate(fd.rawValue, 5010) == 0)
        }
        let status = try await executor.status(of: fd)
        #expect(status.size == 5010)
        #expect(status.isRegularFile)
        #expect(try await executor.read(fd, upTo: 6000, offset: 0) == pattern(count: 5010))
        try await executor.close(fd)

        let second = directory.appending("b")
        try await executor.rename(first, to: second)
        await #expect(throws: Errno.noSuchFileOrDirectory) { _ = try await executor.status(of: first) }
        #expect(try await executor.status(of: second).size == 5010)
        await #expect(throws: Errno.directoryNotEmpty) { try await executor.remove(directory, directory: true) }
        try await executor.remove(second)
        try await executor.remove(directory, directory: true)
        await #expect(throws: Errno.noSuchFileOrDirectory) { _ = try await executor.open(second, .readOnly) }
        // openat2 refuses to leave the directory with RESOLVE_BENEATH (0x08).
        let root = try FileDescriptor.open("/tmp", .readOnly, options: .directory)
        defer { try? root.close() }
        await #expect(throws: Errno.improperLink) {
            _ = try await executor.open("../etc/passwd", how: OpenHow(flags: O_RDONLY, resolve: 0x08), relativeTo: root)
        }
        // Reads on a directory fail cleanly.
        await #expect(throws: Errno.isDirectory) { _ = try await executor.read(root, upTo: 16, offset: 0) }
    }

    @Test func spliceThroughAPipe() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let source = try TemporaryFile(contents: pattern(count: 40_000))
        defer { source.remove() }
        let target = try TemporaryFile()
        defer { target.remove() }
        let pipe = try PipePair()
        defer { pipe.close() }
        var copied = 0
        while copied < 40_000 {
            let moved = try await executor.splice(
                from: source.fd, offset: UInt64(copied), to: pipe.write, length: 40_000 - copied)
            #expect(moved > 0)
            var drained = 0
            while drained < moved {
                drained += try await executor.splice(
                    from: pipe.read, offset: nil, to: target.fd, offset: UInt64(copied + drained),
                    length: moved - drained)
            }
            copied += moved
        }
        #expect(try await executor.read(target.fd, upTo: 50_000, offset: 0) == pattern(count: 40_000))
    }

    @Test func linkedChainWriteThenFsync() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile()
        defer { file.remove() }
        let data = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
        defer { data.deallocate() }
        data.copyBytes(from: pattern(count: 4096))
        let results = try await executor.submitChain([
            .write(file.fd, from: UnsafeRawBufferPointer(data), offset: 0).flags(.link), .fsync(file.fd),
        ])
        #expect(results == [4096, 0])
        // A chain failing half way: the rest is cancelled, every result reported.
        let failed = try await executor.submitChain([
            .nop().flags(.link), .read(FileDescriptor(rawValue: -1), into: data, offset: 0).flags(.link), .nop(),
        ])
        #expect(failed == [0, -EBADF, -ECANCELED])
        await #expect(throws: Errno.invalidArgument) { _ = try await executor.submitChain([]) }
    }

    @Test func timeoutsOnOperations() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let pipe = try PipePair()
        defer { pipe.close() }
        let start = ContinuousClock.now
        await #expect(throws: Errno.timedOut) {
            try await executor.withTimeout(.milliseconds(30)) { _ = try await executor.read(pipe.read, upTo: 8) }
        }
        #expect(ContinuousClock.now - start >= .milliseconds(25))
        // Completed in time: the result, not a timeout.
        _ = try pipe.write.writeAll([UInt8(42)])
        let bytes = try await executor.withTimeout(.seconds(5)) { try await executor.read(pipe.read, upTo: 8) }
        #expect(bytes == [42])
        // Nested scopes keep the earlier deadline.
        await #expect(throws: Errno.timedOut) {
            try await executor.withTimeout(.milliseconds(20)) {
                try await executor.withTimeout(.seconds(30)) { _ = try await executor.read(pipe.read, upTo: 8) }
            }
        }
        // Zero and negative sleeps return at once; sleep(until:) honours the deadline.
        try await executor.sleep(for: .zero)
        try await executor.sleep(for: .seconds(-1))
        let until = ContinuousClock.now + .milliseconds(20)
        try await executor.sleep(until: until)
        #expect(ContinuousClock.now >= until)
    }

    @Test func completionQueueFlood() async throws {
        // 2 SQ entries -> an 8-entry CQ; 5,000 concurrent NOPs overflow it constantly.
        let executor = try RingExecutor(entries: 2)
        defer { executor.shutdownGracefully() }
        let total = try await executor.run { () async throws -> Int in
            try await withThrowingTaskGroup(of: Int.self) { group in
                for _ in 0..<5_000 {
                    group.addTask {
                        try await executor.nop(); return 1
                    }
                }
                return try await group.reduce(0, +)
            }
        }
        #expect(total == 5_000)
    }

    @Test func echoOverTCPWithMultishotStreams() async throws {
        let executor = try RingExecutor(entries: 64)
        defer { executor.shutdownGracefully() }
        let listener = try await executor.socket()
        defer { try? listener.close() }
        var one: Int32 = 1
        setsockopt(listener.rawValue, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(4))
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        let port = boundPort(listener)
        #expect(port != 0)

        // Server: one multishot accept; each connection echoes through a multishot receive.
        let server = startEchoServer(executor, listener: listener, connections: 20, bufferSize: 512, bufferCount: 8)
        // 20 clients, each sends 10 KiB in pieces and reads back every byte.
        try await runEchoClients(executor, port: port, clients: 20, bytesEach: 10_240)
        try await server.value
    }

    @Test func cancelledMultishotAcceptEndsTheStream() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let listener = try await executor.socket()
        defer { try? listener.close() }
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        let acceptor = Task { () async throws -> Int in
            var count = 0
            for try await connection in executor.connections(listener) {
                try? connection.close()
                count += 1
            }
            return count
        }
        #expect(
            await waitForOperationsInFlight(executor, atLeast: 1),
            "the multishot accept is armed before it is cancelled")
        acceptor.cancel()
        let result = await acceptor.result
        if case .success(let count) = result { #expect(count == 0) }
        // The listener still works for a plain accept.
        let client = try await executor.socket()
        defer { try? client.close() }
        try await executor.connect(client, to: .loopback(port: boundPort(listener)))
        let server = try await executor.accept(listener)
        try? server.close()
    }

    @Test func socketErrorsAreTyped() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let socket = try await executor.socket()
        defer { try? socket.close() }
        // Nothing listens on port 1 of loopback.
        await #expect(throws: Errno.connectionRefused) { try await executor.connect(socket, to: .loopback(port: 1)) }
        #expect(throws: Errno.invalidArgument) { _ = try SocketAddress(host: "not an address", port: 1) }
        #expect(try SocketAddress(host: "::1", port: 80).description == "[::1]:80")
        // A peer that resets: the reader sees ECONNRESET or EOF, never a hang.
        let listener = try await executor.socket()
        defer { try? listener.close() }
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        let client = try await executor.socket()
        defer { try? client.close() }
        try await executor.connect(client, to: .loopback(port: boundPort(listener)))
        let peer = try await executor.accept(listener)
        var linger = (Int32(1), Int32(0))  // struct linger { on, 0 s }: close sends RST
        setsockopt(peer.rawValue, SOL_SOCKET, SO_LINGER, &linger, socklen_t(8))
        try await executor.send(peer, bytes: [1])
        try peer.close()
        var sawReset = false
        for _ in 0..<4 {
            do {
                if try await executor.receive(client, upTo: 16).isEmpty { break }
            } catch let error as Errno {
                #expect(error == .connectionReset)
                sawReset = true
                break
            }
        }
        #expect(sawReset)
    }
}

/// Accepts `connections` connections from `listener` (then ends the stream, which cancels the
/// accept) and echoes each through a `messages()` stream until its peer closes.
func startEchoServer(
    _ executor: RingExecutor, listener: FileDescriptor, connections: Int, bufferSize: Int, bufferCount: Int = 64,
    bufferLimit: Int = 64
) -> Task<Void, any Error> {
    Task {
        try await withThrowingTaskGroup(of: Void.self) { group in
            var accepted = 0
            for try await connection in executor.connections(listener, bufferLimit: bufferLimit) {
                group.addTask {
                    defer { try? connection.close() }
                    for try await message in try await executor.messages(
                        connection, bufferSize: bufferSize, bufferCount: bufferCount, bufferLimit: bufferLimit)
                    {
                        try await executor.send(connection, bytes: message)
                    }
                }
                accepted += 1
                if accepted == connections { break }
            }
            try await group.waitForAll()
        }
    }
}

/// `clients` connections to `port` on loopback, each sending `bytesEach` bytes of the pattern,
/// shutting down its write side and reading everything back; expects every echo to match.
func runEchoClients(_ executor: RingExecutor, port: UInt16, clients: Int, bytesEach: Int) async throws {
    try await withThrowingTaskGroup(of: Bool.self) { group in
        for client in 0..<clients {
            group.addTask {
                let socket = try await executor.socket()
                defer { try? socket.close() }
                try await executor.connect(socket, to: .loopback(port: port))
                let payload = pattern(count: bytesEach, from: client * bytesEach)
                try await executor.send(socket, bytes: payload)
                try await executor.shutdown(socket)
                var echoed: [UInt8] = []
                while true {
                    let chunk = try await executor.receive(socket, upTo: 4096)
                    if chunk.isEmpty { break }
                    echoed += chunk
                }
                return echoed == payload
            }
        }
        for try await ok in group { #expect(ok) }
    }
}

func boundPort(_ fd: FileDescriptor) -> UInt16 {
    var address = sockaddr_in()
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd.rawValue, $0, &length) }
    }
    return UInt16(bigEndian: address.sin_port)
}

@Suite(.timeLimit(.minutes(3))) struct FixedBufferTests {
    @Test func fixedBuffersRoundTripDirectIO() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let pool = try await executor.registerFixedBuffers(count: 4, size: 8192)
        let file = try TemporaryFile(direct: true)
        defer { file.remove() }
        // Buffers are non-copyable: four named owners instead of an array.
        guard let b0 = pool.take(), let b1 = pool.take(), let b2 = pool.take(), let b3 = pool.take() else {
            Issue.record("four buffers expected")
            return
        }
        #expect(pool.available == 0, "all four are checked out")
        func write(_ buffer: borrowing FixedBuffers.Buffer) async throws {
            buffer.bytes.copyBytes(from: pattern(count: 8192, from: buffer.index * 8192))
            #expect(
                try await executor.write(file.fd, from: buffer, count: 8192, offset: UInt64(buffer.index * 8192))
                    == 8192)
            buffer.bytes.initializeMemory(as: UInt8.self, repeating: 0)
        }
        func read(_ buffer: borrowing FixedBuffers.Buffer) async throws {
            #expect(try await executor.read(file.fd, into: buffer, offset: UInt64(buffer.index * 8192)) == 8192)
            #expect(Array(buffer.bytes) == pattern(count: 8192, from: buffer.index * 8192))
        }
        try await write(b0)
        try await write(b1)
        try await write(b2)
        try await write(b3)
        try await read(b3)
        try await read(b2)
        try await read(b1)
        try await read(b0)
        try pool.give(b3)
        #expect(pool.available == 1)
        _ = consume b0  // dropping a buffer gives it back too
        _ = consume b1
        _ = consume b2
        #expect(pool.available == 4)
        // A second table on the same ring is refused.
        await #expect(throws: Errno.resourceBusy) { _ = try await executor.registerFixedBuffers(count: 1, size: 4096) }
    }
}
