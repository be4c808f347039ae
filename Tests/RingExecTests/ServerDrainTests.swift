import Foundation
import Glibc
import Ring
import SystemPackage
import Testing

@testable import RingExec

/// The two ends of a connected stream socket: `.tcp` over loopback (made through the
/// executor), or a `.unix` socket pair.
enum Transport: String, CustomStringConvertible, CaseIterable {
    case tcp, unix
    var description: String { rawValue }

    /// (server end, client end); the caller closes both.
    func pair(_ executor: RingExecutor) async throws -> (FileDescriptor, FileDescriptor) {
        guard self == .tcp else { return try socketPair() }
        let listener = try await executor.socket()
        defer { try? listener.close() }
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        let client = try await executor.socket()
        try await executor.connect(client, to: .loopback(port: boundPort(listener)))
        return (try await executor.accept(listener), client)
    }
}

/// What a receive ended with, as text the tests compare.
func receiveOutcome(_ body: () async throws -> [UInt8]) async -> String {
    do {
        return "received \(try await body().count)"
    } catch is CancellationError {
        return "CancellationError"
    } catch let error as Errno {
        return "Errno \(error.rawValue)"
    } catch {
        return "\(error)"
    }
}

@Suite(.timeLimit(.minutes(1))) struct CloseCancelsPendingTests {
    /// Issue 18: a receive pending on a connection kept it open after `close(fd)` through the
    /// executor (the request holds the file), so the peer never saw FIN and the receive never
    /// ended. Now close cancels what is pending on the descriptor first: the receive ends with
    /// `Errno.canceled` and the peer reads end-of-file. Linux 5.19+ cancels by descriptor in the
    /// kernel; on an emulated 5.15 the executor cancels its own records on that descriptor.
    @Test(arguments: [nil, KernelVersion(5, 15)], Transport.allCases)
    func closeEndsAPendingReceiveAndThePeerSeesEndOfFile(kernel: KernelVersion?, transport: Transport) async throws {
        let executor = try kernel.map { try KernelFallbackTests.executor(emulating: $0) } ?? RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let (server, client) = try await transport.pair(executor)
        defer { try? client.close() }
        let receiving = Task(executorPreference: executor) {
            await receiveOutcome { try await executor.receive(server, upTo: 64) }
        }
        #expect(await waitUntil { executor.operationsInFlight >= 1 })
        try await executor.close(server)
        // The peer's view, bounded so the old behaviour fails instead of hanging.
        let peer = await receiveOutcome {
            try await executor.withTimeout(.seconds(10)) { try await executor.receive(client, upTo: 64) }
        }
        #expect(peer == "received 0", "the peer should read end-of-file")
        if peer != "received 0" { receiving.cancel() }
        #expect(await receiving.value == "Errno \(ECANCELED)")
    }

    /// Only what is pending on the closed descriptor is cancelled: a receive on another
    /// connection carries on and gets its bytes.
    @Test(arguments: [nil, KernelVersion(5, 15)])
    func closeLeavesOtherDescriptorsAlone(kernel: KernelVersion?) async throws {
        let executor = try kernel.map { try KernelFallbackTests.executor(emulating: $0) } ?? RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let (closing, closingPeer) = try socketPair()
        defer { try? closingPeer.close() }
        let (other, otherPeer) = try socketPair()
        defer { try? other.close() }
        defer { try? otherPeer.close() }
        let doomed = Task(executorPreference: executor) {
            await receiveOutcome { try await executor.receive(closing, upTo: 64) }
        }
        let survivor = Task(executorPreference: executor) {
            await receiveOutcome { try await executor.receive(other, upTo: 64) }
        }
        #expect(await waitUntil { executor.operationsInFlight >= 2 })
        try await executor.close(closing)
        #expect(await doomed.value == "Errno \(ECANCELED)")
        try await executor.send(otherPeer, bytes: Array("still here".utf8))
        #expect(await survivor.value == "received 10")
    }
}
