import CSyscalls
import Glibc
public import Ring
import Synchronization
import SystemPackage

/// A Swift concurrency executor that runs jobs on one dedicated thread and drives one I/O engine
/// (io_uring by default; libaio or POSIX aio where io_uring is refused) from that thread. It is
/// both a `SerialExecutor` (actors can be pinned to it) and a `TaskExecutor` (tasks can prefer it,
/// e.g. with `run(_:)`).
///
/// The loop: take the jobs and requests other threads handed over, run ready jobs in a bounded
/// batch, hand queued operations to the engine, submit, and block only when nothing is runnable;
/// then reap every completion and resume its task. Jobs enqueued from the loop thread itself go
/// on a local queue with no lock and no system call; other threads take a lock and wake the loop
/// only when it has said it is about to sleep.
///
/// The rule that keeps borrowed buffers safe: an awaited operation never returns while the
/// kernel may still use its memory. Cancelling a task asks the engine to cancel, and the task
/// resumes only from the operation's own completion.
public final class RingExecutor: SerialExecutor, TaskExecutor, @unchecked Sendable {
    // Shared with other threads (under `lock`, or atomic).
    private let lock = Lock()
    @exclusivity(unchecked) private var remoteJobs: [QueuedJob] = []
    @exclusivity(unchecked) private var remoteSubmissions: [Operation] = []
    @exclusivity(unchecked) private var remoteCancels: [Operation] = []
    /// Set by the loop just before it blocks; read by other threads after they enqueue.
    private let sleeping = Atomic<Bool>(false)
    /// Set by other threads after they add to a remote queue; the loop takes the lock only when
    /// it finds this set.
    private let remotePending = Atomic<Bool>(false)
    /// Published (release, under `lock`) after `shutdownDeadline`, so a loop that sees it set
    /// also sees the deadline of the call that set it.
    private let stopping = Atomic<Bool>(false)
    /// Set when shutdown begins, before its waiters are woken and before `stopping`.
    private let shutdownBegan = Atomic<Bool>(false)
    /// Fired once `stopping` is published (see `waitForShutdown`).
    let shutdownSignal = ShutdownSignal()
    /// Set under `lock` when the loop has exited; nothing is accepted afterwards.
    private var exited = false
    /// Actor jobs that arrived after the loop exited, and whether a thread is draining them
    /// (both under `lock`; see `enqueueLateActorJob`).
    @exclusivity(unchecked) private var lateActorJobs: [UnownedJob] = []
    private var lateDrainerRunning = false
    /// Opens once the loop thread has been joined; every shutdown caller waits for it.
    private let exitLatch = Latch()
    /// Set (under `lock`) by the one shutdown caller that joins the loop thread.
    private var joinClaimed = false

    /// What actors pinned to the ring see as their executor (see `asUnownedSerialExecutor`).
    private let actorFace = RingActorExecutor()

    /// The engine; created on the loop thread before `init` returns, then never replaced.
    @exclusivity(unchecked) private var engineStorage: (any IOEngine)?
    var engine: any IOEngine { engineStorage.unsafelyUnwrapped }
    /// The engine when it is io_uring (set with `engineStorage`): the hot path asks it directly
    /// instead of through the protocol.
    @exclusivity(unchecked) private(set) var uringEngine: URingEngine?
    /// The io_uring engine's ring descriptor (set with `engineStorage`; readable from any thread
    /// after `init`, unlike the engine, whose ring the loop keeps mutating).
    private(set) var engineRingFD: Int32?
    /// Which engine this executor drives and why others were passed over.
    public private(set) var engineSelection = EngineSelection(engine: .ioURing, passedOver: [], fromEnvironment: false)
    /// The io_uring ring fd, when the engine is io_uring (target of `MSG_RING` wake-ups).
    /// Tests replace it (before any cross-ring traffic) to make `MSG_RING` wake-ups fail.
    var ringFD: FileDescriptor?

    // Loop thread only.
    @exclusivity(unchecked) private var localJobs = JobQueue()
    @exclusivity(unchecked) private var localSubmissions: [Operation] = []
    @exclusivity(unchecked) private var localCancels: [Operation] = []
    /// Tasks seen running on the actor face without a preference for this executor, by job
    /// address, one per slot (a collision or a recycled address costs one hop, see `runActorJob`).
    @exclusivity(unchecked) private var tasksWithoutPreference = [UInt](repeating: 0, count: 1024)
    /// The actor job running now (its address), and whether it queued itself on the actor face again.
    @exclusivity(unchecked) private var runningActorJob: UInt = 0
    @exclusivity(unchecked) private var runningActorJobBounced = false
    /// Finished single-entry records for reuse (see `takeRecord`).
    @exclusivity(unchecked) private var recordPool: [Operation] = []
    /// Executors to wake with `MSG_RING` at the next submit.
    @exclusivity(unchecked) private var pendingMessages: [RingExecutor] = []
    /// Live multishot stream requests (`endsAtShutdown`), ended when shutdown starts.
    @exclusivity(unchecked) private var liveStreams: [ObjectIdentifier: Operation] = [:]
    /// Armed `Task.sleep` timers whose task is watched for cancellation (see
    /// RingExecutor+Scheduling.swift), in submission order; completed ones are dropped at the
    /// next sweep. And when the loop sweeps them next.
    @exclusivity(unchecked) private var watchedSleeps: [Operation] = []
    @exclusivity(unchecked) private var nextSweep = ContinuousClock.now
    /// Chains whose cancel was asked for and that have not ended, and when their cancels are
    /// asked again (see `recancelChains`).
    @exclusivity(unchecked) private var cancelledChains: [Operation] = []
    @exclusivity(unchecked) private var nextChainRecancel = ContinuousClock.now
    @exclusivity(unchecked) private var inFlight = 0
    /// The engine's `submitBatch`, read once.
    @exclusivity(unchecked) private var submitBatch = Int.max
    /// Set by the loop thread when it leaves the loop (jobs it enqueues afterwards go elsewhere).
    @exclusivity(unchecked) private var loopExited = false
    /// How many of `inFlight` are `Task.sleep` timers.
    @exclusivity(unchecked) private var schedulerTimersInFlight = 0
    /// Shutdown past its deadline has asked the engine to cancel everything in flight.
    @exclusivity(unchecked) private var cancelledEverything = false
    /// What `statistics()` reports (loop thread only; see RingExecutor+Statistics.swift), and
    /// the list `inFlightOperations()` walks: records handed to the engine, oldest first.
    @exclusivity(unchecked) var counters = LoopCounters()
    @exclusivity(unchecked) unowned(unsafe) var newestInFlight: Operation?
    @exclusivity(unchecked) unowned(unsafe) var oldestInFlight: Operation?
    /// When the loop last reaped completions (monotonic nanoseconds).
    @exclusivity(unchecked) private var reapedAt: UInt64 = 0
    /// The counters as the loop left them (under `lock`, set when `exited` is).
    private var finalCounters: LoopCounters?
    /// Wake-ups of this executor by its engine's eventfd (or aio signal), from any thread.
    let eventfdWakeUps = Atomic<Int>(0)
    /// Counters for tests and diagnostics.
    let scheduledTimers = Atomic<Int>(0)
    let messagesSent = Atomic<Int>(0)
    /// See `recordsCreatedSoFar`.
    private let recordsCreated = Atomic<Int>(0)
    /// `MSG_RING` wake-ups the kernel refused, each replaced by an eventfd write.
    let messagesFailed = Atomic<Int>(0)
    /// Names this executor in `MSG_RING` wake-ups it receives (never reused; see `WakeRegistry`).
    let wakeID = WakeRegistry.shared.nextID()
    private let systemCallCounter = Atomic<Int>(0)
    private let inFlightCounter = Atomic<Int>(0)
    /// Buffer group ids owned by this executor's receive streams.
    let bufferGroups = BufferGroupIDs()
    /// The thread handle `shutdownGracefully` joins; written by `init` only.
    private var joinHandle = pthread_t()
    private var shutdownDeadline: ContinuousClock.Instant = .now
    /// Test seam: runs in `shutdownGracefully` right after `stopping` is published.
    var afterStoppingPublished: (@Sendable () -> Void)?
    /// Loop ticks that saw `stopping` (tests wait on it).
    let ticksWhileStopping = Atomic<Int>(0)

    /// Creates the executor and starts its thread. `entries` sizes the engine's submission
    /// queue (io_uring SQ entries; at least that many operations in flight for the others).
    /// The engine is created on the loop thread (io_uring's `SINGLE_ISSUER` and registered ring
    /// fds are per thread).
    ///
    /// `submitBatch` caps how many new operations one system call hands to the kernel (values
    /// below 1 count as 1; `.max` sends each tick's operations in one call). The kernel holds
    /// ("plugs") the block requests of one `io_uring_enter` or `io_submit` call until the call
    /// returns, so one call with 32 reads reaches the disk later than four calls with 8: on the
    /// virtual disk this project measures on, O_DIRECT reads at 32 in flight ran ~25% faster
    /// with 8 per call, while page-cache reads and NOPs did not measurably slow down
    /// (BENCHMARKS.md). POSIX aio has no such batching and ignores it.
    public convenience init(
        entries: Int = 256, engine choice: EngineChoice = .automatic, submitBatch: Int = RingExecutor.defaultSubmitBatch
    ) throws(EngineError) {
        try self.init { () throws(EngineError) in
            try EngineFactory.make(choice, entries: entries, submitBatch: submitBatch)
        }
    }

    /// The default of `init`'s `submitBatch`.
    public static let defaultSubmitBatch = 8

    /// Starts the loop with the engine `makeEngine` creates on the loop thread (tests and the
    /// fuzz target use this to drive the executor with a scripted engine). Test seam: with
    /// `loopStack`, the loop thread runs on that memory, which must outlive the thread (joined by
    /// `shutdownGracefully`); glibc derives the thread's `pthread_t` from the stack's address, so
    /// two executors run one after the other on one stack get the same thread id.
    init(
        makeEngine: @escaping @Sendable () throws(EngineError) -> (any IOEngine, EngineSelection),
        loopStack: UnsafeMutableRawBufferPointer? = nil
    ) throws(EngineError) {
        actorFace.owner = Unmanaged.passUnretained(self)
        let context = StartContext(executor: self, makeEngine: makeEngine)
        let retained = Unmanaged.passRetained(context)
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        if let loopStack { pthread_attr_setstack(&attributes, loopStack.baseAddress, loopStack.count) }
        var thread = pthread_t()
        let created = pthread_create(
            &thread, &attributes,
            { raw in
                let context = Unmanaged<StartContext>.fromOpaque(raw!).takeRetainedValue()
                context.executor.threadMain(context)
                return nil
            }, retained.toOpaque())
        guard created == 0 else {
            retained.release()
            throw .unavailable(
                engine: .ioURing, reason: "could not start the executor thread: \(Errno(rawValue: created))")
        }
        joinHandle = thread
        // Acquire pairs with the loop thread's release once the engine exists (or failed).
        while context.state.load(ordering: .acquiring) == 0 { sched_yield() }
        if let error = context.error {
            pthread_join(thread, nil)
            throw error
        }
        Self.live.add(1, ordering: .relaxed)
        WakeRegistry.shared.register(self)
    }

    deinit {
        WakeRegistry.shared.unregister(wakeID)
    }

    /// Executors started and not yet shut down (their loop thread not yet joined), process-wide.
    /// An executor that is dropped without `shutdownGracefully()` / `shutdown()` keeps its
    /// thread, engine and descriptors for the life of the process (its loop thread holds it,
    /// and the runtime may still hold unowned references to it through task preferences and
    /// pinned actors), and stays counted here: check it in tests, or use `withRingExecutor`.
    public static var liveCount: Int { live.load(ordering: .relaxed) }
    private static let live = Atomic<Int>(0)

    /// Hands the start-up parameters to the loop thread and its verdict back.
    private final class StartContext: @unchecked Sendable {
        let executor: RingExecutor
        let makeEngine: @Sendable () throws(EngineError) -> (any IOEngine, EngineSelection)
        /// 0 starting, 1 running, 2 failed (then `error` is set before the release store).
        let state = Atomic<Int>(0)
        var error: EngineError?
        init(
            executor: RingExecutor,
            makeEngine: @escaping @Sendable () throws(EngineError) -> (any IOEngine, EngineSelection)
        ) {
            self.executor = executor
            self.makeEngine = makeEngine
        }
    }

    // MARK: Executor conformance

    /// Jobs of tasks that prefer this executor (and of anything else that enqueues here
    /// directly). Actors pinned to the ring enqueue through `asUnownedSerialExecutor()` instead.
    public func enqueue(_ job: consuming ExecutorJob) {
        enqueue(UnownedJob(job), forActor: false)
    }

    func enqueue(_ unowned: UnownedJob, forActor: Bool) {
        let queued = QueuedJob(job: unowned, forActor: forActor)
        if isOnLoopThread && !loopExited {
            if forActor && queued.identity == runningActorJob { runningActorJobBounced = true }
            localJobs.append(queued)  // no lock, no syscall: the loop runs it after this batch
            return
        }
        let accepted = lock.withLock { () -> Bool in
            if exited { return false }
            remoteJobs.append(queued)
            return true
        }
        if accepted {
            wakeIfSleeping()
        } else if forActor {
            enqueueLateActorJob(unowned)
        } else {
            // After shutdown a job here could never run and its task would wait forever: a task
            // that still prefers this executor continues on the global executor instead (its ring
            // operations then fail with ESHUTDOWN).
            globalConcurrentExecutor.enqueue(unowned)
        }
    }

    /// After shutdown, an actor pinned to this executor must still run one job at a time: its
    /// jobs queue here and one short-lived thread at a time runs them in order, isolated to
    /// the actor face (the global executor would run two of them at once). The thread ends
    /// when the queue is empty; the next late job starts another.
    private func enqueueLateActorJob(_ job: UnownedJob) {
        let start = lock.withLock { () -> Bool in
            lateActorJobs.append(job)
            if lateDrainerRunning { return false }
            lateDrainerRunning = true
            return true
        }
        guard start else { return }
        if !startThread({ [self] in drainLateActorJobs() }) {
            drainLateActorJobs()  // no thread to be had: drain here; still one drainer at a time
        }
    }

    private func drainLateActorJobs() {
        let previous = pthread_getspecific(Self.drainingKey)
        pthread_setspecific(Self.drainingKey, Unmanaged.passUnretained(self).toOpaque())
        defer { pthread_setspecific(Self.drainingKey, previous) }
        while true {
            let batch = lock.withLock { () -> [UnownedJob] in
                let jobs = lateActorJobs
                lateActorJobs.removeAll()
                if jobs.isEmpty { lateDrainerRunning = false }
                return jobs
            }
            if batch.isEmpty { return }
            for job in batch { job.runSynchronously(on: actorFace.asUnownedSerialExecutor()) }
        }
    }

    /// Whether the caller is the thread running this executor's late actor jobs.
    fileprivate var isDrainingLateActorJobs: Bool {
        pthread_getspecific(Self.drainingKey) == Unmanaged.passUnretained(self).toOpaque()
    }

    private static let drainingKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    /// The serial executor to pin actors to the ring (`unownedExecutor` of an actor). It is a
    /// separate object that forwards to this executor's queue, so the loop can tell actor jobs
    /// (run isolated to it) from task jobs (run on the executor as a task executor). Running
    /// every job isolated to a serial executor made the runtime hop back out of it at each
    /// nonisolated call: ~10 job runs per awaited operation instead of 1.
    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        actorFace.asUnownedSerialExecutor()
    }

    /// This executor as a task executor preference (`Task(executorPreference:)`, `withTaskExecutorPreference`).
    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    /// Traps unless called on the loop thread: the runtime asks this before it trusts an isolation claim.
    public func checkIsolated() {
        precondition(isOnLoopThread, "not on the RingExecutor's thread")
    }

    /// Whether the caller runs on the loop thread, for the runtime's isolation checks.
    public func isIsolatingCurrentContext() -> Bool? {
        isOnLoopThread
    }

    /// Whether the caller is running on this executor's loop thread (while its loop runs).
    /// Identity is the executor object the loop thread stored in its thread-specific slot, not
    /// the thread's `pthread_t`: glibc hands a finished thread's id to the next thread it
    /// creates, so a shut-down executor would otherwise believe it runs on a newer executor's
    /// thread. Both executors are alive while this compares them, so their addresses differ.
    public var isOnLoopThread: Bool {
        pthread_getspecific(Self.currentKey) == Unmanaged.passUnretained(self).toOpaque()
    }

    /// Runs `body` with this executor as the task's preferred executor: its own code and the
    /// child tasks it creates with `async let` and task groups run on the loop thread. An
    /// unstructured `Task {}` does not inherit the preference; `Task(executorPreference:)` sets it.
    public func run<T: Sendable>(_ body: @Sendable () async throws -> T) async rethrows -> T {
        try await withTaskExecutorPreference(self) { try await body() }
    }

    // MARK: Submitting operations

    /// Submits `entry` and suspends until its completion; returns the raw result (`-errno` on
    /// failure). Memory the entry points to must stay valid until then, which the awaiting
    /// caller guarantees by not returning before this does. On task cancellation the executor
    /// asks the engine to cancel; this still returns only when the kernel has finished with the
    /// request (with `-ECANCELED` when the cancel won, or the real result). Cancelled before
    /// submission: nothing is submitted and the result is `-ECANCELED`. After
    /// `shutdownGracefully()` it returns `-ESHUTDOWN` without submitting. An operation the
    /// engine cannot perform returns `-EOPNOTSUPP` (the throwing APIs say which engine). Inside
    /// this executor's `withTimeout` it is linked to the scope's timeout and returns
    /// `-ETIMEDOUT` when that fired (`-EOPNOTSUPP` on the aio engines).
    ///
    /// The entry must post exactly one completion, for itself. Refused with `-EINVAL`, before
    /// anything is submitted: multishot shapes (poll, accept, recv, recvmsg, read multishot,
    /// multishot timeouts, `RECV_ZC`, multishot `URING_CMD`; use `multishot(_:)`), zero-copy
    /// sends (`SEND_ZC`, `SENDMSG_ZC`: two completions; use `sendZeroCopy`), `IOSQE_CQE_SKIP_SUCCESS` (none),
    /// `.link`/`.hardLink` (it would link into another operation's entry), `MSG_RING` that posts
    /// a completion, poll updates that rewrite another request's `user_data` or make it
    /// multishot, and `IOSQE_BUFFER_SELECT` from a buffer group one of this executor's
    /// `messages()` streams owns.
    public nonisolated(nonsending) func submit(_ entry: SubmissionEntry) async -> Int32 {
        if !isAwaitable(entry, last: true) { return -EINVAL }
        if !engine.supports(entry) { return -EOPNOTSUPP }
        if let deadline = timeoutDeadline() { return await submit(entry, deadline: deadline) }
        return await submitReusingRecord(entry)
    }

    /// Submits a linked chain (e.g. write then fsync): `entries[i]` for `i < count - 1` should
    /// carry `.link` (or `.hardLink`); returns every entry's result, in order. All entries enter
    /// the submission queue together. At most 16 entries, and no more than the executor's
    /// submission queue holds (else `EINVAL`); io_uring only. Each entry must post exactly one
    /// completion (the rules of `submit(_:)`), and the last must not carry `.link`/`.hardLink`:
    /// else `EINVAL` with nothing submitted.
    ///
    /// Not bounded by `withTimeout` (bound the chain's own entries with `.linkTimeout`).
    ///
    /// Cancellation: when the task is cancelled, entries that had not started complete with
    /// `-ECANCELED` in their slot, and the results of those that ran (an opened descriptor,
    /// bytes written) are still returned, so the caller can use or undo them. It throws
    /// `CancellationError` only when nothing ran: cancelled before submission, or every entry
    /// ended with `-ECANCELED`.
    public nonisolated(nonsending) func submitChain(_ entries: [SubmissionEntry]) async throws -> [Int32] {
        guard !entries.isEmpty, entries.count <= Operation.maximumChain else { throw Errno.invalidArgument }
        guard engineSelection.engine == .ioURing else {
            throw EngineError.unsupported(operation: "linked chain", engine: engineSelection.engine)
        }
        for (index, entry) in entries.enumerated() where !isAwaitable(entry, last: index == entries.count - 1) {
            throw Errno.invalidArgument
        }
        let operation = Operation(entries[0])
        operation.chain = Array(entries.dropFirst())
        operation.results = Array(repeating: -ECANCELED, count: entries.count)
        operation.pending = entries.count
        let result = await submit(operation)
        // Refused before reaching the engine (shut down, or longer than the queue): the results
        // were never filled in.
        if !operation.submitted {
            if result == -ESHUTDOWN || result == -EINVAL { throw Errno(rawValue: -result) }
            throw CancellationError()  // cancelled before submission: nothing ran
        }
        if Task.isCancelled && operation.results.allSatisfy({ $0 == -ECANCELED }) { throw CancellationError() }
        return operation.results
    }

    /// Whether the executor can await `entry` as one request with one completion (see `submit`).
    private func isAwaitable(_ entry: SubmissionEntry, last: Bool) -> Bool {
        guard CompletionShape.of(entry) == .one else { return false }
        if last && (entry.sqeFlags.contains(.link) || entry.sqeFlags.contains(.hardLink)) { return false }
        if entry.sqeFlags.contains(.bufferSelect) && bufferGroups.isOwned(entry.bufIndex) { return false }
        return true
    }

    /// `submit(_:)` of a single-entry operation, with a record from the loop's pool when the
    /// caller runs on the loop thread (no allocation); the record goes back to the pool after
    /// the task has read its result.
    @inline(__always)
    nonisolated(nonsending) func submitReusingRecord(_ entry: SubmissionEntry) async -> Int32 {
        var record = takeRecord(entry)
        let result = await submit(record)
        recycle(&record)
        return result
    }

    /// Submits `entry` and waits for its completion whatever happens to the calling task: no
    /// cancellation check, no cancellation handler, no `withTimeout` bound. For cleanup that must
    /// not be skipped (`close` and its cancel-by-descriptor); `-ESHUTDOWN` after shutdown.
    nonisolated(nonsending) func submitIgnoringCancellation(_ entry: SubmissionEntry) async -> Int32 {
        var record = takeRecord(entry)
        let result = await submitIgnoringCancellation(record)
        recycle(&record)
        return result
    }

    /// `submitIgnoringCancellation(_:)` of a record the caller built (a chain, for one).
    nonisolated(nonsending) func submitIgnoringCancellation(_ record: Operation) async -> Int32 {
        record.taskName = Task.name
        let result = await suspendIgnoringCancellation { (continuation: UnsafeContinuation<Int32, Never>) in
            record.continuation = continuation
            if !enqueue(record) { continuation.resume(returning: -ESHUTDOWN) }
        }
        _ = record.handoff.load(ordering: .acquiring)  // pairs with the store in `finish`
        return result
    }

    /// A record for `entry`: a finished one from the pool on the loop thread, else a new one.
    @inline(__always)
    func takeRecord(_ entry: SubmissionEntry) -> Operation {
        if isOnLoopThread, let record = recordPool.popLast() {
            record.reuse(entry)
            return record
        }
        recordsCreated.add(1, ordering: .relaxed)
        return Operation(entry)
    }

    /// Records `takeRecord` had to allocate (tests check that the pool serves the rest).
    var recordsCreatedSoFar: Int { recordsCreated.load(ordering: .relaxed) }

    /// Returns a finished record to the pool, if this is the loop thread and nothing else holds
    /// it (a queued cancel request may: that record is simply dropped). Its last completion has
    /// been reaped and the loop's own reference released before the task could run.
    @inline(__always)
    func recycle(_ record: inout Operation) {
        guard isOnLoopThread, recordPool.count < Self.recordPoolLimit, isKnownUniquelyReferenced(&record),
            record.isReusable
        else { return }
        recordPool.append(record)
    }

    /// Finished records kept for reuse, at most this many (a burst of deep queues does not pin
    /// memory for good).
    private static let recordPoolLimit = 1024

    @inline(__always)
    nonisolated(nonsending) func submit(_ operation: Operation) async -> Int32 {
        if Task.isCancelled { return -ECANCELED }  // cancelled before submission: nothing submitted
        if operation.taskName == nil { operation.taskName = Task.name }  // set by a caller that runs it in a child
        let result = await suspendUntilResumed { (continuation: UnsafeContinuation<Int32, Never>) in
            operation.continuation = continuation
            if !enqueue(operation) { continuation.resume(returning: -ESHUTDOWN) }
        } onCancel: {
            requestCancel(operation)
        }
        _ = operation.handoff.load(ordering: .acquiring)  // pairs with the store in `finish`
        return result
    }

    /// `suspendUntilResumed` without a cancellation handler, for cleanup that must not be skipped.
    @inline(__always)
    nonisolated(nonsending) func suspendIgnoringCancellation<T: Sendable>(
        _ handOver: (UnsafeContinuation<T, Never>) -> Void
    ) async -> T {
        await suspendUntilResumed(cancellable: false, handOver, onCancel: {})
    }

    /// Suspends the task, calls `handOver` with its continuation (which hands the work to the
    /// loop), and returns what the loop resumes it with; `onCancel` runs if the task is
    /// cancelled meanwhile. Every awaited operation and batch waits here.
    ///
    /// Code isolated to an actor pinned to the ring needs care, or every operation takes a trip
    /// through the global executor (~24k NOPs/s at one in flight from a pinned actor, ~600k/s
    /// with it):
    /// - The closure that `withTaskCancellationHandler` runs is nonisolated unless it captures
    ///   an isolated parameter, and nonisolated code of a task without a preference runs on the
    ///   global executor. `suspendOnTheActorFace` takes the caller's isolation as a parameter and
    ///   names it in the closure.
    /// - Swift resumes a continuation on the task's executor preference, and a task without one
    ///   on the global executor. A task that does not prefer this executor gets it as its
    ///   preference for the length of the wait (code isolated to the actor runs on the actor
    ///   face whatever the preference says).
    /// Everywhere else (a task that prefers the ring, a caller off the loop) the plain form is
    /// cheaper: the isolated parameter costs an executor switch, and a switch of a task with a
    /// preference takes a lock in the runtime. With `cancellable` false the wait has no
    /// cancellation handler and `onCancel` is not used (`suspendIgnoringCancellation`).
    /// (The closures are not optional: an optional closure escapes, and its context would be
    /// allocated on the heap for every operation.)
    @inline(__always)
    nonisolated(nonsending) func suspendUntilResumed<T: Sendable>(
        cancellable: Bool = true, _ handOver: (UnsafeContinuation<T, Never>) -> Void,
        onCancel: @Sendable () -> Void
    ) async -> T {
        if isOnLoopThread && runningActorJob != 0 {
            return await suspendOnTheActorFace(
                cancellable: cancellable, handOver, onCancel: onCancel, task: runningActorJob)
        }
        if !cancellable { return await withUnsafeContinuation(handOver) }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation(handOver)
        } onCancel: {
            onCancel()
        }
    }

    /// `task`: the running actor job's address, to correct the loop's guess for it.
    private func suspendOnTheActorFace<T: Sendable>(
        cancellable: Bool, _ handOver: (UnsafeContinuation<T, Never>) -> Void, onCancel: @Sendable () -> Void,
        task: UInt, isolation: isolated (any Actor)? = #isolation
    ) async -> T {
        // The task's real preference (cheap without one: a flag; with one, the runtime reads it
        // under the task's lock), not the loop's guess, which a crowd of tasks can evict.
        let prefersThis = withUnsafeCurrentTask { $0?.unownedTaskExecutor } == asUnownedTaskExecutor()
        tasksWithoutPreference[Self.preferenceSlot(of: task)] = prefersThis ? 0 : task
        if prefersThis { return await waitIsolated(cancellable: cancellable, handOver, onCancel: onCancel) }
        return await withTaskExecutorPreference(self) {
            _ = isolation  // isolated to the caller's actor, like the closure below
            return await waitIsolated(cancellable: cancellable, handOver, onCancel: onCancel)
        }
    }

    @inline(__always)
    private func waitIsolated<T: Sendable>(
        cancellable: Bool, _ handOver: (UnsafeContinuation<T, Never>) -> Void, onCancel: @Sendable () -> Void,
        isolation: isolated (any Actor)? = #isolation
    ) async -> T {
        if !cancellable { return await withUnsafeContinuation(isolation: isolation, handOver) }
        return await withTaskCancellationHandler {
            _ = isolation  // makes this closure isolated to the caller's actor
            return await withUnsafeContinuation(handOver)
        } onCancel: {
            onCancel()
        }
    }

    /// Whether shutdown has begun (`shutdown(deadline:)` or `shutdownGracefully` was called).
    /// See `waitForShutdown()` to be told.
    public var isShuttingDown: Bool { shutdownBegan.load(ordering: .acquiring) }

    /// The loop has exited: nothing more is accepted.
    var isShutDown: Bool { lock.withLock { exited } }

    /// The counters as the loop left them; nil while it runs.
    var countersAtExit: LoopCounters? { lock.withLock { finalCounters } }

    /// Records handed to the executor and not yet to the engine (loop thread): the loop's queue,
    /// then those other threads queued since its last tick.
    func queuedOperations() -> [Operation] {
        localSubmissions + lock.withLock { remoteSubmissions }
    }

    /// Queues a record for the loop; false after shutdown. The record's continuation (if any)
    /// must be set before this is called.
    func enqueue(_ operation: Operation) -> Bool {
        if isOnLoopThread {
            localSubmissions.append(operation)
            return true
        }
        let accepted = lock.withLock { () -> Bool in
            if exited { return false }
            remoteSubmissions.append(operation)
            return true
        }
        if accepted { wakeIfSleeping() }
        return accepted
    }

    /// Queues a batch's records for the loop, all or none; false after shutdown.
    func enqueue(batch operations: [Operation]) -> Bool {
        if isOnLoopThread {
            localSubmissions.append(contentsOf: operations)
            return true
        }
        let accepted = lock.withLock { () -> Bool in
            if exited { return false }
            remoteSubmissions.append(contentsOf: operations)
            return true
        }
        if accepted { wakeIfSleeping() }
        return accepted
    }

    /// Asks the loop to cancel every record of a batch (from any thread).
    func requestCancel(batch operations: [Operation]) {
        if isOnLoopThread && !loopExited {
            localCancels.append(contentsOf: operations)
            return
        }
        let accepted = lock.withLock { () -> Bool in
            if exited { return false }
            remoteCancels.append(contentsOf: operations)
            return true
        }
        if accepted { wakeIfSleeping() }
    }

    /// Asks the loop to cancel `operation` (from any thread; harmless if it already finished).
    func requestCancel(_ operation: Operation) {
        if isOnLoopThread && !loopExited {
            localCancels.append(operation)
            return
        }
        // After shutdown nothing is in flight any more: a late cancel has nothing to do (and
        // keeping it would keep its record, and through it this executor, alive).
        let accepted = lock.withLock { () -> Bool in
            if exited { return false }
            remoteCancels.append(operation)
            return true
        }
        if accepted { wakeIfSleeping() }
    }

    /// Like `submit`, but throws: `CancellationError` when cancellation won,
    /// `EngineError.unsupported` when the engine cannot do it, the `Errno` for other failures
    /// (`timedOut` when an enclosing `withTimeout` deadline passed).
    nonisolated(nonsending) func perform(_ entry: SubmissionEntry) async throws -> Int {
        if let uring = uringEngine {
            if !uring.offers(entry.op), let needs = entry.op.introduced {
                // Rather than the kernel's bare EINVAL: which operation, and which release has it.
                throw EngineError.kernelLacks(operation: Self.operationName(entry.op), needs: needs)
            }
        } else if !engine.supports(entry) {
            var name = Self.operationName(entry.op)
            var positioned = entry
            positioned.off = 0
            if entry.off == SubmissionEntry.currentPosition && [.read, .write, .readv, .writev].contains(entry.op)
                && engine.supports(positioned)
            {
                name += " at the file position"  // the aio engines need an explicit offset
            }
            throw EngineError.unsupported(operation: name, engine: engineSelection.engine)
        }
        let result: Int32
        if let deadline = timeoutDeadline() {
            guard engineSelection.engine == .ioURing else {
                throw EngineError.unsupported(operation: "withTimeout", engine: engineSelection.engine)
            }
            result = await submit(entry, deadline: deadline)
        } else {
            result = await submitReusingRecord(entry)
        }
        if result >= 0 { return Int(result) }
        // A cancelled request that a kernel worker was already running ends with EINTR (the
        // worker is interrupted; Linux 6.1 does this to pipe reads, for one): cancelled too.
        if (result == -ECANCELED || result == -EINTR) && Task.isCancelled { throw CancellationError() }
        throw Errno(rawValue: -result)
    }

    /// "IORING_OP_ACCEPT" -> "accept": the engine-neutral name of an operation.
    static func operationName(_ op: Opcode) -> String {
        String(op.kernelName.dropFirst("IORING_OP_".count)).lowercased()
    }

    /// Runs `body` on the loop thread with the executor's io_uring, for what the async API does
    /// not wrap (registering files or buffers, buffer rings). Must be called on the loop thread
    /// (e.g. from a task that prefers this executor): elsewhere it throws `ESHUTDOWN` once
    /// shutdown has begun (such a task then runs on the global executor) and `EPERM` before.
    /// Throws `unsupported` on other engines.
    public func withRing<T, E: Error>(_ body: (inout Ring) throws(E) -> T) throws -> T {
        guard isOnLoopThread else {
            throw Errno(rawValue: stopping.load(ordering: .acquiring) ? ESHUTDOWN : EPERM)
        }
        guard let uring = engine as? URingEngine else {
            throw EngineError.unsupported(operation: "direct ring access", engine: engineSelection.engine)
        }
        return try body(&uring.ring)
    }

    /// System calls the loop thread has made into its engine so far (`io_uring_enter` for
    /// io_uring; `io_submit`, `poll`, eventfd reads and `io_getevents` for libaio; the glibc aio
    /// calls for POSIX aio, whose helper threads make the I/O calls themselves). For benchmarks.
    public var systemCalls: Int { systemCallCounter.load(ordering: .relaxed) }

    /// Operations handed to the loop and not yet completed, as of the loop's last tick.
    public var operationsInFlight: Int { inFlightCounter.load(ordering: .relaxed) }

    // MARK: Shutdown

    /// Stops the loop once every job has run and every operation has completed. Operations still
    /// in flight after `deadline` are cancelled (their tasks resume with `CancellationError`,
    /// `ECANCELED` or their real result); open `connections()`, `messages()` and `multishot()`
    /// streams end at once. Blocks the calling thread until the loop thread has been joined,
    /// also when another caller started the shutdown (the earliest deadline of all callers
    /// wins); call it from outside the executor. From async code prefer `shutdown(deadline:)`.
    /// Later submissions fail with `ESHUTDOWN`.
    ///
    /// Called on the executor's own loop thread (from a task or actor running there) it could
    /// only wait for itself forever: it stops the process with a message saying so, in release
    /// builds too. From there, `await shutdown(deadline:)` does not block and works.
    public func shutdownGracefully(deadline: Duration = .seconds(30)) {
        refuseToBlockOnLoopThread(
            "RingExecutor.shutdownGracefully() was called on the executor's own loop thread, "
                + "where it would wait for itself forever; use `await executor.shutdown(deadline:)` there")
        waitForLoopExit(joining: beginShutdown(deadline))
    }

    /// `shutdownGracefully(deadline:)` without blocking a thread: the loop thread is joined on
    /// a helper thread, and this returns once it has been. May be called from the executor's
    /// own tasks (they continue on the global executor afterwards).
    public func shutdown(deadline: Duration = .seconds(30)) async {
        await loopExit(joining: beginShutdown(deadline))
    }

    /// Stops the process with `message` when called on this executor's loop thread, where a
    /// blocking wait for the loop to exit would wait for itself.
    func refuseToBlockOnLoopThread(_ message: @autoclosure () -> String) {
        if isOnLoopThread { fatalError(message()) }
    }

    /// Blocks until the loop thread has exited: joins it if `joining` (the caller that began
    /// the shutdown), else waits for the caller that does.
    func waitForLoopExit(joining: Bool) {
        if joining {
            pthread_join(joinHandle, nil)
            finishShutdown()
        } else {
            exitLatch.wait()
        }
    }

    /// Returns once the loop thread has exited, without blocking a thread: if `joining`, the
    /// join happens on a helper thread.
    func loopExit(joining: Bool) async {
        if joining {
            let handle = joinHandle
            let joiner: @Sendable () -> Void = { [self] in
                pthread_join(handle, nil)
                finishShutdown()
            }
            if !startThread(joiner) { joiner() }  // no thread to be had: join here
        }
        await exitLatch.wait()
    }

    /// Wakes the tasks waiting for shutdown, then publishes the deadline and `stopping`, both
    /// under the lock, so the loop never sees `stopping` with a stale deadline. True for the one
    /// caller that must join the thread.
    ///
    /// The waiters first: resuming them queues their tasks on their executors (this one's among
    /// them) before this loop can see `stopping`, and the loop exits only with its queues empty,
    /// so a task that hears of the shutdown still runs here and can submit. Told first, an idle
    /// loop could exit before they were queued, and their operations failed with `ESHUTDOWN`.
    func beginShutdown(_ deadline: Duration) -> Bool {
        let end = ContinuousClock.now + deadline
        let claimed = lock.withLock { () -> Bool in
            if joinClaimed {
                shutdownDeadline = min(shutdownDeadline, end)  // the loop rereads it each tick
                return false
            }
            joinClaimed = true
            shutdownDeadline = end  // read by the loop only once it sees `stopping`
            return true
        }
        guard claimed else { return false }
        shutdownBegan.store(true, ordering: .releasing)  // `isShuttingDown`, for the waiters
        shutdownSignal.fire()
        lock.withLock { stopping.store(true, ordering: .releasing) }
        afterStoppingPublished?()
        wakeByEventfd()
        return true
    }

    /// After the join: the executor no longer counts as live, and every waiter may return.
    private func finishShutdown() {
        Self.live.subtract(1, ordering: .relaxed)
        exitLatch.open()
    }

    // MARK: The loop

    /// Called by other threads after they added to a remote queue (and left the lock).
    private func wakeIfSleeping() {
        // Two sequentially consistent pairs: our flag store then `sleeping` load, against the
        // loop's `sleeping` store then flag load. Either the loop sees the flag and does not
        // block, or we see it blocked and wake it.
        remotePending.store(true, ordering: .sequentiallyConsistent)
        guard sleeping.load(ordering: .sequentiallyConsistent) else { return }
        // From another io_uring executor's loop thread, a MSG_RING costs that thread nothing
        // until its next submit; from anywhere else, write the eventfd.
        if ringFD != nil, let current = RingExecutor.current, current !== self, current.ringFD != nil {
            current.pendingMessages.append(self)
        } else {
            wakeByEventfd()
        }
    }

    /// Whether the loop has announced that it is about to block (or is blocked) waiting for the
    /// kernel. Work handed over from another thread while this holds wakes the loop through its
    /// eventfd (see `wakeIfSleeping`). For tests that need the loop asleep first.
    var loopIsAsleep: Bool { sleeping.load(ordering: .sequentiallyConsistent) }

    /// Wakes the loop through its engine's eventfd (or aio signal), from any thread.
    func wakeByEventfd() {
        eventfdWakeUps.add(1, ordering: .relaxed)
        engine.wake()
    }

    /// The executor whose loop runs on this thread, if any.
    static var current: RingExecutor? {
        guard let raw = pthread_getspecific(currentKey) else { return nil }
        return Unmanaged<RingExecutor>.fromOpaque(raw).takeUnretainedValue()
    }

    private static let currentKey: pthread_key_t = {
        var key = pthread_key_t()
        pthread_key_create(&key, nil)
        return key
    }()

    private func threadMain(_ context: StartContext) {
        // The loop thread's identity (see `isOnLoopThread`), cleared when the loop has ended.
        pthread_setspecific(Self.currentKey, Unmanaged.passUnretained(self).toOpaque())
        // A write to a pipe or socket whose reader is gone raises SIGPIPE at the submitting
        // thread, which would kill the process; block it here so the write fails with EPIPE.
        var blocked = sigset_t()
        sigemptyset(&blocked)
        sigaddset(&blocked, SIGPIPE)
        pthread_sigmask(SIG_BLOCK, &blocked, nil)
        do {
            let (engine, selection) = try context.makeEngine()
            engineStorage = engine
            uringEngine = engine as? URingEngine
            engineRingFD = uringEngine?.ringFD.rawValue
            engineSelection = selection
            submitBatch = engine.submitBatch
            // MSG_RING wake-ups only where the kernel has them (5.18); else the eventfd.
            ringFD = (engine as? URingEngine).flatMap { $0.canMessage ? $0.ringFD : nil }
        } catch {
            context.error = error
            context.state.store(2, ordering: .releasing)
            return
        }
        context.state.store(1, ordering: .releasing)
        runLoop()
        pthread_setspecific(Self.currentKey, nil)
    }

    /// Jobs run per tick before the loop looks at the engine again, so I/O keeps flowing under a
    /// flood of runnable tasks.
    private static let jobBatch = 64

    private func runLoop() {
        let engine = self.engine
        let uring = engine as? URingEngine
        var streamsEnded = false
        var reaped: [(UInt64, Int32, UInt32)] = []
        reaped.reserveCapacity(256)
        var lastCancelAll = ContinuousClock.now - .seconds(1)

        while true {
            // 1. Take what other threads handed over. The exchange reads the flag store that
            // followed their append (acquire), so the lock below sees what they added; anything
            // added after it sets the flag again for the next tick.
            if remotePending.exchange(false, ordering: .acquiring) {
                lock.withLock {
                    if !remoteJobs.isEmpty {
                        counters.jobsFromOtherThreads &+= remoteJobs.count
                        localJobs.append(contentsOf: remoteJobs)
                        remoteJobs.removeAll(keepingCapacity: true)
                    }
                    if !remoteSubmissions.isEmpty {
                        localSubmissions.append(contentsOf: remoteSubmissions)
                        remoteSubmissions.removeAll(keepingCapacity: true)
                    }
                    if !remoteCancels.isEmpty {
                        localCancels.append(contentsOf: remoteCancels)
                        remoteCancels.removeAll(keepingCapacity: true)
                    }
                }
            }

            // 2. Run a bounded batch of ready jobs (they may enqueue more, and submissions).
            runJobs()

            // 3. Cancellations first, so an operation cancelled before submission never starts.
            if !localCancels.isEmpty { processCancels() }

            // 4. Hand queued operations to the engine; what does not fit waits for the next tick.
            if !pendingMessages.isEmpty, let uring {
                var sent = 0
                while sent < pendingMessages.count {
                    let target = pendingMessages[sent]
                    if let fd = target.ringFD {
                        guard uring.message(fd, token: URingEngine.messageToken(target.wakeID)) else { break }
                    } else {
                        target.wakeByEventfd()
                    }
                    sent += 1
                }
                pendingMessages.removeFirst(sent)
                messagesSent.add(sent, ordering: .relaxed)
            }
            if !localSubmissions.isEmpty { moveSubmissions() }

            // 5. Shutdown: exit when idle; past the deadline, cancel what is left.
            let isStopping = stopping.load(ordering: .acquiring)
            if isStopping {
                ticksWhileStopping.add(1, ordering: .relaxed)
                if !streamsEnded {
                    // Streams would hold shutdown for the whole deadline: end them now (new or
                    // re-armed ones are refused in `moveSubmissions`).
                    streamsEnded = true
                    localCancels.append(contentsOf: liveStreams.values)
                }
                if localJobs.isEmpty && localSubmissions.isEmpty && inFlight == 0 {
                    // Exit only if nothing slipped in from other threads meanwhile; from here on,
                    // their submissions fail with ESHUTDOWN and their jobs go elsewhere.
                    let quiet = lock.withLock { () -> Bool in
                        guard remoteJobs.isEmpty && remoteSubmissions.isEmpty else { return false }
                        exited = true
                        finalCounters = countersNow()
                        remoteCancels.removeAll()  // nothing is in flight: they are moot
                        return true
                    }
                    if quiet { break }
                    continue
                }
                let deadline = lock.withLock { shutdownDeadline }
                // Past the deadline, cancel whatever is in flight, again each tick (the loop
                // wakes every 10 ms while stopping) so late submissions are caught too. Only
                // Task.sleep timers left: nothing worth waiting for, fire them now.
                let onlySleepers = inFlight == schedulerTimersInFlight && localJobs.isEmpty && localSubmissions.isEmpty
                let now = ContinuousClock.now
                if inFlight > 0 && (onlySleepers || now >= deadline) && now - lastCancelAll >= .milliseconds(5) {
                    engine.cancelAll()
                    cancelledEverything = true
                    lastCancelAll = now
                }
            }

            // 6. Submit; block only when nothing is runnable.
            if !watchedSleeps.isEmpty { sweepCancelledSleeps() }
            if !cancelledChains.isEmpty { recancelChains() }
            if localJobs.isEmpty && localSubmissions.isEmpty && localCancels.isEmpty && pendingMessages.isEmpty {
                sleeping.store(true, ordering: .sequentiallyConsistent)
                let pending = remotePending.load(ordering: .sequentiallyConsistent)
                if pending || isStopping && inFlight == 0 {
                    sleeping.store(false, ordering: .relaxed)
                    engine.submit(wait: false, timeout: nil)
                } else {
                    // Current while blocked.
                    inFlightCounter.store(inFlight + localSubmissions.count, ordering: .relaxed)
                    // While stopping, wake every 10 ms to re-check; while sleeps are watched, wake
                    // for the next sweep; while cancelled chains wait, for their next cancels.
                    var wakeAt: ContinuousClock.Instant? = watchedSleeps.isEmpty ? nil : nextSweep
                    if !cancelledChains.isEmpty { wakeAt = min(wakeAt ?? nextChainRecancel, nextChainRecancel) }
                    let timeout: Duration? =
                        isStopping ? .milliseconds(10) : wakeAt.map { max(.milliseconds(1), $0 - .now) }
                    engine.submit(wait: true, timeout: timeout)
                    sleeping.store(false, ordering: .relaxed)
                }
            } else {
                engine.submit(wait: false, timeout: nil)
            }

            // 7. Reap every completion, then resume (resuming may enqueue jobs locally).
            reaped.removeAll(keepingCapacity: true)
            engine.reap { reaped.append(($0, $1, $2)) }
            if !reaped.isEmpty { reapedAt = monotonicNanoseconds() }
            for (token, result, flags) in reaped { complete(token: token, result: result, flags: flags) }
            if let uring, !uring.failedMessages.isEmpty { wakeAfterFailedMessages(uring) }
            systemCallCounter.store(engine.systemCalls, ordering: .relaxed)
            inFlightCounter.store(inFlight + localSubmissions.count, ordering: .relaxed)
        }
        loopExited = true
        localCancels.removeAll()
        recordPool.removeAll()
        // Completed records still listed here hold closures that hold this executor.
        watchedSleeps.removeAll()
        cancelledChains.removeAll()
        liveStreams.removeAll()
        pendingMessages.removeAll()
        engine.close()
    }

    /// Runs up to `jobBatch` jobs in order, including those the batch itself enqueues.
    private func runJobs() {
        var ran = 0
        while ran < Self.jobBatch, let next = localJobs.popFirst() {
            if next.forActor {
                runActorJob(next)
            } else {
                next.job.runSynchronously(on: asUnownedTaskExecutor())
            }
            ran += 1
            counters.jobsRun &+= 1
            if localSubmissions.count >= submitBatch {
                // A batch is ready: let it start while the other jobs run (a disk request
                // queued by the first job would otherwise wait for all 64 to finish).
                if !localCancels.isEmpty { processCancels() }
                moveSubmissions()
            }
        }
    }

    /// Runs a job isolated to the actor face. The runtime compares the task executor a job runs
    /// with against its task's preference at every executor switch, and a mismatch costs a hop
    /// (the task is queued again) even when the actor stays the same. Nothing public tells a
    /// job's preference, so the loop learns it: a job runs with this executor as its task
    /// executor (a task that prefers the ring, calling into an actor pinned to it) unless it is
    /// in `tasksWithoutPreference`; a job that queues itself on the actor face again while it
    /// runs has bounced off such a mismatch, and its entry flips. Guessing wrong costs one hop,
    /// never isolation: the job runs isolated to the actor face either way.
    private func runActorJob(_ next: QueuedJob) {
        let id = next.identity
        let slot = Self.preferenceSlot(of: id)
        let withoutPreference = tasksWithoutPreference[slot] == id
        runningActorJob = id
        runningActorJobBounced = false
        if withoutPreference {
            next.job.runSynchronously(on: actorFace.asUnownedSerialExecutor())
        } else {
            next.job.runSynchronously(
                isolatedTo: actorFace.asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
        }
        runningActorJob = 0
        if runningActorJobBounced {
            tasksWithoutPreference[slot] = withoutPreference ? 0 : id
        }
    }

    /// A task's slot in `tasksWithoutPreference` (a multiplicative hash of its address).
    @inline(__always)
    private static func preferenceSlot(of task: UInt) -> Int {
        Int(truncatingIfNeeded: (task &* 0x9E37_79B9_7F4A_7C15) >> 54)  // 1,024 slots
    }

    private func processCancels() {
        let cancels = localCancels
        localCancels.removeAll(keepingCapacity: true)
        for (position, operation) in cancels.enumerated() where !operation.cancelRequested && !operation.completed {
            operation.cancelRequested = true
            guard operation.submitted else { continue }  // not yet handed over: never will be
            // A zero-copy send that has sent: its notification is not a request to cancel.
            if operation.sendCompleted { continue }
            // Ask the engine for every entry still expected. The record stays retained until
            // its last completion is reaped, so its token cannot name another operation.
            if !requestEngineCancels(operation) {
                // No room: this one and the rest wait for the next tick (trying each of
                // thousands against a full queue every tick would be quadratic).
                operation.cancelRequested = false
                localCancels.append(contentsOf: cancels[position...])
                return
            }
            if !operation.chain.isEmpty {
                if cancelledChains.isEmpty { nextChainRecancel = .now + Self.chainRecancelInterval }
                cancelledChains.append(operation)
            }
        }
    }

    /// Queues a cancel for each of `operation`'s entries still expected; false when the
    /// submission queue ran out of room first.
    private func requestEngineCancels(_ operation: Operation) -> Bool {
        for index in 0..<operation.entryCount
        where operation.chain.isEmpty || operation.results[index] == -ECANCELED {
            if !engine.cancel(token: operation.token + UInt64(index)) { return false }
        }
        return true
    }

    /// Asks again, every `chainRecancelInterval`, for the cancels of chains that have not ended.
    /// The kernel issues a chain's next entry only once the one before it has completed, as
    /// task work that (with `DEFER_TASKRUN`) runs while this thread waits in `io_uring_enter`,
    /// after the entries that call submitted: a cancel that arrives in between finds nothing
    /// (`-ENOENT`), and the entry then starts and may wait for good (a read of an empty pipe).
    /// Cancels that find nothing are harmless; the chain's record is retained until its last
    /// completion is reaped, so its tokens name nothing else meanwhile.
    private func recancelChains() {
        cancelledChains.removeAll { $0.completed }
        let now = ContinuousClock.now
        guard !cancelledChains.isEmpty && now >= nextChainRecancel && localCancels.isEmpty else { return }
        for operation in cancelledChains {
            if !requestEngineCancels(operation) { break }  // the queue is full: the rest next time
        }
        nextChainRecancel = now + Self.chainRecancelInterval
    }

    private static let chainRecancelInterval: Duration = .milliseconds(1)

    /// Hands queued operations to the engine: a version specialised for io_uring (no protocol
    /// calls per operation), the generic one for the others.
    private func moveSubmissions() {
        if let uringEngine { moveSubmissions(to: uringEngine) } else { moveSubmissions(to: engine) }
    }

    private func moveSubmissions<Engine: IOEngine>(to engine: Engine) {
        var moved = 0
        let now = monotonicNanoseconds()
        for operation in localSubmissions {
            if operation.cancelRequested {
                finishUnsubmitted(operation, result: -ECANCELED)
                moved += 1
                continue
            }
            if operation.endsAtShutdown && stopping.load(ordering: .relaxed) {
                finishUnsubmitted(operation, result: -ESHUTDOWN)  // a stream started or re-armed during shutdown
                moved += 1
                continue
            }
            let count = operation.entryCount
            if count > engine.submissionCapacity {
                finishUnsubmitted(operation, result: -EINVAL)  // a chain longer than the queue could never start
                moved += 1
                continue
            }
            guard engine.submissionSpace >= count else {
                counters.submissionQueueFull &+= 1
                break
            }
            let token = operation.token
            _ = engine.prepare(operation.entry, token: token)
            for (index, entry) in operation.chain.enumerated() {
                _ = engine.prepare(entry, token: token + UInt64(index + 1))
            }
            _ = Unmanaged.passRetained(operation)  // released when its last completion is reaped
            operation.submitted = true
            operation.submittedAt = now
            linkInFlight(operation)
            counters.submitted &+= 1
            inFlight += 1
            if operation.isSchedulerTimer {
                schedulerTimersInFlight += 1
                if operation.sleepingTask != nil { watchedSleeps.append(operation) }
            }
            if operation.endsAtShutdown { liveStreams[ObjectIdentifier(operation)] = operation }
            moved += 1
        }
        if moved > 0 { localSubmissions.removeFirst(moved) }
    }

    private func complete(token: UInt64, result raw: Int32, flags: UInt32) {
        let (unmanaged, index) = Operation.from(token: token)
        let operation = unmanaged.takeUnretainedValue()
        let result = Self.settled(raw, cancelled: operation.cancelRequested || cancelledEverything)
        // Read before `onEach` runs: a stream clears its callback at its final completion.
        let isStream = operation.onEach != nil
        if let onEach = operation.onEach {
            onEach(result, flags)
            if flags & CQEFlags.more.rawValue != 0 { return }  // more completions will follow
        } else if operation.awaitsNotification {
            // The send's own completion, then (if it had F_MORE) the notification. The kernel
            // posts them in that order (io_uring_prep_send_zc(3)); the buffer is the caller's
            // again only after the last.
            if flags & CQEFlags.notification.rawValue != 0 {
                operation.notificationResult = raw
            } else {
                operation.sendResult = result
                operation.sendCompleted = true
            }
            if flags & CQEFlags.more.rawValue != 0 { return }
        } else if !operation.chain.isEmpty {
            operation.results[index] = result
        }
        operation.pending -= 1
        guard operation.pending == 0 else { return }
        unlinkInFlight(operation)
        if !isStream { counters.latency.record(reapedAt &- operation.submittedAt) }
        inFlight -= 1
        if operation.isSchedulerTimer { schedulerTimersInFlight -= 1 }
        if operation.endsAtShutdown { liveStreams.removeValue(forKey: ObjectIdentifier(operation)) }
        // Current before the task resumes, so a task that reads it after its own operation
        // does not see that operation still counted (a plain store on x86 and arm64).
        inFlightCounter.store(inFlight + localSubmissions.count, ordering: .relaxed)
        let outcome =
            operation.awaitsNotification
            ? operation.sendResult : operation.chain.isEmpty ? result : operation.results[0]
        finish(operation, result: outcome)
        unmanaged.release()
    }

    /// A request a kernel worker was running when the cancel came is interrupted rather than
    /// cancelled: `-EINTR` (Linux 6.1 does this to pipe reads), or even the kernel-internal
    /// restart codes (an open waiting in a worker for a FIFO's other end ends with
    /// `-ERESTARTSYS` on 6.18), which no system call hands to user space. Those read as
    /// `-EINTR`, and as `-ECANCELED` when a cancel was asked for: it won.
    static func settled(_ result: Int32, cancelled: Bool) -> Int32 {
        // ERESTARTSYS, ERESTARTNOINTR, ERESTARTNOHAND, ERESTART_RESTARTBLOCK (linux/errno.h).
        let interrupted = result == -EINTR || result == -512 || result == -513 || result == -514 || result == -516
        guard interrupted else { return result }
        return cancelled ? -ECANCELED : -EINTR
    }

    /// Ends an operation that never reached the engine; a multishot one hears it as its final
    /// completion, so its stream ends too.
    private func finishUnsubmitted(_ operation: Operation, result: Int32) {
        operation.onEach?(result, 0)
        finish(operation, result: result)
    }

    private func finish(_ operation: Operation, result: Int32) {
        precondition(!operation.completed, "an operation completed twice")
        operation.completed = true
        if operation.countsLastEntry && operation.submitted, let last = operation.chain.last {
            counters.count(operation.results[operation.results.count - 1], of: last.op)
        } else {
            counters.count(result, of: operation.entry.op)
        }
        if let batch = operation.batch {
            batch._withUnsafeGuaranteedRef { batch in
                batch.results[operation.batchIndex] = result
                batch.remaining -= 1
                guard batch.remaining == 0 else { return }
                batch.handoff.store(true, ordering: .releasing)  // pairs with the task's acquire
                let continuation = batch.continuation
                batch.continuation = nil
                continuation?.resume(returning: false)
            }
            return
        }
        operation.handoff.store(true, ordering: .releasing)
        let continuation = operation.continuation
        operation.continuation = nil
        continuation?.resume(returning: result)
    }

    /// Asks the engine to cancel the watched sleep timers whose task has been cancelled (the
    /// runtime resumed those sleeps already; their timers would otherwise stay armed). Runs
    /// at most once per interval that grows with the number watched, so a large idle set costs
    /// little.
    private func sweepCancelledSleeps() {
        let now = ContinuousClock.now
        // Not while earlier cancels still wait for room in the submission queue.
        guard now >= nextSweep && localCancels.isEmpty else { return }
        // In submission order, which for equal durations is the order of the kernel's sorted
        // timeout list, so each cancel finds its timer near the front of that list.
        watchedSleeps.removeAll { $0.completed }  // their task was released with the timer
        for operation in watchedSleeps where !operation.cancelRequested {
            if let task = operation.sleepingTask, taskIsCancelled(task) { localCancels.append(operation) }
        }
        nextSweep = now + .milliseconds(50) + .microseconds(watchedSleeps.count)
    }

    /// `MSG_RING` wake-ups the kernel refused (target ring full, out of memory, gone): write
    /// the target's eventfd instead, so the wake-up is not lost.
    private func wakeAfterFailedMessages(_ uring: URingEngine) {
        for id in uring.failedMessages {
            messagesFailed.add(1, ordering: .relaxed)
            WakeRegistry.shared.executor(id)?.wakeByEventfd()
        }
        uring.failedMessages.removeAll(keepingCapacity: true)
    }
}

/// Runs `body` with a new executor (parameters as in `RingExecutor.init`) and shuts it down
/// when `body` returns or throws, without blocking a thread (`shutdown(deadline:)` with
/// `shutdownDeadline`). The scoped form of `RingExecutor`: the executor cannot outlive the
/// scope by accident (a dropped executor keeps its thread and descriptors; see `liveCount`).
public func withRingExecutor<T>(
    entries: Int = 256, engine: EngineChoice = .automatic, submitBatch: Int = RingExecutor.defaultSubmitBatch,
    shutdownDeadline: Duration = .seconds(30), isolation: isolated (any Actor)? = #isolation,
    _ body: (RingExecutor) async throws -> T
) async throws -> T {
    let executor = try RingExecutor(entries: entries, engine: engine, submitBatch: submitBatch)
    let result: T
    do {
        result = try await body(executor)
    } catch {
        await executor.shutdown(deadline: shutdownDeadline)
        throw error
    }
    await executor.shutdown(deadline: shutdownDeadline)
    return result
}

/// Starts a detached thread running `body`; false if none could be started.
func startThread(_ body: @escaping @Sendable () -> Void) -> Bool {
    final class Box: @unchecked Sendable {
        let body: @Sendable () -> Void
        init(_ body: @escaping @Sendable () -> Void) { self.body = body }
    }
    let box = Unmanaged.passRetained(Box(body))
    var thread = pthread_t()
    let created = pthread_create(
        &thread, nil,
        { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box.toOpaque())
    guard created == 0 else {
        box.release()
        return false
    }
    pthread_detach(thread)
    return true
}

/// A gate that opens once: blocking and async waiters both return after `open()`.
final class Latch: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    // Under `mutex`.
    private var isOpen = false
    private var waiters: [UnsafeContinuation<Void, Never>] = []

    init() {
        mutex.initialize(to: pthread_mutex_t())
        pthread_mutex_init(mutex, nil)
        condition.initialize(to: pthread_cond_t())
        pthread_cond_init(condition, nil)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func open() {
        pthread_mutex_lock(mutex)
        isOpen = true
        let resumed = waiters
        waiters.removeAll()
        pthread_cond_broadcast(condition)
        pthread_mutex_unlock(mutex)
        for waiter in resumed { waiter.resume() }
    }

    func wait() {
        pthread_mutex_lock(mutex)
        while !isOpen { pthread_cond_wait(condition, mutex) }
        pthread_mutex_unlock(mutex)
    }

    func wait() async {
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            pthread_mutex_lock(mutex)
            if isOpen {
                pthread_mutex_unlock(mutex)
                continuation.resume()
            } else {
                waiters.append(continuation)
                pthread_mutex_unlock(mutex)
            }
        }
    }
}

/// Executors by `wakeID`, for the rare `MSG_RING` wake-up that fails: the failed completion
/// carries only the id, and the target may be gone by then (weak references).
final class WakeRegistry: @unchecked Sendable {
    static let shared = WakeRegistry()
    private struct Entry { weak var executor: RingExecutor? }
    private let lock = Lock()
    private var next: UInt64 = 1
    private var entries: [UInt64: Entry] = [:]

    func nextID() -> UInt64 {
        lock.withLock {
            defer { next += 1 }; return next
        }
    }
    func register(_ executor: RingExecutor) { lock.withLock { entries[executor.wakeID] = Entry(executor: executor) } }
    func unregister(_ id: UInt64) { _ = lock.withLock { entries.removeValue(forKey: id) } }
    func executor(_ id: UInt64) -> RingExecutor? { lock.withLock { entries[id]?.executor } }
    /// The ids of the executors registered, oldest first (look each up with `executor(_:)`, so
    /// only the one in use is retained).
    func ids() -> [UInt64] { lock.withLock { entries.keys.sorted() } }
}

/// The serial-executor face of a `RingExecutor` (see `RingExecutor.asUnownedSerialExecutor`):
/// actor jobs enqueued here run on the same loop thread, in the same queue, marked to run
/// isolated to this executor.
final class RingActorExecutor: SerialExecutor, @unchecked Sendable {
    /// Set once by the owner's init, before the owner is shared; the owner keeps this object
    /// alive, so the reference back is unretained.
    fileprivate var owner: Unmanaged<RingExecutor>?
    private var ring: RingExecutor { owner.unsafelyUnwrapped.takeUnretainedValue() }

    func enqueue(_ job: consuming ExecutorJob) {
        ring.enqueue(UnownedJob(job), forActor: true)
    }

    func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    func checkIsolated() {
        precondition(isIsolating, "not on the RingExecutor's thread")
    }

    func isIsolatingCurrentContext() -> Bool? {
        isIsolating
    }

    /// On the loop thread, or (after shutdown) on the thread running the late actor jobs.
    private var isIsolating: Bool { ring.isOnLoopThread || ring.isDrainingLateActorJobs }
}
