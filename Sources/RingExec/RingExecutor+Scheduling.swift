// Task.sleep on the ring. Swift 6.3's scheduling hooks are experimental SPI
// (`_Concurrency.SchedulingExecutor`, `@_spi(ExperimentalScheduling)`), so everything that
// touches them lives in this one file. With it, `Task.sleep(for:)` in a task that prefers a
// RingExecutor arms a ring timeout instead of a timer on the global executor, and the task
// resumes on the ring thread without a hop. (The 6.3 runtime asks only the task's preferred
// executor: code isolated to an actor pinned to the ring, in a task without that preference,
// sleeps on the global executor's timer and then comes back to the actor.)
@_spi(ExperimentalScheduling) import _Concurrency
import Glibc
import Ring
import Synchronization

@_spi(ExperimentalScheduling)
extension RingExecutor: SchedulingExecutor {
    @_spi(ExperimentalScheduling)
    public func enqueue<C: Clock>(_ job: consuming ExecutorJob, after delay: C.Duration, tolerance: C.Duration?, clock: C) {
        let unowned = UnownedJob(job)
        if let duration = delay as? Duration {
            schedule(unowned, after: duration)
        } else {
            // A clock we cannot express as a ring timeout: wait on it elsewhere, then run here.
            let deadline = clock.now.advanced(by: delay)
            Task.detached { [self] in
                try? await clock.sleep(until: deadline, tolerance: tolerance)
                enqueue(unowned, forActor: false)
            }
        }
    }

    @_spi(ExperimentalScheduling)
    public func enqueue<C: Clock>(_ job: consuming ExecutorJob, at instant: C.Instant, tolerance: C.Duration?, clock: C) {
        enqueue(job, after: clock.now.duration(to: instant), tolerance: tolerance, clock: clock)
    }

    /// Arms a timeout whose completion enqueues `job`. The job runs when the timeout fires or
    /// when shutdown cancels it: shutdown does not wait for sleepers, they resume early. (A
    /// cancelled `Task.sleep` resumes through the runtime at once; its timer stays armed until
    /// it fires or shutdown removes it, and its job then does nothing.)
    private func schedule(_ job: UnownedJob, after duration: Duration) {
        scheduledTimers.add(1, ordering: .relaxed)
        let timespec = UnsafeMutablePointer<KernelTimespec>.allocate(capacity: 1)
        timespec.initialize(to: KernelTimespec(duration))
        let operation = Operation(.timeout(timespec))
        operation.isSchedulerTimer = true
        operation.onEach = { [self] _, _ in
            timespec.deallocate()  // final completion: the kernel is done with it
            enqueue(job, forActor: false)
        }
        if !enqueue(operation) {
            // Shut down: the job must still run, or its task never resumes.
            timespec.deallocate()
            job.runSynchronously(on: asUnownedTaskExecutor())
        }
    }
}
