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

/// Whether `fd` reads end-of-file, waiting up to 10 s for it (with the executor gone, a plain
/// `poll`: the FIN of a close that already completed may still be on its way through loopback).
func peerReadsEndOfFile(_ fd: FileDescriptor) -> Bool {
    var entry = pollfd(fd: fd.rawValue, events: Int16(POLLIN), revents: 0)
    guard poll(&entry, 1, 10_000) == 1 else { return false }
    var byte: UInt8 = 0
    return recv(fd.rawValue, &byte, 1, Int32(MSG_DONTWAIT)) == 0
}

/// `task`'s value, or "still open after 10 s" (then `task` is cancelled and awaited): bounded,
/// so an operation that never ends fails its test instead of hanging it.
func valueWithin10Seconds(_ task: Task<String, Never>, _ executor: RingExecutor) async -> String {
    await withTaskGroup(of: String.self) { group in
        group.addTask { await task.value }
        group.addTask {
            try? await executor.sleep(for: .seconds(10))
            return "still open after 10 s"
        }
        let first = await group.next() ?? ""
        group.cancelAll()
        task.cancel()
        return first
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

    /// On Linux 5.19+ the cancel and the close go to the kernel as one linked pair: closing
    /// costs one trip to the kernel, not two (the cancel's completion, then the close), and a
    /// close that finds nothing pending still closes (the link is a hard one: the cancel's
    /// `ENOENT` does not skip it). Closing a descriptor that is not open is still `EBADF`.
    @Test func onLinux519ClosingIsOneTripToTheKernel() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        guard executor.uringEngine?.canCancelAny == true else {
            skip(.kernel, "cancelling by descriptor needs Linux 5.19")
            return
        }
        let closes = 100
        // (Whether each descriptor is closed afterwards cannot be asked here: tests running
        // beside this one may be given the same number at once. The close's success is the
        // kernel's answer.)
        let calls = try await executor.run { () async throws -> Int in
            let before = executor.systemCalls
            for _ in 0..<closes { try await executor.close(FileDescriptor(rawValue: dup(0))) }
            return executor.systemCalls - before
        }
        // Nothing was pending on them: the cancel that goes first found nothing, which is not
        // a failure (it was counted as one, ENOENT, per close).
        #expect(await executor.statistics().failed == 0)
        #expect(calls <= closes, "\(calls) io_uring_enter calls for \(closes) closes")
        await #expect(throws: Errno.badFileDescriptor) { try await executor.close(FileDescriptor(rawValue: 1_000_000)) }
    }

    /// An executor of 2 entries has room for one entry at a time: closing there takes the two
    /// steps instead of the linked pair (which it would refuse with EINVAL, closing nothing), and
    /// `readFile` reads in steps instead of its four-entry chain.
    @Test func onASmallExecutorClosingAndReadingAFileStillWork() async throws {
        let executor = try RingExecutor(entries: 2)
        defer { executor.shutdownGracefully() }
        var ends: [Int32] = [0, 0]
        #expect(pipe(&ends) == 0)
        defer { Glibc.close(ends[0]) }
        try await executor.close(FileDescriptor(rawValue: ends[1]))
        var byte: UInt8 = 0
        #expect(read(ends[0], &byte, 1) == 0, "the write end is closed: end of file")
        let file = try TemporaryFile(contents: pattern(count: 3000))
        defer { file.remove() }
        #expect(try await executor.readFile(at: FilePath(file.path), upTo: 4096) == pattern(count: 3000))
    }

    /// A close that fails is counted as a failed close, on either path: the io_uring descriptor
    /// of another ring cannot be closed through io_uring (`EBADF`), while the cancel in front of
    /// it finds nothing, which is no failure.
    @Test(arguments: [nil, KernelVersion(5, 15)])
    func aFailedCloseIsCountedAsAFailure(kernel: KernelVersion?) async throws {
        let executor = try kernel.map { try KernelFallbackTests.executor(emulating: $0) } ?? RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let other = try Ring(entries: 4)
        let otherFD = other.fd
        let before = await executor.statistics()
        await #expect(throws: Errno.badFileDescriptor) { try await executor.close(otherFD) }
        _ = consume other  // open until here
        let after = await executor.statistics()
        #expect(after.failed - before.failed == 1)
        #expect(
            after.failuresByErrno[.badFileDescriptor, default: 0]
                - before.failuresByErrno[.badFileDescriptor, default: 0] == 1)
    }

    /// Closing a listening socket through the executor ends its `connections()` stream without
    /// an error (it hung before: the pending accept held the socket open), also where each
    /// connection is accepted by its own request (an emulated 5.15).
    @Test(arguments: [nil, KernelVersion(5, 15)])
    func closingTheListenerEndsItsConnectionsStream(kernel: KernelVersion?) async throws {
        let executor = try kernel.map { try KernelFallbackTests.executor(emulating: $0) } ?? RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let listener = try await executor.socket()
        try await executor.bind(listener, to: .loopback(port: 0))
        try await executor.listen(listener)
        let accepting = Task(executorPreference: executor) { () -> String in
            do {
                var accepted = 0
                for try await connection in executor.connections(listener) {
                    accepted += 1
                    try? connection.close()
                }
                return "ended after \(accepted)"
            } catch {
                return "\(error)"
            }
        }
        #expect(await waitUntil { executor.operationsInFlight >= 1 })
        try await executor.close(listener)
        let outcome = await valueWithin10Seconds(accepting, executor)
        #expect(outcome == "ended after 0")
    }

    /// Closing is cleanup: a task that has been cancelled (a server task cancelled as a whole,
    /// closing its connections on the way out) must still release the descriptor and end what
    /// is pending on it. Before, `close` refused to start in a cancelled task and the
    /// descriptor leaked.
    @Test(arguments: [nil, KernelVersion(5, 15)])
    func aCancelledTaskStillClosesItsDescriptor(kernel: KernelVersion?) async throws {
        let executor = try kernel.map { try KernelFallbackTests.executor(emulating: $0) } ?? RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let (server, client) = try socketPair()
        defer { try? client.close() }
        let receiving = Task(executorPreference: executor) {
            await receiveOutcome { try await executor.receive(server, upTo: 64) }
        }
        #expect(await waitUntil { executor.operationsInFlight >= 1 })
        let closing = Task(executorPreference: executor) { () -> String in
            withUnsafeCurrentTask { $0?.cancel() }  // cancelled before it closes
            do {
                try await executor.close(server)
                return "closed"
            } catch {
                return "\(error)"
            }
        }
        #expect(await closing.value == "closed")
        // The socket is gone (the number may already name another test's descriptor): its peer
        // reads end-of-file.
        #expect(peerReadsEndOfFile(client))
        #expect(await receiving.value == "Errno \(ECANCELED)")
    }

    /// After shutdown the executor cannot submit, but a descriptor handed to `close` is still
    /// closed (with the system call) instead of leaking with `ESHUTDOWN`.
    @Test func closeAfterShutdownStillCloses() async throws {
        let executor = try RingExecutor(entries: 16)
        let (a, b) = try socketPair()
        defer { try? b.close() }
        await executor.shutdown()
        try await executor.close(a)
        #expect(peerReadsEndOfFile(b), "the socket is closed: its peer reads end-of-file")
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
        #expect(await valueWithin10Seconds(doomed, executor) == "Errno \(ECANCELED)")
        try await executor.send(otherPeer, bytes: Array("still here".utf8))
        #expect(await survivor.value == "received 10")
    }
}

@Suite(.timeLimit(.minutes(1))) struct GracefulDrainTests {
    /// Issue 18: an idle keep-alive connection held shutdown for its whole deadline. A server
    /// task waiting for its next request inside `withShutdownCancellation` is cancelled when
    /// shutdown begins, closes its connection, and shutdown ends long before its 60 s deadline
    /// (this suite's time limit is one minute).
    @Test(arguments: Transport.allCases)
    func anIdleConnectionClosesWhenShutdownBegins(transport: Transport) async throws {
        let executor = try RingExecutor(entries: 16)
        let (server, client) = try await transport.pair(executor)
        defer { try? client.close() }
        #expect(!executor.isShuttingDown)
        let served = Task(executorPreference: executor) { () -> String in
            let outcome = await receiveOutcome {
                try await executor.withShutdownCancellation { try await executor.receive(server, upTo: 64) }
            }
            try? await executor.close(server)
            return outcome
        }
        #expect(await waitUntil { executor.operationsInFlight >= 1 })
        await executor.shutdown(deadline: .seconds(60))
        #expect(executor.isShuttingDown)
        #expect(await served.value == "CancellationError")
        #expect(peerReadsEndOfFile(client))
    }

    /// A body that finishes before shutdown returns its value, and its shutdown waiter goes away
    /// (shutdown later does not wait on it); an error from the body is rethrown as is.
    @Test func aBodyThatFinishesFirstReturnsItsValueOrError() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let (server, client) = try socketPair()
        defer { try? server.close() }
        defer { try? client.close() }
        try await executor.send(client, bytes: Array("GET".utf8))
        let bytes = try await executor.withShutdownCancellation { try await executor.receive(server, upTo: 64) }
        #expect(bytes == Array("GET".utf8))
        await #expect(throws: Errno.badFileDescriptor) {
            try await executor.withShutdownCancellation {
                try await executor.receive(FileDescriptor(rawValue: -1), upTo: 1)
            }
        }
        #expect(!executor.isShuttingDown)
    }

    /// `waitForShutdown()` returns when shutdown begins, at once when it already has, and throws
    /// `CancellationError` when its task is cancelled first.
    @Test func waitForShutdownHearsTheStartAndCancellation() async throws {
        let executor = try RingExecutor(entries: 16)
        let cancelled = Task { () -> Bool in
            do {
                try await executor.waitForShutdown()
                return false
            } catch { return error is CancellationError }
        }
        cancelled.cancel()
        #expect(await cancelled.value)
        let waiter = Task { try await executor.waitForShutdown() }
        await executor.shutdown(deadline: .seconds(60))
        try await waiter.value
        try await executor.waitForShutdown()  // already begun: returns at once
    }

    /// A task that hears of the shutdown (`waitForShutdown()`) can still use its executor, also
    /// one with nothing in flight: the waiters' tasks are queued on it before its loop can see
    /// that it is stopping, and the loop exits only with its queues empty. Regression: the loop
    /// was told first and could exit in the moment before the waiters were woken; their tasks
    /// then ran on the global executor and their operations failed with `ESHUTDOWN` (CI's
    /// ThreadSanitizer run, where everything is slow, caught it in the group test below). A
    /// task that yields on the executor until shutdown keeps the loop turning, as a busy server
    /// does, so it is not asleep when told.
    @Test func aTaskThatHearsOfTheShutdownCanStillUseItsExecutor() async throws {
        for round in 1...20 {
            let executor = try RingExecutor(entries: 16)
            let waiters = (0..<4).map { _ in
                Task(executorPreference: executor) { () -> String in
                    try? await executor.waitForShutdown()
                    do {
                        try await executor.nop()
                        return "nop"
                    } catch { return "\(error)" }
                }
            }
            let spinner = Task(executorPreference: executor) {
                while !executor.isShuttingDown { await Task.yield() }
            }
            #expect(await waitUntil { executor.shutdownSignal.waiterCount == 4 })
            await executor.shutdown(deadline: .seconds(5))
            await spinner.value
            var outcomes: [String] = []
            for waiter in waiters { outcomes.append(await waiter.value) }
            #expect(outcomes == ["nop", "nop", "nop", "nop"], "round \(round)")
            if outcomes != ["nop", "nop", "nop", "nop"] { return }
        }
    }

    /// A group's shutdown begins on every executor before it waits for any, so a server spread
    /// over the group drains all of it together. Here a receive on the first executor is
    /// answered only by a task on the second once that one hears of the shutdown; the receive
    /// must get its bytes, not be cancelled at the deadline. Regression: the blocking
    /// `shutdownGracefully` shut the executors down one after the other, so the second heard of
    /// it only after the first had stopped, and the first cancelled the receive at its deadline.
    @Test(arguments: [true, false])
    func aGroupsShutdownBeginsOnEveryExecutorBeforeWaitingForOne(blocking: Bool) async throws {
        let group = try RingExecutorGroup(threads: 2, entries: 16)
        let (first, second) = (group.executors[0], group.executors[1])
        let (server, client) = try socketPair()
        defer { try? server.close() }
        defer { try? client.close() }
        let receive = Task(executorPreference: first) {
            await receiveOutcome { try await first.receive(server, upTo: 64) }
        }
        let answer = Task(executorPreference: second) {
            try await second.waitForShutdown()
            try await second.send(client, bytes: Array("bye".utf8))
        }
        #expect(await waitForOperationsInFlight(first, atLeast: 1))
        if blocking {
            await Task.detached { group.shutdownGracefully(deadline: .seconds(3)) }.value
        } else {
            await group.shutdown(deadline: .seconds(3))
        }
        #expect(await receive.value == "received 3")
        try await answer.value
    }

    /// Calling the blocking `shutdownGracefully()` on the executor's own loop thread stops the
    /// process with a message naming the mistake and the fix (in a child process), not a bare
    /// trap. The Swift runtime's backtracer is turned off in the child: the message comes before
    /// it, and under AddressSanitizer the backtracer's stack reads trip the sanitizer, which then
    /// hung the child for good while its output went to a pipe (CI's ASan step, 20 minutes).
    ///
    /// A group's blocking shutdown, called on the thread of one of its executors, does the same
    /// (before it begins shutting anything down).
    @Test(arguments: [
        ("--shutdown-on-loop-thread", "called on the executor's own loop thread", "await executor.shutdown(deadline:)"),
        (
            "--group-shutdown-on-loop-thread", "called on the loop thread of one of the group's executors",
            "await group.shutdown(deadline:)"
        ),
    ])
    func blockingShutdownOnTheLoopThreadStopsWithAMessage(mode: String, mistake: String, fix: String) async throws {
        guard let helper = ExampleTests.binary("ring-fault-helper") else { return }
        var environment = ProcessInfo.processInfo.environment
        environment["SWIFT_BACKTRACE"] = "enable=no"
        let (status, text) = try await runProcess(helper, [mode], environment: environment, standardError: true)
        #expect(status != 0, "\(text)")
        #expect(text.contains(mistake), "\(text)")
        #expect(text.contains(fix), "\(text)")
    }
}

@Suite(.timeLimit(.minutes(1))) struct IdleTimeoutTests {
    /// The idle-timeout pattern of the README: each wait for the next request runs in its own
    /// `withTimeout`, so the timeout restarts with every request. A quiet connection times out
    /// with `Errno.timedOut` without losing anything: bytes sent afterwards arrive intact at the
    /// next receive. Composed with `withShutdownCancellation` the timeout still applies.
    @Test(arguments: Transport.allCases)
    func anIdleReceiveTimesOutAndTheConnectionStaysWhole(transport: Transport) async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let (server, client) = try await transport.pair(executor)
        defer { try? server.close() }
        defer { try? client.close() }
        let idle = await receiveOutcome {
            try await executor.withShutdownCancellation {
                try await executor.withTimeout(.milliseconds(50)) { try await executor.receive(server, upTo: 64) }
            }
        }
        #expect(idle == "Errno \(ETIMEDOUT)")
        try await executor.send(client, bytes: Array("next request".utf8))
        let next = try await executor.withTimeout(.seconds(10)) { try await executor.receive(server, upTo: 64) }
        #expect(next == Array("next request".utf8))
    }
}
