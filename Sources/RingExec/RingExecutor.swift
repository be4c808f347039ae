import CSyscalls
import Glibc
public import Ring
import Synchronization
public import SystemPackage

/// A Swift concurrency executor that runs jobs on one dedicated thread and drives one io_uring
/// from that thread. It is both a `SerialExecutor` (actors can be pinned to it) and a
/// `TaskExecutor` (tasks can prefer it, e.g. with `run(_:)`).
///
/// The loop: drain jobs handed over by other threads, run ready jobs in a bounded batch, move
/// queued submissions into the SQ, submit, and block in `io_uring_enter` only when nothing is
/// runnable; then reap every completion and resume its task. Jobs enqueued from the loop thread
/// itself go on a local queue with no lock and no system call; other threads take a lock and
/// wake the loop through an eventfd whose read is kept armed in the ring, written only when the
/// loop has said it is about to sleep.
///
/// First cut (issue 4): nop, read, write, sleep, cancellation and shutdown. More operations,
/// executor groups, timers and the other engines come next.
public final class RingExecutor: SerialExecutor, TaskExecutor, @unchecked Sendable {
    // Shared with other threads (under `lock`, or atomic).
    private let lock = Lock()
    private var remoteJobs: [UnownedJob] = []
    private var remoteSubmissions: [Operation] = []
    private var remoteCancels: [Operation] = []
    /// Set by the loop just before it blocks; read by other threads after they enqueue.
    private let sleeping = Atomic<Bool>(false)
    private let stopping = Atomic<Bool>(false)
    /// Set under `lock` when the loop has exited; nothing is accepted afterwards.
    private var exited = false
    private let wakeFD: Int32

    // Loop thread only.
    private var localJobs: [UnownedJob] = []
    /// The batch being run; swapped with `localJobs` each tick.
    private var runningJobs: [UnownedJob] = []
    private var localSubmissions: [Operation] = []
    private var localCancels: [Operation] = []
    private var inFlight = 0
    /// Written once by the loop thread before it signals start-up (release); read by other
    /// threads only after `init` has seen that signal (acquire).
    private var loopThread = pthread_t()
    /// The thread handle `shutdownGracefully` joins; written by `init` only.
    private var joinHandle = pthread_t()

    /// Creates the executor and starts its thread. `entries` sizes the ring's SQ. The ring is
    /// created on the loop thread (registered ring fds and `SINGLE_ISSUER` are per thread).
    public init(entries: Int = 256) throws(RingSetupError) {
        let fd = cs_eventfd(0)
        guard fd >= 0 else {
            throw RingSetupError(errno: Errno(rawValue: -fd), explanation: "eventfd for the executor's wake-ups failed")
        }
        wakeFD = fd
        let context = StartContext(executor: self, entries: entries)
        let retained = Unmanaged.passRetained(context)
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { raw in
            let context = Unmanaged<StartContext>.fromOpaque(raw!).takeRetainedValue()
            context.executor.threadMain(context)
            return nil
        }, retained.toOpaque())
        guard created == 0 else {
            retained.release()
            close(fd)
            throw RingSetupError(errno: Errno(rawValue: created), explanation: "could not start the executor thread")
        }
        joinHandle = thread
        // Acquire pairs with the loop thread's release once the ring exists (or failed).
        while context.state.load(ordering: .acquiring) == 0 { sched_yield() }
        if let error = context.error {
            pthread_join(thread, nil)
            close(fd)
            throw error
        }
    }

    deinit {
        close(wakeFD)
    }

    /// Hands the start-up parameters to the loop thread and its verdict back.
    private final class StartContext: @unchecked Sendable {
        let executor: RingExecutor
        let entries: Int
        /// 0 starting, 1 running, 2 failed (then `error` is set before the release store).
        let state = Atomic<Int>(0)
        var error: RingSetupError?
        init(executor: RingExecutor, entries: Int) {
            self.executor = executor
            self.entries = entries
        }
    }

    // MARK: Executor conformance

    public func enqueue(_ job: consuming ExecutorJob) {
        let unowned = UnownedJob(job)
        if isOnLoopThread {
            localJobs.append(unowned)  // no lock, no syscall: the loop runs it after this batch
        } else {
            let accepted = lock.withLock { () -> Bool in
                if exited { return false }
                remoteJobs.append(unowned)
                return true
            }
            // A job that can never run would leave its task suspended forever: refuse loudly.
            precondition(accepted, "a job was enqueued on a RingExecutor after shutdownGracefully()")
            wakeIfSleeping()
        }
    }

    public func asUnownedSerialExecutor() -> UnownedSerialExecutor {
        UnownedSerialExecutor(ordinary: self)
    }

    public func asUnownedTaskExecutor() -> UnownedTaskExecutor {
        UnownedTaskExecutor(ordinary: self)
    }

    public func checkIsolated() {
        precondition(isOnLoopThread, "not on the RingExecutor's thread")
    }

    public func isIsolatingCurrentContext() -> Bool? {
        isOnLoopThread
    }

    /// Whether the caller is running on this executor's loop thread.
    public var isOnLoopThread: Bool {
        pthread_equal(pthread_self(), loopThread) != 0
    }

    /// Runs `body` with this executor as the task's preferred executor: its own code and the
    /// child tasks it creates with `async let` and task groups run on the ring thread (an
    /// unstructured `Task {}` does not inherit the preference).
    public func run<T: Sendable>(_ body: @Sendable () async throws -> T) async rethrows -> T {
        try await withTaskExecutorPreference(self) { try await body() }
    }

    // MARK: Operations

    /// Submits `entry` and suspends until its completion; returns the raw result (`-errno` on
    /// failure). The entry's memory must stay valid until then, which the awaiting caller
    /// guarantees by not returning before this does. On task cancellation the executor submits
    /// `IORING_OP_ASYNC_CANCEL`; this still returns only when the kernel has finished with the
    /// request (with `-ECANCELED` when the cancel won, or the real result). After
    /// `shutdownGracefully()` it returns `-ESHUTDOWN` without submitting.
    public func submit(_ entry: SubmissionEntry) async -> Int32 {
        let operation = Operation(entry)
        if Task.isCancelled { return -ECANCELED }  // cancelled before submission: nothing submitted
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { continuation in
                operation.continuation = continuation
                if isOnLoopThread {
                    localSubmissions.append(operation)
                } else {
                    let accepted = lock.withLock { () -> Bool in
                        if exited { return false }
                        remoteSubmissions.append(operation)
                        return true
                    }
                    if accepted {
                        wakeIfSleeping()
                    } else {
                        continuation.resume(returning: -ESHUTDOWN)
                    }
                }
            }
        } onCancel: {
            if isOnLoopThread {
                localCancels.append(operation)
            } else {
                lock.withLock { remoteCancels.append(operation) }
                wakeIfSleeping()
            }
        }
    }

    /// Like `submit`, but throws: `CancellationError` when cancellation won, the `Errno` for
    /// other failures.
    func perform(_ entry: SubmissionEntry) async throws -> Int {
        let result = await submit(entry)
        if result >= 0 { return Int(result) }
        if result == -ECANCELED && Task.isCancelled { throw CancellationError() }
        throw Errno(rawValue: -result)
    }

    /// `IORING_OP_NOP` through the ring.
    public func nop() async throws {
        _ = try await perform(.nop())
    }

    /// Reads into `buffer` at `offset` (`SubmissionEntry.currentPosition` for the file position).
    /// Returns the bytes read (0 at end of file). The buffer is safe to reuse when this returns,
    /// even after cancellation.
    public func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: UInt64) async throws -> Int {
        try await perform(.read(fd, into: buffer, offset: offset))
    }

    /// Writes `buffer` at `offset`. Returns the bytes written.
    public func write(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: UInt64) async throws -> Int {
        try await perform(.write(fd, from: buffer, offset: offset))
    }

    /// Sleeps on a ring timeout. Cancelling the task removes the armed timeout and throws
    /// `CancellationError`.
    public func sleep(for duration: Duration) async throws {
        let timespec = UnsafeMutablePointer<KernelTimespec>.allocate(capacity: 1)
        timespec.initialize(to: KernelTimespec(duration))
        defer { timespec.deallocate() }  // safe: the kernel copied it long before completion
        let result = await submit(.timeout(timespec))
        if result == -ETIME || result == 0 { return }
        if result == -ECANCELED { throw CancellationError() }
        throw Errno(rawValue: -result)
    }

    // MARK: Shutdown

    /// Stops the loop once every job has run and every operation has completed. Operations still
    /// in flight after `deadline` are cancelled (their tasks resume with `CancellationError` or
    /// their real result). Blocks the calling thread until the loop thread has exited; call it
    /// from outside the executor.
    public func shutdownGracefully(deadline: Duration = .seconds(30)) {
        precondition(!isOnLoopThread, "shutdownGracefully() would wait for its own thread")
        shutdownDeadline = ContinuousClock.now + deadline
        stopping.store(true, ordering: .sequentiallyConsistent)
        signalWake()
        pthread_join(joinHandle, nil)
    }

    private var shutdownDeadline: ContinuousClock.Instant = .now

    // MARK: The loop

    private func wakeIfSleeping() {
        // Pairs with the loop's store before it re-checks the queues under the lock: either the
        // loop sees our entry, or we see it asleep and write the eventfd.
        if sleeping.load(ordering: .sequentiallyConsistent) { signalWake() }
    }

    private func signalWake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)  // EAGAIN (counter full) still leaves it readable
    }

    private func threadMain(_ context: StartContext) {
        // The loop thread's own identity, for isOnLoopThread before init has stored it.
        loopThread = pthread_self()
        var options = RingOptions(flags: [.singleIssuer, .deferTaskRun, .taskRunFlag])
        options.completionEntries = UInt32(clamping: max(context.entries, 1) * 4)
        var ring: Ring
        do {
            ring = try Ring(entries: context.entries, options: options)
        } catch {
            context.error = error
            context.state.store(2, ordering: .releasing)
            return
        }
        context.state.store(1, ordering: .releasing)
        runLoop(&ring)
    }

    /// Jobs run per tick before the loop looks at the ring again, so I/O keeps flowing under a
    /// flood of runnable tasks.
    private static let jobBatch = 64

    private func runLoop(_ ring: inout Ring) {
        let wakeBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { wakeBuffer.deallocate() }
        var wakeArmed = false
        var cancelledAllAfterDeadline = false
        var reaped: [(UInt64, Int32)] = []
        reaped.reserveCapacity(256)

        while true {
            // 1. Take what other threads handed over.
            lock.withLock {
                if !remoteJobs.isEmpty {
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

            // 2. Run a bounded batch of ready jobs (they may enqueue more, and submissions).
            // Two buffers swap roles so that steady state allocates nothing.
            var ran = 0
            while ran < Self.jobBatch && !localJobs.isEmpty {
                swap(&localJobs, &runningJobs)
                var index = 0
                while index < runningJobs.count && ran < Self.jobBatch {
                    runningJobs[index].runSynchronously(
                        isolatedTo: asUnownedSerialExecutor(), taskExecutor: asUnownedTaskExecutor())
                    index += 1
                    ran += 1
                }
                if index < runningJobs.count {
                    // Over the batch limit: the rest go back ahead of jobs enqueued meanwhile.
                    localJobs.insert(contentsOf: runningJobs[index...], at: 0)
                }
                runningJobs.removeAll(keepingCapacity: true)
            }

            // 3. Cancellations first, so an operation cancelled before submission never starts.
            if !localCancels.isEmpty {
                let cancels = localCancels
                localCancels.removeAll(keepingCapacity: true)
                for operation in cancels where !operation.cancelRequested && !operation.completed {
                    operation.cancelRequested = true
                    // Submitted: ask the kernel. The record stays retained until its own
                    // completion is reaped, so its token cannot name another operation.
                    if operation.submitted
                        && !ring.push(.cancel(userData: operation.token).userData(ReservedToken.cancel))
                    {
                        operation.cancelRequested = false
                        localCancels.append(operation)  // SQ full: retry next tick
                    }
                }
            }

            // 4. Move queued submissions into the SQ; what does not fit waits for the next tick.
            if !wakeArmed {
                wakeArmed = ring.push(.read(FileDescriptor(rawValue: wakeFD), into: wakeBuffer, offset: 0).userData(ReservedToken.wake))
            }
            var moved = 0
            for operation in localSubmissions {
                if operation.cancelRequested {
                    finish(operation, result: -ECANCELED)
                    moved += 1
                    continue
                }
                guard ring.push(operation.entry.userData(operation.token)) else { break }
                _ = Unmanaged.passRetained(operation)  // released when its completion is reaped
                operation.submitted = true
                inFlight += 1
                moved += 1
            }
            if moved > 0 { localSubmissions.removeFirst(moved) }

            // 5. Shutdown: exit when idle; past the deadline, cancel what is left once.
            if stopping.load(ordering: .acquiring) {
                if localJobs.isEmpty && localSubmissions.isEmpty && inFlight == 0 { break }
                if !cancelledAllAfterDeadline && ContinuousClock.now >= shutdownDeadline {
                    _ = ring.push(.cancelAny().userData(ReservedToken.cancel))
                    cancelledAllAfterDeadline = true
                }
            }

            // 6. Submit; block only when nothing is runnable.
            let mustWait = localJobs.isEmpty && localSubmissions.isEmpty
            do {
                if mustWait {
                    sleeping.store(true, ordering: .sequentiallyConsistent)
                    let pending = lock.withLock { !remoteJobs.isEmpty || !remoteSubmissions.isEmpty || !remoteCancels.isEmpty }
                    if pending || stopping.load(ordering: .acquiring) && inFlight == 0 {
                        sleeping.store(false, ordering: .relaxed)
                        try ring.submit()
                    } else {
                        let timeout: Duration? = stopping.load(ordering: .acquiring) ? .milliseconds(10) : nil
                        try ring.submitAndWait(1, timeout: timeout)
                        sleeping.store(false, ordering: .relaxed)
                    }
                } else {
                    try ring.submit()
                }
            } catch {
                sleeping.store(false, ordering: .relaxed)
                // EAGAIN/EBUSY: reap below, then try again next tick.
            }

            // 7. Reap every completion, then resume (resuming may enqueue jobs locally).
            reaped.removeAll(keepingCapacity: true)
            ring.forEachCompletion { reaped.append(($0.userData, $0.result)) }
            for (token, result) in reaped {
                if token == ReservedToken.wake {
                    wakeArmed = false
                } else if token >= ReservedToken.limit {
                    let unmanaged = Operation.from(token: token)
                    inFlight -= 1
                    finish(unmanaged.takeUnretainedValue(), result: result)
                    unmanaged.release()
                }
            }
        }
        // Close the doors: later submissions fail with ESHUTDOWN, later jobs trap. Anything that
        // slipped in after the last check resumes with ESHUTDOWN rather than waiting forever.
        let stranded = lock.withLock { () -> [Operation] in
            exited = true
            let left = remoteSubmissions
            remoteSubmissions.removeAll()
            return left
        }
        for operation in stranded { finish(operation, result: -ESHUTDOWN) }
        // Drain the armed wake read so the kernel lets go of `wakeBuffer` before it is freed.
        if wakeArmed {
            _ = ring.push(.cancel(userData: ReservedToken.wake).userData(ReservedToken.cancel))
            var done = false
            while !done {
                _ = try? ring.submitAndWait(1, timeout: .milliseconds(100))
                ring.forEachCompletion { if $0.userData == ReservedToken.wake { done = true } }
            }
        }
    }

    private func finish(_ operation: Operation, result: Int32) {
        operation.completed = true
        let continuation = operation.continuation
        operation.continuation = nil
        continuation?.resume(returning: result)
    }
}
