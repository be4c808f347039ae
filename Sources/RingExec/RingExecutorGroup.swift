import Glibc
import Synchronization

/// N executors on N threads (one per core by default), handed out round-robin. Work moves
/// between them like between any executors (`run`, actors, task preferences); when a task on
/// one io_uring executor hands work to another that is asleep, the wake-up travels as an
/// `IORING_OP_MSG_RING` completion posted into the sleeping ring, submitted with the sender's
/// next batch, instead of an eventfd write.
public final class RingExecutorGroup: Sendable {
    /// The executors, in round-robin order.
    public let executors: [RingExecutor]
    private let cursor = Atomic<Int>(0)

    /// Starts `threads` executors (default: the number of online CPUs) of `entries` each;
    /// `engine` and `submitBatch` as in `RingExecutor.init`. If one fails to start, those
    /// already started are shut down and the error is thrown.
    public init(
        threads: Int = RingExecutorGroup.onlineProcessors, entries: Int = 256, engine: EngineChoice = .automatic,
        submitBatch: Int = RingExecutor.defaultSubmitBatch
    ) throws(EngineError) {
        var started: [RingExecutor] = []
        for _ in 0..<max(threads, 1) {
            do {
                started.append(try RingExecutor(entries: entries, engine: engine, submitBatch: submitBatch))
            } catch {
                for executor in started { executor.shutdownGracefully() }
                throw error
            }
        }
        executors = started
    }

    /// The next executor, round-robin.
    public func next() -> RingExecutor {
        let index = cursor.add(1, ordering: .relaxed).oldValue
        return executors[index % executors.count]
    }

    /// Shuts every executor down (see `RingExecutor.shutdownGracefully`), with one deadline
    /// for all, and blocks until every loop thread has been joined. Every executor hears that
    /// shutdown has begun (`waitForShutdown()` returns, streams end) before this waits for any
    /// of them, so the connections of a server spread over the group drain together. Called
    /// on one of the group's own loop threads it stops the process with a message, as
    /// `RingExecutor.shutdownGracefully` does; use `await shutdown(deadline:)` there.
    public func shutdownGracefully(deadline: Duration = .seconds(30)) {
        for executor in executors {
            executor.refuseToBlockOnLoopThread(
                "RingExecutorGroup.shutdownGracefully() was called on the loop thread of one of the group's "
                    + "executors, where it would wait for itself forever; use `await group.shutdown(deadline:)` there")
        }
        let joining = executors.map { $0.beginShutdown(deadline) }
        for (executor, joins) in zip(executors, joining) { executor.waitForLoopExit(joining: joins) }
    }

    /// Shuts every executor down without blocking a thread (see
    /// `RingExecutor.shutdown(deadline:)`): begins the shutdown of all of them before it waits
    /// for any, and returns when all loop threads have been joined.
    public func shutdown(deadline: Duration = .seconds(30)) async {
        let joining = executors.map { $0.beginShutdown(deadline) }
        for (executor, joins) in zip(executors, joining) { await executor.loopExit(joining: joins) }
    }

    /// Online CPUs (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1.
    public static var onlineProcessors: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}
