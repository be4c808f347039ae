import Glibc
import Ring
import SystemPackage
import Testing

@testable import RingExec

/// Vectored and zero-copy sends (`send(_:buffers:to:flags:)`, `sendZeroCopy`).
@Suite(.timeLimit(.minutes(1))) struct SendingTests {
    /// `bytes` in memory the test frees.
    static func allocated(_ bytes: [UInt8]) -> UnsafeMutableRawBufferPointer {
        let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: max(bytes.count, 1), alignment: 16)
        memory.copyBytes(from: bytes)
        return UnsafeMutableRawBufferPointer(rebasing: memory[..<bytes.count])
    }

    /// Receives exactly `count` bytes (fewer if the peer closes first).
    static func receive(_ count: Int, from fd: FileDescriptor, on executor: RingExecutor) async throws -> [UInt8] {
        var received: [UInt8] = []
        while received.count < count {
            let chunk = try await executor.receive(fd, upTo: count - received.count)
            if chunk.isEmpty { break }
            received += chunk
        }
        return received
    }

    /// Makes `fd`'s sends wait: a small send buffer, filled (and the peer's receive buffer
    /// behind it) until the socket has stayed unwritable for 200 ms.
    static func fill(_ fd: FileDescriptor) {
        var size: Int32 = 4096
        setsockopt(fd.rawValue, SOL_SOCKET, SO_SNDBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        let chunk = [UInt8](repeating: 0x5A, count: 65536)
        while true {
            while chunk.withUnsafeBytes({ send(fd.rawValue, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }) > 0 {}
            var entry = pollfd(fd: fd.rawValue, events: Int16(POLLOUT), revents: 0)
            if poll(&entry, 1, 200) == 0 { return }
        }
    }

    @Test(arguments: Transport.allCases)
    func aVectoredSendDeliversEveryBufferInOrder(transport: Transport) async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let (server, client) = try await transport.pair(executor)
        defer { try? server.close() }
        defer { try? client.close() }
        let parts = [Array("first, ".utf8), [], Array("second, ".utf8), Array(repeating: 0x41, count: 70_000)]
        let buffers = parts.map(Self.allocated)
        defer { buffers.forEach { $0.deallocate() } }
        let total = parts.reduce(0) { $0 + $1.count }
        async let received = Self.receive(total, from: server, on: executor)
        var sent = 0
        while sent < total {  // a stream socket may take less than everything: resend the rest
            var skip = sent
            let rest = buffers.compactMap { buffer -> UnsafeRawBufferPointer? in
                defer { skip = max(0, skip - buffer.count) }
                return skip >= buffer.count ? nil : UnsafeRawBufferPointer(rebasing: buffer[skip...])
            }
            sent += try await executor.send(client, buffers: rest)
        }
        #expect(try await received == parts.flatMap { $0 })
    }

    /// With a destination, one vectored send is one datagram to that address.
    @Test func aVectoredSendToAnAddressIsOneDatagramThere() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let receiver = try await executor.socket(type: Int32(SOCK_DGRAM.rawValue))
        defer { try? receiver.close() }
        try await executor.bind(receiver, to: .loopback(port: 0))
        let sender = try await executor.socket(type: Int32(SOCK_DGRAM.rawValue))
        defer { try? sender.close() }
        let parts = [Array("one ".utf8), Array("datagram".utf8)]
        let buffers = parts.map(Self.allocated)
        defer { buffers.forEach { $0.deallocate() } }
        let sent = try await executor.send(
            sender, buffers: buffers.map { UnsafeRawBufferPointer($0) }, to: .loopback(port: boundPort(receiver)))
        #expect(sent == 12)
        #expect(try await executor.receive(receiver, upTo: 64) == Array("one datagram".utf8))
    }

    /// The result carries what only the notification says (whether the kernel copied), so the
    /// call cannot have returned before it; and the executor has nothing left in flight.
    @Test func aZeroCopySendReturnsOnlyAfterTheKernelsNotification() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        guard executor.kernelOffers(.opcode(.sendZC)) else { return }
        let (server, client) = try await Transport.tcp.pair(executor)
        defer { try? server.close() }
        defer { try? client.close() }
        let bytes = (0..<(256 << 10)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let buffer = Self.allocated(bytes)
        defer { buffer.deallocate() }
        async let received = Self.receive(bytes.count, from: server, on: executor)
        var sent = 0
        while sent < bytes.count {
            let outcome = try await executor.sendZeroCopy(
                client, from: UnsafeRawBufferPointer(rebasing: buffer[sent...]))
            #expect(outcome.bytesSent > 0)
            if executor.uringEngine?.reportsZeroCopyUsage == true {
                #expect(outcome.copied != nil, "the call returned without the notification")
            } else {
                #expect(outcome.copied == nil)
            }
            #expect(await executor.inFlightOperations().filter { $0.operation == "send_zc" }.isEmpty)
            sent += outcome.bytesSent
        }
        #expect(try await received == bytes)
    }

    /// Unix sockets cannot send zero-copy: the kernel's EOPNOTSUPP comes back (with its
    /// notification: nothing is left in flight) and the executor carries on.
    @Test func aZeroCopySendOnAUnixSocketIsNotSupportedAndLosesNothing() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        guard executor.kernelOffers(.opcode(.sendZC)) else { return }
        let (server, client) = try socketPair()
        defer { try? server.close() }
        defer { try? client.close() }
        let buffer = Self.allocated(Array("hello".utf8))
        defer { buffer.deallocate() }
        await #expect(throws: Errno.notSupported) {
            try await executor.sendZeroCopy(client, from: UnsafeRawBufferPointer(buffer))
        }
        #expect(await executor.inFlightOperations().isEmpty)
        try await executor.nop()
    }

    /// A send waiting for room in a full socket, cancelled: the call ends with CancellationError
    /// and its record has left the executor (the send and its notification both reaped; which
    /// of the two the call waits for is pinned by the test above).
    @Test func aCancelledZeroCopySendEndsWithCancellationAndLeavesNothingInFlight() async throws {
        try await Self.withAFullConnection { executor, client in
            let sending = Task {
                // The task owns the buffer and frees it when the send returns, as callers will.
                let buffer = Self.allocated(Array(repeating: 0x33, count: 65536))
                defer { buffer.deallocate() }
                return try await executor.sendZeroCopy(client, from: UnsafeRawBufferPointer(buffer))
            }
            #expect(await waitForOperationsInFlight(executor, atLeast: 1))
            sending.cancel()
            let outcome = await sending.result
            #expect(throws: CancellationError.self) { try outcome.get() }
        }
    }

    @Test func aZeroCopySendInsideWithTimeoutTimesOutAndLeavesNothingInFlight() async throws {
        try await Self.withAFullConnection { executor, client in
            let buffer = Self.allocated(Array(repeating: 0x44, count: 65536))
            defer { buffer.deallocate() }
            await #expect(throws: Errno.timedOut) {
                try await executor.withTimeout(.milliseconds(50)) {
                    try await executor.sendZeroCopy(client, from: UnsafeRawBufferPointer(buffer))
                }
            }
        }
    }

    /// Runs `body` with an executor offering SEND_ZC and the client end of a TCP connection
    /// whose sends wait (`fill`); then checks that nothing is left in flight.
    static func withAFullConnection(
        _ body: (RingExecutor, FileDescriptor) async throws -> Void
    ) async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        guard executor.kernelOffers(.opcode(.sendZC)) else { return }
        let (server, client) = try await Transport.tcp.pair(executor)
        defer { try? server.close() }
        defer { try? client.close() }
        Self.fill(client)
        try await body(executor, client)
        #expect(await executor.inFlightOperations().isEmpty)
    }

    /// Linux 6.1 has SEND_ZC but no usage report: the send works and says it cannot tell.
    @Test func beforeLinux62AZeroCopySendCannotSayWhetherItCopied() async throws {
        let executor = try KernelFallbackTests.executor(emulating: KernelVersion(6, 1))
        defer { executor.shutdownGracefully() }
        guard executor.kernelOffers(.opcode(.sendZC)) else { return }
        let (server, client) = try await Transport.tcp.pair(executor)
        defer { try? server.close() }
        defer { try? client.close() }
        let buffer = Self.allocated(Array("zero copy".utf8))
        defer { buffer.deallocate() }
        let outcome = try await executor.sendZeroCopy(client, from: UnsafeRawBufferPointer(buffer))
        #expect(outcome == ZeroCopySend(bytesSent: 9, copied: nil))
        #expect(try await Self.receive(9, from: server, on: executor) == Array("zero copy".utf8))
    }

    @Test(arguments: [EngineKind.libaio, .posixAIO])
    func theAIOEnginesRefuseVectoredAndZeroCopySends(engine: EngineKind) async throws {
        guard let executor = try makeExecutor(engine) else { return }
        defer { executor.shutdownGracefully() }
        let (server, client) = try socketPair()
        defer { try? server.close() }
        defer { try? client.close() }
        let buffer = Self.allocated(Array("x".utf8))
        defer { buffer.deallocate() }
        await #expect(throws: EngineError.self) {
            try await executor.send(client, buffers: [UnsafeRawBufferPointer(buffer)])
        }
        await #expect(throws: EngineError.self) {
            try await executor.sendZeroCopy(client, from: UnsafeRawBufferPointer(buffer))
        }
    }
}
