import Glibc
import Ring
import Synchronization
// Task.sleep on the ring. Swift 6.3's scheduling hooks are experimental SPI
// (`_Concurrency.SchedulingExecutor`, `@_spi(ExperimentalScheduling)`), so everything that
// touches them lives in this one file. With it, `Task.sleep(for:)` in a task that prefers a
// RingExecutor arms a ring timeout instead of a timer on the global executor, and the task
// resumes on the ring thread without a hop. (The 6.3 runtime asks only the task's preferred
// executor: code isolated to an actor pinned to the ring, in a task without that preference,
// sleeps on the global executor's timer and then comes back to the actor.)
@_spi(ExperimentalScheduling) @_spi(ExperimentalCustomExecutors) import _Concurrency

@_spi(ExperimentalScheduling)
extension RingExecutor: SchedulingExecutor {
    /// Runs `job` on the ring after `delay`: a ring timeout for `Duration` clocks, a wait elsewhere
    /// for others.
    @_spi(ExperimentalScheduling)
    public func enqueue<C: Clock>(
        _ job: consuming ExecutorJob, after delay: C.Duration, tolerance: C.Duration?, clock: C
    ) {
        let isTask = job.kind == .task
        let unowned = UnownedJob(job)
        if let duration = delay as? Duration {
            schedule(unowned, after: duration, isTask: isTask)
        } else {
            // A clock we cannot express as a ring timeout: wait on it elsewhere, then run here.
            let deadline = clock.now.advanced(by: delay)
            Task.detached { [self] in
                try? await clock.sleep(until: deadline, tolerance: tolerance)
                enqueue(unowned, forActor: false)
            }
        }
    }

    /// Runs `job` on the ring at `instant` (see the `after:` form).
    @_spi(ExperimentalScheduling)
    public func enqueue<C: Clock>(_ job: consuming ExecutorJob, at instant: C.Instant, tolerance: C.Duration?, clock: C)
    {
        enqueue(job, after: clock.now.duration(to: instant), tolerance: tolerance, clock: clock)
    }

    /// Arms a timeout whose completion enqueues `job`. The job runs when the timeout fires, when
    /// shutdown cancels it (shutdown does not wait for sleepers, they resume early), or when the
    /// sleeping task has been cancelled (see below).
    ///
    /// Cancellation: the runtime's `Task.sleep` hands us a separate "wake" task as `job` and, on
    /// cancellation, resumes the sleeper itself; nothing tells the executor. The wake task then
    /// only frees the sleep's state when it runs, so running it early is harmless. So the timer
    /// keeps a reference to the sleeping task (the current task while this hook runs) and the
    /// loop, every ~50 ms while such timers are armed, cancels the timers of cancelled tasks
    /// (`sweepCancelledSleeps`). Only task jobs are watched (the deprecated non-throwing
    /// `Task.sleep(_:)` hands a continuation job and must not end early), and only sleeps long
    /// enough for a sweep to matter.
    private func schedule(_ job: UnownedJob, after duration: Duration, isTask: Bool) {
        scheduledTimers.add(1, ordering: .relaxed)
        let timespec = UnsafeMutablePointer<KernelTimespec>.allocate(capacity: 1)
        timespec.initialize(to: KernelTimespec(duration))
        let operation = Operation(.timeout(timespec))
        operation.isSchedulerTimer = true
        let sleeper = isTask && duration >= .milliseconds(100) ? retainCurrentTask() : nil
        operation.sleepingTask = sleeper
        operation.onEach = { [self] _, _ in
            timespec.deallocate()  // final completion: the kernel is done with it
            enqueue(job, forActor: false)
            if let sleeper { Unmanaged<AnyObject>.fromOpaque(sleeper).release() }
        }
        if !enqueue(operation) {
            // Shut down: the job must still run, or its task never resumes; and not before its
            // time, or a retry loop around the sleep would spin. The global executor's timer
            // waits instead (the job then runs on the global executor too).
            timespec.deallocate()
            if let sleeper { Unmanaged<AnyObject>.fromOpaque(sleeper).release() }
            operation.onEach = nil
            let deadline = ContinuousClock.now + duration
            Task.detached { [self] in
                try? await Task.sleep(until: deadline, clock: .continuous)
                enqueue(job, forActor: false)
            }
        }
    }
}

// The sleeping task, kept beyond `withUnsafeCurrentTask`'s closure: `UnsafeCurrentTask` is one
// reference to the runtime's task object (a reference-counted heap object), so its bits are the
// task's address. The timer holds its own retain on it, so reading the cancellation flag through
// a reconstructed `UnsafeCurrentTask` later is safe even after the task finished.

/// The current task, retained, or nil outside a task.
private func retainCurrentTask() -> UnsafeMutableRawPointer? {
    withUnsafeCurrentTask { task -> UnsafeMutableRawPointer? in
        guard let task else { return nil }
        let address = unsafeBitCast(task, to: UnsafeMutableRawPointer.self)
        _ = Unmanaged<AnyObject>.fromOpaque(address).retain()
        return address
    }
}

/// Whether the task `retainCurrentTask` returned has been cancelled.
func taskIsCancelled(_ task: UnsafeMutableRawPointer) -> Bool {
    unsafeBitCast(task, to: UnsafeCurrentTask.self).isCancelled
}
