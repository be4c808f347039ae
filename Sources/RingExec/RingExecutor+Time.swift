import Glibc
import Ring
import Synchronization
import SystemPackage

extension RingExecutor {
    /// Sleeps on a kernel timeout (io_uring) or an engine timer (libaio, POSIX aio). Cancelling
    /// the task removes the armed timeout and throws `CancellationError`. Zero or negative
    /// durations return after one round trip through the engine. Inside this executor's
    /// `withTimeout` scope a sleep that would outlast the deadline sleeps until the deadline and
    /// throws `Errno.timedOut`.
    public nonisolated(nonsending) func sleep(for duration: Duration) async throws {
        var length = duration
        var cutShort = false
        if let deadline = timeoutDeadline() {
            let left = deadline - .now
            if left < length {
                length = left
                cutShort = true
            }
        }
        let timespec = UnsafeMutablePointer<KernelTimespec>.allocate(capacity: 1)
        timespec.initialize(to: KernelTimespec(length))
        defer { timespec.deallocate() }  // after the completion: nothing can read it any more
        let result = await submit(Operation(.timeout(timespec)))
        if result == -ETIME || result == 0 {
            if cutShort { throw Errno.timedOut }
            return
        }
        if result == -ECANCELED { throw CancellationError() }
        throw Errno(rawValue: -result)
    }

    /// Sleeps until `deadline` on the continuous clock.
    public nonisolated(nonsending) func sleep(until deadline: ContinuousClock.Instant) async throws {
        try await sleep(for: deadline - .now)
    }

    /// Runs `body` with a deadline for the ring operations it performs through this executor:
    /// each is submitted linked to an `IORING_OP_LINK_TIMEOUT` for the time left, so the kernel
    /// cancels the operation itself when the deadline passes; the operation then throws
    /// `Errno.timedOut` (also when the cancelled request was running in a kernel worker and
    /// ended with `EINTR`). Nested scopes keep the earlier deadline. io_uring only: other
    /// engines throw `unsupported`.
    ///
    /// What it bounds: the async API's operations (`read`, `write`, `open`, `accept`, `receive`,
    /// ...), `submit(_:)` (the result is then `-ETIMEDOUT`), `perform(_:)`'s batches (requests
    /// still running at the deadline end with `timedOut`), and `sleep` (which ends at the
    /// deadline with `timedOut`). Not bounded: `submitChain`, the streams (`connections`,
    /// `messages`, `multishot`; end them with task cancellation), work that is not a ring
    /// operation, and operations on other executors. The scope is this call: child tasks
    /// (`async let`, task groups) share it, and an unstructured `Task {}` started inside shares it
    /// only until `withTimeout` returns; after that its operations are not bounded by it.
    public func withTimeout<T>(_ duration: Duration, _ body: () async throws -> T) async throws -> T {
        let scope = TimeoutScope(deadline: ContinuousClock.now + duration, executor: self, parent: TimeoutScope.current)
        defer { scope.close() }  // a Task {} that copied the task-local must not see it any more
        return try await TimeoutScope.$current.withValue(scope) { try await body() }
    }

    /// The earliest deadline of the open `withTimeout` scopes of this executor around the
    /// current task, if any.
    func timeoutDeadline() -> ContinuousClock.Instant? {
        // No scope open anywhere (the common case): skip the task-local lookup. A scope this task
        // opened counted itself before its body ran, so it cannot be missed.
        guard TimeoutScope.anyOpen else { return nil }
        var deadline: ContinuousClock.Instant?
        var scope = TimeoutScope.current
        while let current = scope {
            if current.executor === self && current.isOpen {
                deadline = deadline.map { min($0, current.deadline) } ?? current.deadline
            }
            scope = current.parent
        }
        return deadline
    }

    /// Submits `entry` linked to a timeout that fires at `deadline`. Returns the operation's
    /// result, `-ETIMEDOUT` when the timeout cancelled it.
    nonisolated(nonsending) func submit(_ entry: SubmissionEntry, deadline: ContinuousClock.Instant) async -> Int32 {
        guard engineSelection.engine == .ioURing else { return -EOPNOTSUPP }
        let timespec = UnsafeMutablePointer<KernelTimespec>.allocate(capacity: 1)
        timespec.initialize(to: KernelTimespec(deadline - .now))
        defer { timespec.deallocate() }
        let operation = Operation(entry.flags(.link))
        operation.chain = [.linkTimeout(timespec)]
        operation.results = [-ECANCELED, -ECANCELED]
        operation.pending = 2
        // A kernel worker blocked in the request does not always stop for the linked timeout
        // (Linux 6.18 posts nothing for an O_TRUNC open of a FIFO without a reader until a reader
        // comes): a timer of the executor's own cancels the request by token shortly after the
        // deadline, as a task's cancel would. The request's memory rule is unchanged: the call
        // returns only after the request's last completion.
        let (result, timerFired) = await submit(operation, cancellingAt: deadline + Self.workerCancelGrace)
        // The timeout fired (-ETIME) and cancelled the operation: -ECANCELED, or -EINTR when it
        // was blocked in an io-wq worker, which the cancel interrupts with a signal. Or the
        // executor's own timer cancelled it.
        let timedOut = operation.results[1] == -ETIME || timerFired
        if (result == -ECANCELED || result == -EINTR) && timedOut && !Task.isCancelled { return -ETIMEDOUT }
        return result
    }

    /// Submits `operation` and asks for its cancellation at `deadline` (as a task's cancel would)
    /// if it has not finished by then; returns its result, and whether that timer fired. Like
    /// every submission it returns only after the operation's last completion.
    nonisolated(nonsending) func submit(
        _ operation: Operation, cancellingAt deadline: ContinuousClock.Instant
    ) async -> (result: Int32, timerFired: Bool) {
        let timerCancelled = CancelledByTimer()
        operation.taskName = Task.name  // the caller's name, not the child's that submits
        let result = await withTaskGroup(of: Int32?.self) { group -> Int32 in
            group.addTask { await self.submit(operation) }
            group.addTask {
                let fired: Bool = await TimeoutScope.$current.withValue(nil) {
                    (try? await self.sleep(until: deadline)) != nil
                }
                if fired {
                    timerCancelled.fired.store(true, ordering: .relaxed)  // read after the group
                    self.requestCancel(operation)
                }
                return nil
            }
            var result: Int32 = -ECANCELED
            for await value in group {
                guard let value else { continue }
                result = value
                group.cancelAll()  // the request is over: disarm the timer
            }
            return result
        }
        return (result, timerCancelled.fired.load(ordering: .relaxed))
    }

    /// How long after a `withTimeout` deadline the executor cancels a request that the kernel's
    /// linked timeout did not stop.
    static let workerCancelGrace: Duration = .milliseconds(20)
}

/// One `withTimeout` call: its deadline, its executor, and whether it is still running. The
/// task-local holds the innermost scope; `parent` links the enclosing ones (of any executor).
/// Unstructured tasks copy task-locals, so a scope is closed when its call returns and closed
/// scopes are ignored.
final class TimeoutScope: Sendable {
    @TaskLocal static var current: TimeoutScope?

    let deadline: ContinuousClock.Instant
    let executor: RingExecutor
    let parent: TimeoutScope?
    /// Cleared (release) when the scope's call returns; read (acquire) by operations that may
    /// run in an unstructured task which outlived it.
    private let open = Atomic<Bool>(true)

    init(deadline: ContinuousClock.Instant, executor: RingExecutor, parent: TimeoutScope?) {
        self.deadline = deadline
        self.executor = executor
        self.parent = parent
        Self.openScopes.add(1, ordering: .relaxed)
    }

    var isOpen: Bool { open.load(ordering: .acquiring) }

    /// Called once, when the scope's call returns.
    func close() {
        open.store(false, ordering: .releasing)
        Self.openScopes.subtract(1, ordering: .relaxed)
    }

    /// Scopes open in the process. Relaxed is enough: a task only needs to see the scopes it
    /// opened itself, which precede its own operations in program order (and the runtime's
    /// hand-over of a task between threads orders the rest).
    private static let openScopes = Atomic<Int>(0)

    /// Whether any `withTimeout` scope is open in the process.
    static var anyOpen: Bool { openScopes.load(ordering: .relaxed) > 0 }
}

/// Set by `submit(_:deadline:)`'s timer when it cancelled the request (the task group's end
/// orders the store before the read).
final class CancelledByTimer: Sendable {
    let fired = Atomic<Bool>(false)
}
