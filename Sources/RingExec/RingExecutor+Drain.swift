import Glibc
import Ring
import SystemPackage

// Servers on the ring: closing a descriptor that still has operations pending, and learning
// that shutdown has begun so idle connections can be closed early.

extension RingExecutor {
    /// Cancels every operation of this executor still pending on `fd` (what `close(_:)` does
    /// first). Returns once the cancels have been handed to the kernel; each cancelled operation's
    /// task still resumes only from that operation's own completion, so no buffer is released
    /// while the kernel may use it. On Linux 5.19+ one `IORING_OP_ASYNC_CANCEL` with
    /// `IORING_ASYNC_CANCEL_FD | IORING_ASYNC_CANCEL_ALL` cancels every request on the file,
    /// also those not made through this executor's records, and those that reach the same open
    /// file through a fixed-file slot (the kernel matches by the open file); on older kernels the
    /// executor cancels its own records whose entry names `fd` by number, not as a fixed-file
    /// index (the executor can only match by the number).
    nonisolated(nonsending) func cancelPending(on fd: FileDescriptor) async {
        guard let uring = uringEngine else { return }  // the aio engines cannot close through the engine
        if uring.canCancelAny {  // CANCEL_FD and CANCEL_ALL came with CANCEL_ANY, in 5.19
            // -ENOENT: nothing was pending. Neither bounded by `withTimeout` nor refused for a
            // cancelled task: closing is cleanup (see `close`).
            _ = await submitIgnoringCancellation(.cancel(fd: fd, flags: [.all]))
            return
        }
        await onLoopThread { [self] in
            for operation in pendingRecords() where operation.names(fd) { requestCancel(operation) }
        } afterExit: {
        }
    }

    /// `cancelPending(on:)` and the close of `fd` as one linked pair (Linux 5.19+): the cancel of
    /// every request on the file, hard-linked to the close, so the close runs after the cancel
    /// whatever it found (a plain link would skip the close when the cancel finds nothing and
    /// ends with `-ENOENT`). The close has no file of its own for the cancel to match. Returns
    /// the close's result, or `-ESHUTDOWN` when the executor has shut down. Like
    /// `submitIgnoringCancellation`: neither cancelled with its task nor bounded by `withTimeout`.
    nonisolated(nonsending) func cancelPendingAndClose(_ fd: FileDescriptor) async -> Int32 {
        var cancel = SubmissionEntry.cancel(fd: fd, flags: [.all])
        cancel.sqeFlags.insert(.hardLink)
        let operation = Operation(cancel)
        operation.chain = [.close(fd)]
        operation.results = [-ECANCELED, -ECANCELED]
        operation.pending = 2
        operation.countsLastEntry = true  // counted as the close it is
        let result = await submitIgnoringCancellation(operation)
        return operation.submitted ? operation.results[1] : result
    }

    /// Records handed to the engine and not finally completed, then those still queued (loop
    /// thread).
    private func pendingRecords() -> [Operation] {
        var records: [Operation] = []
        var next = oldestInFlight
        while let operation = next {
            records.append(operation)
            next = operation.newer
        }
        return records + queuedOperations()
    }
}

extension Operation {
    /// Whether one of this record's entries operates on the open file `fd` (by number, not as a
    /// fixed-file index).
    fileprivate func names(_ fd: FileDescriptor) -> Bool {
        ([entry] + chain).contains { entry in
            entry.fd == fd.rawValue && !entry.sqeFlags.contains(.fixedFile)
                && !Self.opcodesWithoutFile.contains(entry.op.rawValue)
        }
    }

    /// Operations whose `fd` field is not a file the request holds (a directory for a path, the
    /// descriptor to close, a buffer group's count, nothing at all).
    private static let opcodesWithoutFile: Set<UInt8> = Set(
        [
            Opcode.nop, .timeout, .timeoutRemove, .linkTimeout, .asyncCancel, .openat, .openat2, .close, .statx,
            .filesUpdate, .provideBuffers, .removeBuffers, .renameat, .unlinkat, .mkdirat, .symlinkat, .linkat,
            .socket,
        ].map(\.rawValue))
}

extension RingExecutor {
    /// Returns once shutdown has begun (`shutdown(deadline:)` or `shutdownGracefully` was
    /// called), at once if it already has. Throws `CancellationError` if the task is cancelled
    /// first. While the deadline runs, the executor still completes what is in flight and
    /// accepts new operations (only the streams end at once): a server that hears this can
    /// close its idle connections instead of holding shutdown until the deadline.
    public nonisolated(nonsending) func waitForShutdown() async throws {
        await shutdownSignal.wait()
        if !isShuttingDown { throw CancellationError() }
    }

    /// Runs `body` in a child task that is cancelled when shutdown begins (see
    /// `waitForShutdown()`), and returns its result or rethrows its error. An idle `receive` in
    /// `body` then ends the way any cancelled operation does: with `CancellationError`, after the
    /// kernel has let go of its buffer. The child inherits the caller's executor preference. Use
    /// it around the idle part of a connection (waiting for the next request), so shutdown
    /// never cuts a response short.
    public nonisolated(nonsending) func withShutdownCancellation<T: Sendable>(
        _ body: @escaping @Sendable () async throws -> T
    ) async throws -> T {
        try await withThrowingTaskGroup(of: DrainOutcome<T>.self) { group in
            group.addTask { .finished(try await body()) }
            group.addTask {
                try? await self.waitForShutdown()  // cancelled when `body` finished first
                return .shutdownBegan
            }
            while let outcome = try await group.next() {
                group.cancelAll()  // `body` finished (the waiter goes), or shutdown began (`body` is cancelled)
                if case .finished(let value) = outcome { return value }
            }
            preconditionFailure("the body's child task always ends the group")
        }
    }
}

/// Which child of `withShutdownCancellation` ended.
private enum DrainOutcome<T: Sendable>: Sendable {
    case finished(T)
    case shutdownBegan
}

/// Opens once, when shutdown begins; async waiters can leave early when their task is cancelled.
final class ShutdownSignal: @unchecked Sendable {
    private let lock = Lock()
    // Under `lock`.
    private var fired = false
    private var nextWaiter: UInt64 = 0
    private var waiters: [UInt64: UnsafeContinuation<Void, Never>] = [:]
    /// Waiters whose task was cancelled before they were registered.
    private var cancelledEarly: Set<UInt64> = []

    /// Tasks waiting now (for tests that must know a waiter is registered).
    var waiterCount: Int { lock.withLock { waiters.count } }

    func fire() {
        let resumed = lock.withLock { () -> [UnsafeContinuation<Void, Never>] in
            fired = true
            defer { waiters.removeAll() }
            return Array(waiters.values)
        }
        for waiter in resumed { waiter.resume() }
    }

    /// Returns when the signal has fired or the task is cancelled.
    func wait() async {
        let id = lock.withLock {
            defer { nextWaiter += 1 }
            return nextWaiter
        }
        await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
                let now = lock.withLock { () -> Bool in
                    if cancelledEarly.remove(id) != nil || fired { return true }
                    waiters[id] = continuation
                    return false
                }
                if now { continuation.resume() }
            }
        } onCancel: {
            let waiter = lock.withLock { () -> UnsafeContinuation<Void, Never>? in
                if let waiter = waiters.removeValue(forKey: id) { return waiter }
                if !fired { cancelledEarly.insert(id) }
                return nil
            }
            waiter?.resume()
        }
    }
}
