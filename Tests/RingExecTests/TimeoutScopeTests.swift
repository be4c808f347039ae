import Glibc
import Ring
import RingExec
import SystemPackage
import Testing

/// `withTimeout` bounds exactly what it documents (issue 13, item 16).
@Suite(.timeLimit(.minutes(1))) struct TimeoutScopeTests {
    /// Under the old code the unstructured task copied the task-local deadline and its read,
    /// started after the scope had returned, timed out at once.
    @Test func anUnstructuredTaskOutlivingTheScopeIsNotBounded() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let pipe = try PipePair()
        defer { pipe.close() }
        let scopeEnded = Flag()
        let finished = Flag()
        let task = try await executor.withTimeout(.zero) {
            Task(executorPreference: executor) { () async throws -> [UInt8] in
                defer { finished.set() }
                try await pollUntil { scopeEnded.isSet }
                return try await executor.read(pipe.read, upTo: 8)
            }
        }
        scopeEnded.set()
        // The byte comes later (the test passes whenever it comes: the delay only makes the old
        // failure, a read timed out before any data, reliable).
        let writer = Task {
            try await executor.sleep(for: .milliseconds(20))
            _ = try pipe.write.writeAll([7])
        }
        #expect(try await task.value == [7])
        try await writer.value
        #expect(finished.isSet)
    }

    /// Under the old code raw submits ignored the scope (this one waited for data forever) and
    /// sleeps ran their full length.
    @Test func submitAndSleepHonourTheScope() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let pipe = try PipePair()
        defer { pipe.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { buffer.deallocate() }
        let read = SubmissionEntry.read(pipe.read, into: buffer, offset: SubmissionEntry.currentPosition)
        let result = try await executor.withTimeout(.milliseconds(20)) { await executor.submit(read) }
        #expect(result == -ETIMEDOUT)
        // The sleep throws `timedOut` only when the scope cut it short: a full 30 s sleep returns
        // normally (no wall-clock bound needed, so a loaded machine cannot fail this).
        await #expect(throws: Errno.timedOut) {
            try await executor.withTimeout(.milliseconds(20)) { try await executor.sleep(for: .seconds(30)) }
        }
        // A sleep that ends before the deadline is an ordinary sleep.
        try await executor.withTimeout(.seconds(30)) { try await executor.sleep(for: .milliseconds(1)) }
    }

    /// A read pushed to the kernel's worker pool (`IOSQE_ASYNC`) is bounded too. (A request
    /// blocked inside a worker is cancelled with a signal and may end with -EINTR, which the
    /// executor reports as the timeout; on 6.18 a pipe read in a worker waits by polling and
    /// ends with -ECANCELED instead, so this does not reach the -EINTR branch.)
    @Test func aReadPushedToAWorkerTimesOut() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let pipe = try PipePair()
        defer { pipe.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { buffer.deallocate() }
        let read = SubmissionEntry.read(pipe.read, into: buffer, offset: SubmissionEntry.currentPosition).flags(.async)
        let result = try await executor.withTimeout(.milliseconds(20)) { await executor.submit(read) }
        #expect(result == -ETIMEDOUT)
        try await executor.nop()  // still usable
    }

    /// A scope belongs to its executor. Under the old code a libaio executor's read inside an
    /// io_uring executor's scope threw `unsupported("withTimeout")`.
    @Test func anotherExecutorsScopeDoesNotApply() async throws {
        let ring = try RingExecutor(entries: 16)
        defer { ring.shutdownGracefully() }
        guard let aio = try makeExecutor(.libaio) else { return }
        defer { aio.shutdownGracefully() }
        let file = try TemporaryFile(contents: [1, 2, 3])
        defer { file.remove() }
        let bytes = try await ring.withTimeout(.seconds(30)) { try await aio.read(file.fd, upTo: 3, offset: 0) }
        #expect(bytes == [1, 2, 3])
    }
}

/// A request a kernel worker is blocked in: the linked timeout alone does not stop it (Linux
/// 6.18 posted nothing for an `O_TRUNC` open of a FIFO without a reader), so the executor
/// cancels it when the timeout fires.
@Suite(.timeLimit(.minutes(1))) struct TimeoutOfWorkerBlockedRequestTests {
    @Test func withTimeoutEndsAnOpenBlockedInAKernelWorker() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let fifo = "/tmp/ring-fifo-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        #expect(mkfifo(fifo, 0o600) == 0)
        defer { unlink(fifo) }
        await #expect(throws: Errno.timedOut) {
            let fd = try await executor.withTimeout(.milliseconds(50)) {
                try await executor.open(FilePath(fifo), .writeOnly, options: [.truncate])
            }
            try? fd.close()
        }
        try await executor.nop()  // still usable
    }
}
