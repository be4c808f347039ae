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

    /// Shuts every executor down (see `RingExecutor.shutdownGracefully`); they share the deadline.
    public func shutdownGracefully(deadline: Duration = .seconds(30)) {
        let end = ContinuousClock.now + deadline
        for executor in executors { executor.shutdownGracefully(deadline: max(.zero, end - .now)) }
    }

    /// Shuts every executor down at once without blocking a thread (see
    /// `RingExecutor.shutdown(deadline:)`); returns when all loop threads have been joined.
    public func shutdown(deadline: Duration = .seconds(30)) async {
        await withTaskGroup(of: Void.self) { group in
            for executor in executors { group.addTask { await executor.shutdown(deadline: deadline) } }
        }
    }

    /// Online CPUs (`sysconf(_SC_NPROCESSORS_ONLN)`), at least 1.
    public static var onlineProcessors: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }
}
