import Glibc
import Ring
import SystemPackage

extension RingExecutor {
    /// Sleeps on a kernel timeout (io_uring) or an engine timer (libaio, POSIX aio). Cancelling
    /// the task removes the armed timeout and throws `CancellationError`. Zero or negative
    /// durations return after one round trip through the engine.
    public func sleep(for duration: Duration) async throws {
        let timespec = UnsafeMutablePointer<KernelTimespec>.allocate(capacity: 1)
        timespec.initialize(to: KernelTimespec(duration))
        defer { timespec.deallocate() }  // after the completion: nothing can read it any more
        let result = await submit(Operation(.timeout(timespec)))
        if result == -ETIME || result == 0 { return }
        if result == -ECANCELED { throw CancellationError() }
        throw Errno(rawValue: -result)
    }

    /// Sleeps until `deadline` on the continuous clock.
    public func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await sleep(for: deadline - .now)
    }

    /// Runs `body` with a deadline for the ring operations it performs through this executor:
    /// each is submitted linked to an `IORING_OP_LINK_TIMEOUT` for the time left, so the kernel
    /// cancels the operation itself when the deadline passes; the operation then throws
    /// `Errno.timedOut`. Nested scopes keep the earlier deadline. Work that is not a ring
    /// operation is not interrupted. io_uring only: other engines throw `unsupported`.
    public func withTimeout<T>(_ duration: Duration, _ body: () async throws -> T) async throws -> T {
        let deadline = ContinuousClock.now + duration
        let effective = TimeoutScope.deadline.map { min($0, deadline) } ?? deadline
        return try await TimeoutScope.$deadline.withValue(effective) { try await body() }
    }

    /// Submits `entry` linked to a timeout that fires at `deadline`. Returns the operation's
    /// result, `-ETIMEDOUT` when the timeout cancelled it.
    func submit(_ entry: SubmissionEntry, deadline: ContinuousClock.Instant) async -> Int32 {
        guard engineSelection.engine == .ioURing else { return -EOPNOTSUPP }
        let timespec = UnsafeMutablePointer<KernelTimespec>.allocate(capacity: 1)
        timespec.initialize(to: KernelTimespec(deadline - .now))
        defer { timespec.deallocate() }
        let operation = Operation(entry.flags(.link))
        operation.chain = [.linkTimeout(timespec)]
        operation.results = [-ECANCELED, -ECANCELED]
        operation.pending = 2
        let result = await submit(operation)
        if result == -ECANCELED && operation.results[1] == -ETIME { return -ETIMEDOUT }
        return result
    }
}

/// The innermost `withTimeout` deadline of the current task.
enum TimeoutScope {
    @TaskLocal static var deadline: ContinuousClock.Instant?
}
