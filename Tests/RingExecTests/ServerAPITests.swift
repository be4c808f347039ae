import Glibc
import Ring
import SystemPackage
import Testing

@testable import RingExec

/// What a stream's consumer saw, set once by the task iterating it.
final class StreamOutcome: @unchecked Sendable {
    private let lock = Lock()
    // Under `lock`.
    private var value: Result<Int, any Error>?

    func set(_ result: Result<Int, any Error>) { lock.withLock { value = result } }
    var result: Result<Int, any Error>? { lock.withLock { value } }
}

/// Iterates `stream` in a task of its own, closing what it yields, and records how it ended.
func consume(_ stream: AsyncThrowingStream<FileDescriptor, any Error>) -> (Task<Void, Never>, StreamOutcome) {
    let outcome = StreamOutcome()
    let task = Task {
        var count = 0
        do {
            for try await connection in stream {
                count += 1
                try? connection.close()
            }
            outcome.set(.success(count))
        } catch {
            outcome.set(.failure(error))
        }
    }
    return (task, outcome)
}

/// Issue 18: what a server needs from the network API — socket options, addresses, an accept
/// that names the peer, and a `connections()` stream that lives through a busy server's errors
/// and ends cleanly when its listener goes.
@Suite(.timeLimit(.minutes(1))) struct ServerAPITests {
    /// A listener on 127.0.0.1, port chosen by the kernel.
    static func listener(_ executor: RingExecutor) async throws -> FileDescriptor {
        let listener = try await executor.socket()
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        return listener
    }

    /// Each typed option reads back what was set; buffer sizes come back doubled, as Linux
    /// reports them.
    @Test func socketOptionsRoundTrip() async throws {
        let executor = try RingExecutor(entries: 8)
        defer { executor.shutdownGracefully() }
        let socket = try await executor.socket()
        defer { try? socket.close() }
        for option in [SocketOption<Bool>.reuseAddress, .reusePort, .keepAlive, .noDelay] {
            #expect(try await executor.option(option, of: socket) == false)
            try await executor.setOption(option, to: true, on: socket)
            #expect(try await executor.option(option, of: socket) == true)
        }
        try await executor.setOption(.noDelay, to: false, on: socket)
        #expect(try await executor.option(.noDelay, of: socket) == false)
        try await executor.setOption(.receiveBufferSize, to: 65536, on: socket)
        #expect(try await executor.option(.receiveBufferSize, of: socket) == 2 * 65536)
        try await executor.setOption(.sendBufferSize, to: 65536, on: socket)
        #expect(try await executor.option(.sendBufferSize, of: socket) == 2 * 65536)
        // A raw option by level and name: SO_TYPE.
        #expect(try await executor.option(SocketOption<Int32>(level: SOL_SOCKET, name: SO_TYPE), of: socket) == 1)
    }

    /// The kernel's refusals are `Errno`s; after shutdown every call throws `ESHUTDOWN`.
    @Test func socketOptionErrorsAreTyped() async throws {
        let executor = try RingExecutor(entries: 8)
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { for end in ends { Glibc.close(end) } }
        let notASocket = FileDescriptor(rawValue: ends[0])
        await #expect(throws: Errno.notSocket) { try await executor.setOption(.noDelay, to: true, on: notASocket) }
        await #expect(throws: Errno.notSocket) { _ = try await executor.localAddress(of: notASocket) }
        let unix = try await executor.socket(domain: AF_UNIX)
        defer { try? unix.close() }
        await #expect(throws: Errno.socketNotConnected) { _ = try await executor.peerAddress(of: unix) }
        executor.shutdownGracefully()
        await #expect(throws: Errno(rawValue: ESHUTDOWN)) {
            try await executor.setOption(.keepAlive, to: true, on: unix)
        }
        await #expect(throws: Errno(rawValue: ESHUTDOWN)) { _ = try await executor.localAddress(of: unix) }
    }

    /// Binding to port 0 is usable: `localAddress` names the port; both ends agree on who is
    /// who, and `acceptWithPeer` names the client as `getpeername` does.
    @Test func addressesAndAcceptWithPeer() async throws {
        let executor = try RingExecutor(entries: 8)
        defer { executor.shutdownGracefully() }
        let listener = try await Self.listener(executor)
        defer { try? listener.close() }
        let local = try await executor.localAddress(of: listener)
        #expect(local.port == boundPort(listener) && local.port != 0)
        #expect(local.description == "127.0.0.1:\(local.port)")
        let client = try await executor.socket()
        defer { try? client.close() }
        try await executor.connect(client, to: local)
        let (server, peer) = try await executor.acceptWithPeer(listener)
        defer { try? server.close() }
        let clientAddress = try await executor.localAddress(of: client)
        #expect(peer.description == clientAddress.description)
        #expect(peer.length == socklen_t(MemoryLayout<sockaddr_in>.size))
        #expect(try await executor.peerAddress(of: server).description == clientAddress.description)
        #expect(try await executor.peerAddress(of: client).description == local.description)
    }

    /// A cancelled `acceptWithPeer` waits for the kernel's completion before it frees the
    /// address memory, and throws `CancellationError`; the listener still works afterwards.
    @Test func acceptWithPeerCancelled() async throws {
        let executor = try RingExecutor(entries: 8)
        defer { executor.shutdownGracefully() }
        let listener = try await Self.listener(executor)
        defer { try? listener.close() }
        let waiting = Task { try await executor.acceptWithPeer(listener) }
        #expect(await waitForOperationsInFlight(executor, atLeast: 1))
        waiting.cancel()
        await #expect(throws: CancellationError.self) { _ = try await waiting.value }
        let client = try await executor.socket()
        defer { try? client.close() }
        try await executor.connect(client, to: try await executor.localAddress(of: listener))
        let (server, peer) = try await executor.acceptWithPeer(listener)
        try? server.close()
        #expect(peer.port == boundPort(client))
    }

    /// Old code: `shutdown(2)` of the listener ended the stream with `EINVAL`. Now it finishes
    /// without an error, after handing out what it accepted.
    @Test(arguments: [Int32(SHUT_RD), Int32(SHUT_RDWR)])
    func shuttingDownTheListenerFinishesConnections(how: Int32) async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let listener = try await Self.listener(executor)
        defer { try? listener.close() }
        let (task, outcome) = consume(executor.connections(listener))
        let client = try await executor.socket()
        defer { try? client.close() }
        try await executor.connect(client, to: try await executor.localAddress(of: listener))
        #expect(await waitForOperationsInFlight(executor, atLeast: 1))
        try await executor.shutdown(listener, how: how)
        let ended = await waitUntil { outcome.result != nil }
        #expect(ended)
        if !ended { task.cancel() }
        await task.value
        switch outcome.result {
        case .success(let count): #expect(count <= 1)
        case .failure(let error): Issue.record("the stream ended with \(error)")
        case nil: break
        }
    }

    /// Old code: closing the listener through the executor left the stream waiting for ever
    /// (the pending accept holds the socket). Now it finishes without an error.
    @Test func closingTheListenerThroughTheExecutorFinishesConnections() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let listener = try await Self.listener(executor)
        let (task, outcome) = consume(executor.connections(listener))
        #expect(await waitForOperationsInFlight(executor, atLeast: 1))
        try await executor.close(listener)
        let ended = await waitUntil { outcome.result != nil }
        #expect(ended)
        if !ended { task.cancel() }
        await task.value
        if case .failure(let error) = outcome.result { Issue.record("the stream ended with \(error)") }
        // The request is gone too: nothing left in flight.
        #expect(await waitUntil { executor.operationsInFlight == 0 })
    }

    /// A socket that is not listening ends the stream at once with `EINVAL`; what is not a
    /// socket, with `ENOTSOCK`.
    @Test func connectionsOnANonListeningSocketFails() async throws {
        let executor = try RingExecutor(entries: 8)
        defer { executor.shutdownGracefully() }
        let socket = try await executor.socket()
        defer { try? socket.close() }
        await #expect(throws: Errno.invalidArgument) { for try await _ in executor.connections(socket) {} }
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { for end in ends { Glibc.close(end) } }
        await #expect(throws: Errno.notSocket) {
            for try await _ in executor.connections(FileDescriptor(rawValue: ends[0])) {}
        }
    }

    /// Old code: one `EMFILE` ended the stream for good. Now it is reported, the accept is
    /// re-armed after a pause, and the waiting connection arrives once descriptors are to be
    /// had. In a child process: the lowered descriptor limit would hit the other tests too.
    @Test func connectionsLiveThroughEMFILE() async throws {
        guard let helper = ExampleTests.binary("ring-fault-helper") else { return }
        let (status, text) = try await runProcess(helper, ["--accept-emfile"])
        #expect(status == 0)
        let line = text.split(separator: "\n").last.map(String.init) ?? ""
        #expect(line.hasPrefix("emfile=") && line.hasSuffix(" accepted=1"), "helper said: \(text)")
    }

    /// Shutting the executor down while the stream waits to re-arm after `EMFILE` (its timer
    /// pending, or the accept failing again) finishes the stream without an error.
    @Test func shutdownWhileBackingOffFinishesConnections() async throws {
        guard let helper = ExampleTests.binary("ring-fault-helper") else { return }
        let (status, text) = try await runProcess(helper, ["--accept-emfile-shutdown"])
        #expect(status == 0)
        let line = text.split(separator: "\n").last.map(String.init) ?? ""
        #expect(line.hasPrefix("ended=clean emfile="), "helper said: \(text)")
    }

    /// The errors a busy server lives through are retried; others end the stream.
    @Test func transientAcceptErrors() {
        for code in [EMFILE, ENFILE, ENOBUFS, ENOMEM, ECONNABORTED, EPERM, EAGAIN, EINTR] {
            #expect(RingExecutor.transientAcceptErrors.contains(Errno(rawValue: code)))
        }
        #expect(!RingExecutor.transientAcceptErrors.contains(.badFileDescriptor))
        #expect(!RingExecutor.transientAcceptErrors.contains(.invalidArgument))
    }
}
