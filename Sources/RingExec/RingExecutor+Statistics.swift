// What an executor has done (counters) and what it is doing (in-flight operations), readable from
// any thread. The loop counts with plain increments of its own state and publishes a copy under a
// lock at most every millisecond and whenever it is about to block; the in-flight list is copied
// by the loop when asked, field by field, so no caller ever holds an operation record (records
// are pooled and reused).
import Glibc
import Ring
import Synchronization

extension RingExecutor {
    /// Counters since the executor started. Names are stable: tools and dashboards may key on
    /// them (`RingExecMetrics` reports them under `ring_executor_<name>`).
    public struct Statistics: Sendable, Equatable {
        /// Operations handed to the engine (a linked chain counts once).
        public var submitted = 0
        /// Operations whose last completion was reaped.
        public var completed = 0
        /// Operations that ended cancelled (`ECANCELED`), including those cancelled before
        /// they were submitted.
        public var cancelled = 0
        /// Operations that ended with another error, by errno (positive, e.g. `EAGAIN` = 11).
        public var failed: [Int32: Int] = [:]
        /// System calls the engine made (`io_uring_enter`, `io_submit`/`io_getevents`, ...).
        public var systemCalls = 0
        /// Times the loop found the submission queue too full for the next operation and left it
        /// (and those behind it) for a later tick.
        public var submissionQueueFullStalls = 0
        /// Times the loop found completions overflowed in the kernel (`IORING_SQ_CQ_OVERFLOW`)
        /// and had them flushed; io_uring only.
        public var completionQueueOverflows = 0
        /// Wake-ups of this executor's loop through its eventfd, from other threads.
        public var eventfdWakeups = 0
        /// Wake-ups this executor's loop sent to other executors with `IORING_OP_MSG_RING`.
        public var messageWakeups = 0
        /// Jobs (task steps) the loop ran.
        public var jobsRun = 0
        /// Time from submission to completion of the completed operations.
        public var latency = LatencyHistogram()

        /// All zero.
        public init() {}
    }

    /// Operation latencies in power-of-two buckets: `counts[i]` operations took less than
    /// `2^i` ns and at least `2^(i-1)` ns (`counts[0]`: under 1 ns). Times are taken once per
    /// loop tick, so they include the time the loop spent on the rest of that tick.
    public struct LatencyHistogram: Sendable, Equatable {
        /// Operations per bucket (65 buckets).
        public var counts: [Int] = Array(repeating: 0, count: LatencyHistogram.bucketCount)

        /// Buckets: 0 ns, then one per bit of a 64-bit nanosecond count.
        public static let bucketCount = 65

        /// An empty histogram.
        public init() {}

        /// Operations counted.
        public var total: Int { counts.reduce(0, +) }

        /// The exclusive upper bound of bucket `index` (`2^index` ns).
        public static func upperBound(ofBucket index: Int) -> Duration {
            index >= 63 ? .nanoseconds(Int64.max) : .nanoseconds(Int64(1) << index)
        }

        /// The upper bound of the bucket holding the `fraction` quantile (0.5: median), or nil
        /// when empty.
        public func quantile(_ fraction: Double) -> Duration? {
            let total = self.total
            guard total > 0 else { return nil }
            let rank = max(1, Int((Double(total) * min(max(fraction, 0), 1)).rounded(.up)))
            var seen = 0
            for (index, count) in counts.enumerated() {
                seen += count
                if seen >= rank { return Self.upperBound(ofBucket: index) }
            }
            return nil
        }
    }

    /// One operation the executor has accepted and not yet finished.
    public struct InFlightOperation: Sendable, Equatable {
        /// Where the operation is.
        public enum State: String, Sendable {
            /// Waiting on the loop for room in the submission queue (or for the next tick).
            case queued
            /// Handed to the engine; its completion has not been reaped.
            case submitted
            /// A cancel was asked for (the task was cancelled, or a timeout ran out) and the
            /// operation's own completion has not arrived yet.
            case cancelRequested = "cancel requested"
        }

        /// The engine-neutral name (`read`, `recv`, `accept`, `timeout`), as in
        /// `EngineError.unsupported`.
        public var operation: String
        /// The descriptor the operation works on, if it has one (a registered file's index when
        /// `SQEFlags.fixedFile` is set).
        public var fd: Int32?
        /// The byte count asked for, for reads, writes, sends and receives.
        public var bytes: Int?
        /// Entries: 1, or the length of a linked chain (`operation` names the first).
        public var entries: Int
        /// A multishot request (a stream of completions).
        public var multishot: Bool
        /// Time since the operation was handed to the engine; nil while queued.
        public var age: Duration?
        /// Where the operation is.
        public var state: State
    }

    /// The counters so far: the loop's own values on the loop thread; elsewhere the copy it
    /// published last (at most a millisecond old while it is busy, current once it waits).
    public var statistics: Statistics {
        if isOnRunningLoop { return counters.statistics(engineCalls: engine.systemCalls, wakeups: self) }
        return publishedCounters.withLock { $0.statistics(engineCalls: $0.systemCalls, wakeups: self) }
    }

    /// The operations in flight, oldest submission first, then those still queued.
    ///
    /// On the loop thread (a task on this executor) the list is built at once. From any other
    /// thread the caller waits for the loop's next tick, which copies each record's fields and
    /// hands the copy back (the loop is woken if it sleeps); after shutdown the list is empty.
    /// Do not call it from another executor's loop while this one may be waiting for that one;
    /// from a task, prefer the `async` form.
    public func inFlightOperations() -> [InFlightOperation] {
        if isOnRunningLoop { return buildInFlightList() }
        let request = SnapshotRequest()
        guard postSnapshotRequest(request) else { return [] }
        request.latch.wait()
        return request.operations
    }

    /// The same list without blocking a thread: the task suspends until the loop's next tick.
    public func inFlightOperations() async -> [InFlightOperation] {
        if isOnRunningLoop { return buildInFlightList() }
        let request = SnapshotRequest()
        guard postSnapshotRequest(request) else { return [] }
        await request.latch.wait()
        return request.operations
    }

    /// The loop's answer to `inFlightOperations()` from other threads.
    final class SnapshotRequest: @unchecked Sendable {
        let latch = Latch()
        /// Written by the loop before it opens `latch`; read by the caller after.
        var operations: [InFlightOperation] = []
    }

    /// Loop thread: answers every waiting snapshot request with one list.
    func serveSnapshots() {
        guard snapshotRequested.exchange(false, ordering: .acquiring) else { return }
        let requests = takeSnapshotRequests()
        guard !requests.isEmpty else { return }
        let list = buildInFlightList()
        for request in requests {
            request.operations = list
            request.latch.open()
        }
    }

    /// After the loop has exited: answers (with nothing) requests that came before it did.
    func abandonSnapshots() {
        for request in takeSnapshotRequests() { request.latch.open() }
    }

    static func inFlightOperation(_ record: Operation, now: UInt64, queued: Bool) -> InFlightOperation {
        let entry = record.entry
        let counted: Set<Opcode> = [.read, .write, .readFixed, .writeFixed, .send, .recv, .sendZC]
        let state: InFlightOperation.State =
            record.cancelRequested ? .cancelRequested : queued ? .queued : .submitted
        return InFlightOperation(
            operation: operationName(entry.op),
            fd: entry.fd >= 0 && entry.op != .nop && entry.op != .timeout ? entry.fd : nil,
            bytes: counted.contains(entry.op) ? Int(entry.len) : nil,
            entries: record.entryCount,
            multishot: record.onEach != nil,
            age: queued ? nil : .nanoseconds(Int64(bitPattern: now &- record.submittedAt)),
            state: state)
    }
}

/// The loop's counters: plain integers it alone writes, and the buffers of its histogram and
/// failure table. A copy is published under a lock (`RingExecutor.publishedCounters`).
struct LoopCounters: ~Copyable {
    var submitted = 0
    var completed = 0
    var cancelled = 0
    var systemCalls = 0
    var submissionQueueFullStalls = 0
    var completionQueueOverflows = 0
    var jobsRun = 0
    /// Operations per latency bucket (`LatencyHistogram.bucketCount`).
    let latency: UnsafeMutablePointer<Int>
    /// Failures by errno; the last slot counts errnos past the table.
    let failures: UnsafeMutablePointer<Int>
    static let failureSlots = 160

    init() {
        latency = .allocate(capacity: RingExecutor.LatencyHistogram.bucketCount)
        latency.initialize(repeating: 0, count: RingExecutor.LatencyHistogram.bucketCount)
        failures = .allocate(capacity: Self.failureSlots)
        failures.initialize(repeating: 0, count: Self.failureSlots)
    }

    deinit {
        latency.deallocate()
        failures.deallocate()
    }

    /// Counts one finished operation's latency (nanoseconds).
    @inline(__always) func record(latency nanoseconds: UInt64) {
        latency[64 - nanoseconds.leadingZeroBitCount] += 1
    }

    /// Counts an operation that ended with `-result`.
    @inline(__always) mutating func recordFailure(_ result: Int32) {
        if result == -ECANCELED {
            cancelled += 1
        } else {
            failures[min(Int(-result), Self.failureSlots - 1)] += 1
        }
    }

    /// Copies everything into `other` (same shape), buffers included.
    func publish(into other: inout LoopCounters, systemCalls: Int) {
        other.submitted = submitted
        other.completed = completed
        other.cancelled = cancelled
        other.systemCalls = systemCalls
        other.submissionQueueFullStalls = submissionQueueFullStalls
        other.completionQueueOverflows = completionQueueOverflows
        other.jobsRun = jobsRun
        other.latency.update(from: latency, count: RingExecutor.LatencyHistogram.bucketCount)
        other.failures.update(from: failures, count: Self.failureSlots)
    }

    /// A sum that changes whenever anything counted does (so the loop publishes only changes).
    var version: Int { submitted &+ completed &+ cancelled &+ jobsRun &+ submissionQueueFullStalls }

    func statistics(engineCalls: Int, wakeups executor: RingExecutor) -> RingExecutor.Statistics {
        var s = RingExecutor.Statistics()
        s.submitted = submitted
        s.completed = completed
        s.cancelled = cancelled
        s.systemCalls = engineCalls
        s.submissionQueueFullStalls = submissionQueueFullStalls
        s.completionQueueOverflows = completionQueueOverflows
        s.jobsRun = jobsRun
        s.eventfdWakeups = executor.eventfdWakeups.load(ordering: .relaxed)
        s.messageWakeups = executor.messagesSent.load(ordering: .relaxed)
        s.latency.counts = Array(UnsafeBufferPointer(start: latency, count: RingExecutor.LatencyHistogram.bucketCount))
        for errno in 1..<Self.failureSlots where failures[errno] > 0 { s.failed[Int32(errno)] = failures[errno] }
        return s
    }
}

/// CLOCK_MONOTONIC in nanoseconds (the vDSO: no system call).
@inline(__always) func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}
