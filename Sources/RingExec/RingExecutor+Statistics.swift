import Glibc
import Ring
import Synchronization
public import SystemPackage

/// Monotonic time in nanoseconds (`CLOCK_MONOTONIC`, a vDSO call: no system call).
@inline(__always)
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// The loop's own counters: plain integers the loop thread alone writes (no atomics on the hot
/// path); `statistics()` copies them on the loop thread.
struct LoopCounters: Sendable {
    var submitted = 0
    var completed = 0
    var cancelled = 0
    var failed = 0
    var failuresByErrno: [Errno: Int] = [:]
    var submissionQueueFull = 0
    var jobsRun = 0
    var jobsFromOtherThreads = 0
    var latency = RingExecutor.LatencyHistogram()
    /// Read from the engine by `RingExecutor.countersNow()` on the loop thread (the engine is
    /// loop-thread state: other threads never read it).
    var systemCalls = 0
    var overflowFlushes = 0

    /// Counts a finished operation by its result. A timeout that expired ends with `ETIME`,
    /// which is its success (`sleep` returns normally), not a failure; so does a cancel request
    /// that found nothing to cancel (`ENOENT`), as every `close` of a descriptor with nothing
    /// pending does.
    @inline(__always)
    mutating func count(_ result: Int32, of opcode: Opcode) {
        completed &+= 1
        guard result < 0 else { return }
        if result == -ECANCELED {
            cancelled &+= 1
        } else if result == -ETIME && opcode == .timeout || result == -ENOENT && opcode == .asyncCancel {
            return
        } else {
            failed &+= 1
            failuresByErrno[Errno(rawValue: -result), default: 0] += 1
        }
    }
}

extension RingExecutor {
    /// What the executor has done since it started. Counts are kept by the loop thread in plain
    /// integers and copied when asked for, so keeping them costs the hot path a few increments
    /// and two clock reads per loop tick.
    ///
    /// An *operation* is what one call hands to the executor: a single request, a linked chain
    /// (counted once), one request of a batch, or the request behind a stream (`connections()`,
    /// `messages()`, `multishot()`; counted once per submission, also when re-armed).
    public struct Statistics: Sendable, Equatable {
        /// Operations handed to the engine. The executor's own requests count too: `Task.sleep`
        /// timers armed on the ring, stream requests re-armed after a pause, the NOP that ends a
        /// paused stream on the loop thread when its consumer leaves.
        public var submitted = 0
        /// Operations finished: their task resumed (or their stream heard its last completion),
        /// whatever the result. Includes operations refused or cancelled before they reached the
        /// engine.
        public var completed = 0
        /// Of those, finished with `ECANCELED`: cancelled tasks, expired timeouts' victims,
        /// streams ended by their consumer, shutdown past its deadline, and stream requests the
        /// executor cancels itself to pause a stream whose consumer is behind (backpressure).
        public var cancelled = 0
        /// Of those, finished with another error (a timeout that expired, `ETIME`, is not one:
        /// that is how it succeeds; nor is a cancel request that found nothing, `ENOENT`, such
        /// as the one `close` sends first).
        public var failed = 0
        /// `failed` by error.
        public var failuresByErrno: [Errno: Int] = [:]
        /// System calls the loop made into its engine (`systemCalls`).
        public var systemCalls = 0
        /// Loop ticks that found the submission queue full and left operations queued for the
        /// next tick.
        public var submissionQueueFull = 0
        /// Times the loop found completions waiting in the kernel's overflow list (the completion
        /// queue was full when the kernel posted them) and brought them in (io_uring only).
        public var completionOverflowsFlushed = 0
        /// Wake-ups of this executor by its eventfd (io_uring, libaio) or the aio signal (POSIX
        /// aio): another thread handed it work while it slept, or shutdown began.
        public var eventfdWakeUps = 0
        /// Wake-ups this executor's loop sent to other executors with `MSG_RING` (their
        /// eventfd is not written then), and those the kernel refused (each replaced by an
        /// eventfd write).
        public var messageWakeUpsSent = 0
        public var messageWakeUpsFailed = 0
        /// Jobs (task and actor slices) the loop ran.
        public var jobsRun = 0
        /// Of those, the jobs other threads queued (work handed over from outside, and tasks
        /// that came back to the ring after running elsewhere); the rest the loop queued itself.
        public var jobsFromOtherThreads = 0
        /// How long operations were in the kernel: from the loop tick that handed them over to
        /// the tick that reaped their last completion. Streams are not included.
        public var latency = LatencyHistogram()

        public init() {}

        /// Every counter under a stable name (for metrics exporters and scripts): `submitted`,
        /// `completed`, `cancelled`, `failed`, `system_calls`, `sq_full`, `cq_overflows_flushed`,
        /// `wakeups_eventfd`, `wakeups_msg_ring_sent`, `wakeups_msg_ring_failed`, `jobs_run`, and
        /// `failed_<ERRNO NAME>` (e.g. `failed_ECONNRESET`, or `failed_errno_<n>` for a number
        /// without a name) for each error seen.
        public var namedCounters: [(name: String, value: Int)] {
            var named: [(name: String, value: Int)] = [
                ("submitted", submitted), ("completed", completed), ("cancelled", cancelled), ("failed", failed),
                ("system_calls", systemCalls), ("sq_full", submissionQueueFull),
                ("cq_overflows_flushed", completionOverflowsFlushed), ("wakeups_eventfd", eventfdWakeUps),
                ("wakeups_msg_ring_sent", messageWakeUpsSent), ("wakeups_msg_ring_failed", messageWakeUpsFailed),
                ("jobs_run", jobsRun), ("jobs_from_other_threads", jobsFromOtherThreads),
            ]
            for (errno, count) in failuresByErrno.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                named.append(("failed_" + (Self.errnoNames[errno.rawValue] ?? "errno_\(errno.rawValue)"), count))
            }
            return named
        }

        /// The symbolic names of the errors a ring's operations commonly end with.
        private static let errnoNames: [Int32: String] = [
            EPERM: "EPERM", ENOENT: "ENOENT", EINTR: "EINTR", EIO: "EIO", EBADF: "EBADF", EAGAIN: "EAGAIN",
            ENOMEM: "ENOMEM", EACCES: "EACCES", EFAULT: "EFAULT", EBUSY: "EBUSY", EEXIST: "EEXIST",
            EINVAL: "EINVAL", ENFILE: "ENFILE", EMFILE: "EMFILE", ENOSPC: "ENOSPC", EPIPE: "EPIPE",
            ENOSYS: "ENOSYS", ENOBUFS: "ENOBUFS", EOPNOTSUPP: "EOPNOTSUPP", ECONNABORTED: "ECONNABORTED",
            ECONNRESET: "ECONNRESET", ECONNREFUSED: "ECONNREFUSED", ENOTCONN: "ENOTCONN", ESHUTDOWN: "ESHUTDOWN",
            ETIMEDOUT: "ETIMEDOUT", ETIME: "ETIME", EALREADY: "EALREADY", ENOTSOCK: "ENOTSOCK",
            EADDRINUSE: "EADDRINUSE", EHOSTUNREACH: "EHOSTUNREACH", ENETUNREACH: "ENETUNREACH",
        ]
    }

    /// Operation latencies in power-of-two buckets of nanoseconds: cheap enough to record for
    /// every operation, precise to a factor of two.
    public struct LatencyHistogram: Sendable, Equatable {
        /// `counts[0]`: operations that took less than 1 ns (reaped in the tick that handed them
        /// over); `counts[i]`, `i ≥ 1`: those that took from 2^(i-1) up to 2^i - 1 ns.
        public private(set) var counts = [Int](repeating: 0, count: 65)

        public init() {}

        /// Operations recorded.
        public var total: Int { counts.reduce(0, +) }

        /// The operations recorded in `self` and not in `earlier`, a histogram of the same
        /// executor taken before (e.g. the latencies of the last interval).
        public func subtracting(_ earlier: LatencyHistogram) -> LatencyHistogram {
            var difference = self
            for index in counts.indices { difference.counts[index] -= earlier.counts[index] }
            return difference
        }

        @inline(__always)
        mutating func record(_ nanoseconds: UInt64) {
            counts[UInt64.bitWidth - nanoseconds.leadingZeroBitCount] &+= 1
        }

        /// The upper bound of the bucket holding the `fraction` quantile (0…1): at least that
        /// fraction of operations took less. `nil` when nothing was recorded.
        public func quantile(_ fraction: Double) -> Duration? {
            let total = self.total
            guard total > 0 else { return nil }
            let wanted = max(1, Int((Double(total) * min(max(fraction, 0), 1)).rounded(.up)))
            var seen = 0
            for (bucket, count) in counts.enumerated() {
                seen += count
                if seen >= wanted {
                    return bucket == 0 ? .zero : .nanoseconds(bucket >= 63 ? Int64.max : Int64(1) << bucket)
                }
            }
            return nil
        }
    }

    /// One operation the executor has taken and not finished, as `inFlightOperations()` saw it.
    public struct InFlightOperation: Sendable, Equatable, CustomStringConvertible {
        public enum State: String, Sendable {
            /// Handed to the executor, not yet to the kernel (the submission queue was full, or
            /// the loop has not reached it yet).
            case queued
            /// In the kernel.
            case submitted
            /// In the kernel, and its cancellation has been asked for.
            case cancelRequested = "cancel requested"
            /// A zero-copy send that has sent, waiting for the kernel to let go of its buffer
            /// (`sendZeroCopy`): that waits for the bytes to leave the socket, so a peer that
            /// stops reading holds it here.
            case awaitingNotification = "awaiting notification"
        }
        /// The operation's engine-neutral name: `read`, `recv`, `accept`, `timeout`, ...
        public var operation: String
        /// The descriptor it works on (a registered-file index when `fixedFile`), or nil for
        /// operations without one (`nop`, timeouts, cancels).
        public var descriptor: Int32?
        public var fixedFile: Bool
        /// The entry's length field: bytes for reads, writes, sends and receives; the number of
        /// buffers for vectored calls; the operation's own meaning elsewhere.
        public var length: UInt32
        /// Entries in its linked chain (1 for a single request).
        public var entries: Int
        /// A stream's request (`connections()`, `messages()`, `multishot()`): in flight for as
        /// long as the stream runs.
        public var isStream: Bool
        public var state: State
        /// How long it has been in the kernel (nil while queued).
        public var age: Duration?
        /// The name of the task that submitted it, given with `Task(name:)` or
        /// `addTask(name:)`; nil for unnamed tasks. For a stream's request: the task that
        /// started the stream.
        public var task: String? = nil

        public var description: String {
            let target = descriptor.map { fixedFile ? " fixed#\($0)" : " fd \($0)" } ?? ""
            let chain = entries > 1 ? " (chain of \(entries))" : ""
            let since = age.map { " for \($0)" } ?? ""
            let waiting = task.map { " (task \"\($0)\")" } ?? ""
            return
                "\(operation)\(target) len \(length)\(chain)\(isStream ? " stream" : "")\(waiting): \(state.rawValue)\(since)"
        }
    }

    /// A copy of the counters, from any thread. The copy is made on the loop thread between two
    /// of its ticks, so it waits for the job the loop is running; it blocks the loop only for
    /// the copy. After shutdown: the counters as the loop left them.
    public nonisolated(nonsending) func statistics() async -> Statistics {
        await onLoopThread { [self] in
            statisticsOnLoop(countersNow())
        } afterExit: { [self] in
            statisticsOnLoop(countersAtExit ?? LoopCounters())
        }
    }

    /// The operations taken and not finished, oldest first (queued ones last), from any thread,
    /// with the same timing as `statistics()`. After shutdown: none. Finds stalls: a receive
    /// nobody answers shows up here with its descriptor and its age.
    public nonisolated(nonsending) func inFlightOperations() async -> [InFlightOperation] {
        await onLoopThread { [self] in
            inFlightOnLoop()
        } afterExit: {
            []
        }
    }

    /// Both snapshots from one visit to the loop thread, or nil when the loop has not taken the
    /// job within `limit` (its thread is stuck in a long job, or its engine does not wake): for
    /// callers that must not wait on a loop without bound (`InspectionService`). The job stays
    /// queued until the loop takes it; its answer is then dropped.
    func snapshot(within limit: Duration) async -> (Statistics, [InFlightOperation])? {
        typealias Answer = (Statistics, [InFlightOperation])?
        /// Resumes the continuation once: whichever of the loop's answer and the timer is first.
        final class Once: Sendable {
            let taken = Atomic<Bool>(false)
            let continuation: UnsafeContinuation<Answer, Never>
            init(_ continuation: UnsafeContinuation<Answer, Never>) { self.continuation = continuation }
            func resume(_ answer: sending Answer) {
                if !taken.exchange(true, ordering: .acquiringAndReleasing) { continuation.resume(returning: answer) }
            }
        }
        return await withUnsafeContinuation { (continuation: UnsafeContinuation<Answer, Never>) in
            let once = Once(continuation)
            Task(executorPreference: self) { [self] in
                if isOnLoopThread {
                    once.resume((statisticsOnLoop(countersNow()), inFlightOnLoop()))
                } else {
                    once.resume((statisticsOnLoop(countersAtExit ?? LoopCounters()), []))
                }
            }
            Task {
                try? await Task.sleep(for: limit)
                once.resume(nil)
            }
        }
    }

    /// The loop's counters with the engine's own counts filled in (loop thread).
    func countersNow() -> LoopCounters {
        var now = counters
        now.systemCalls = engine.systemCalls
        now.overflowFlushes = uringEngine?.ring.overflowFlushes ?? 0
        return now
    }

    private func statisticsOnLoop(_ counters: LoopCounters) -> Statistics {
        var statistics = Statistics()
        statistics.submitted = counters.submitted
        statistics.completed = counters.completed
        statistics.cancelled = counters.cancelled
        statistics.failed = counters.failed
        statistics.failuresByErrno = counters.failuresByErrno
        statistics.submissionQueueFull = counters.submissionQueueFull
        statistics.jobsRun = counters.jobsRun
        statistics.jobsFromOtherThreads = counters.jobsFromOtherThreads
        statistics.latency = counters.latency
        statistics.systemCalls = counters.systemCalls
        statistics.completionOverflowsFlushed = counters.overflowFlushes
        statistics.eventfdWakeUps = eventfdWakeUps.load(ordering: .relaxed)
        statistics.messageWakeUpsSent = messagesSent.load(ordering: .relaxed)
        statistics.messageWakeUpsFailed = messagesFailed.load(ordering: .relaxed)
        return statistics
    }

    /// Runs `body` on the loop thread and returns its result; `afterExit` instead when the loop
    /// has exited (a task preferring the executor then runs elsewhere).
    nonisolated(nonsending) func onLoopThread<T: Sendable>(
        _ body: @escaping @Sendable () -> T, afterExit: @escaping @Sendable () -> T
    ) async -> T {
        if isOnLoopThread { return body() }
        let task = Task(executorPreference: self) { [self] in isOnLoopThread ? body() : afterExit() }
        return await task.value
    }
}

extension RingExecutor {
    /// Adds a record just handed to the engine to the in-flight list (loop thread).
    @inline(__always)
    func linkInFlight(_ operation: Operation) {
        operation.older = newestInFlight
        operation.newer = nil
        if let newest = newestInFlight { newest.newer = operation } else { oldestInFlight = operation }
        newestInFlight = operation
    }

    /// Removes a record whose last completion was reaped (loop thread), before it is released.
    @inline(__always)
    func unlinkInFlight(_ operation: Operation) {
        if let newer = operation.newer { newer.older = operation.older } else { newestInFlight = operation.older }
        if let older = operation.older { older.newer = operation.newer } else { oldestInFlight = operation.newer }
        operation.newer = nil
        operation.older = nil
    }

    /// The in-flight list and the queued records, described (loop thread).
    func inFlightOnLoop() -> [InFlightOperation] {
        let now = monotonicNanoseconds()
        var list: [InFlightOperation] = []
        var cursor = oldestInFlight
        while let operation = cursor {
            let age = Duration.nanoseconds(Int64(clamping: now &- operation.submittedAt))
            let state: InFlightOperation.State =
                operation.sendCompleted
                ? .awaitingNotification : operation.cancelRequested ? .cancelRequested : .submitted
            list.append(describe(operation, state: state, age: age))
            cursor = operation.newer
        }
        for operation in queuedOperations() where !operation.completed {
            list.append(describe(operation, state: .queued, age: nil))
        }
        return list
    }

    private func describe(_ operation: Operation, state: InFlightOperation.State, age: Duration?)
        -> InFlightOperation
    {
        let entry = operation.entry
        let withoutDescriptor = [Opcode.nop, .timeout, .timeoutRemove, .linkTimeout, .asyncCancel].contains(entry.op)
        return InFlightOperation(
            operation: Self.operationName(entry.op), descriptor: withoutDescriptor ? nil : entry.fd,
            fixedFile: entry.sqeFlags.contains(.fixedFile), length: entry.len, entries: operation.entryCount,
            isStream: operation.onEach != nil, state: state, age: age, task: operation.taskName)
    }
}
