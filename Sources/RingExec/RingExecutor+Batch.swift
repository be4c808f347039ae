import Glibc
import Ring
public import SystemPackage

/// One read or write of a batch (`RingExecutor.perform(_:)`). The buffer is borrowed: it must
/// stay valid until `perform` returns, which it does only after the kernel is done with every
/// buffer of the batch.
public struct IORequest: Sendable {
    let entry: SubmissionEntry

    /// Reads into `buffer` from `fd` at `offset` (`pread`). Offsets above `Int64.max` make the
    /// batch throw `EINVAL`.
    public static func read(_ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: UInt64)
        -> IORequest
    {
        IORequest(entry: .read(fd, into: buffer, offset: offset))
    }

    /// Writes `buffer` to `fd` at `offset` (`pwrite`). Offsets above `Int64.max` make the batch
    /// throw `EINVAL`.
    public static func write(_ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: UInt64) -> IORequest {
        IORequest(entry: .write(fd, from: buffer, offset: offset))
    }
}

extension RingExecutor {
    /// Submits every request with one await and returns each one's result, in order: the bytes
    /// read or written (possibly fewer than asked, 0 at end of file), or the `Errno` it failed
    /// with. One failed request does not fail the others. The requests are independent (not
    /// linked): the kernel may run them in any order, so a batch must not read what another of
    /// its requests writes. Any number of requests: what does not fit in the submission queue
    /// follows as completions free room. Nothing is merged: adjacent ranges stay separate
    /// requests.
    ///
    /// This is the storage-engine form of `read(_:into:offset:)`: the task suspends once per
    /// batch instead of once per request, and the executor takes records from its pool
    /// (no allocation per request when called on the loop thread). Every engine runs it.
    ///
    /// Cancellation: the call returns only when the kernel is done with every buffer. When the
    /// task is cancelled, requests that had not finished end with `ECANCELED` in their slot and
    /// the others keep their results (bytes already written are reported, so the caller can undo
    /// them). It throws `CancellationError` only when nothing ran: cancelled before submission,
    /// or every request ended with `ECANCELED`. Inside `withTimeout` the requests still running
    /// at the deadline are cancelled the same way and end with `timedOut` (the call throws
    /// `timedOut` when every one did). Throws `EINVAL` for an offset above `Int64.max`
    /// (nothing submitted), `ESHUTDOWN` after shutdown, and `EngineError.unsupported` when the
    /// engine cannot run one of the requests.
    public nonisolated(nonsending) func perform(_ requests: [IORequest]) async throws -> [Result<Int, Errno>] {
        if requests.isEmpty { return [] }
        for request in requests {
            // io_uring reads the offset as signed: -1 would mean the file position.
            guard request.entry.off <= UInt64(Int64.max) else { throw Errno.invalidArgument }
            if uringEngine == nil && !engine.supports(request.entry) {
                throw EngineError.unsupported(
                    operation: Self.operationName(request.entry.op), engine: engineSelection.engine)
            }
        }
        let deadline = timeoutDeadline()
        if deadline != nil && engineSelection.engine != .ioURing {
            throw EngineError.unsupported(operation: "withTimeout", engine: engineSelection.engine)
        }
        if Task.isCancelled { throw CancellationError() }  // nothing submitted
        let batch = Batch(count: requests.count)
        var records: [Operation] = []
        records.reserveCapacity(requests.count)
        let taskName = Task.name
        for (index, request) in requests.enumerated() {
            let record = takeRecord(request.entry)
            record.batch = Unmanaged.passUnretained(batch)  // `batch` outlives every record's use
            record.batchIndex = index
            record.taskName = taskName
            records.append(record)
        }
        let timer = CancelledByTimer()
        let refused: Bool
        if let deadline {
            let queued = records
            // Inside `withTimeout`: a timer of the executor's cancels what is still running at
            // the deadline, as a task's cancel would (the call still returns only after every
            // request's completion).
            refused = await withTaskGroup(of: Void.self) { group -> Bool in
                group.addTask {
                    let fired: Bool = await TimeoutScope.$current.withValue(nil) {
                        (try? await self.sleep(until: deadline)) != nil
                    }
                    guard fired else { return }
                    timer.fired.store(true, ordering: .relaxed)  // read after the group
                    self.requestCancel(batch: queued)
                }
                let refused = await wait(for: batch, queued)
                group.cancelAll()  // the batch is over: disarm the timer
                return refused
            }
        } else {
            refused = await wait(for: batch, records)
        }
        if refused { throw Errno(rawValue: ESHUTDOWN) }
        _ = batch.handoff.load(ordering: .acquiring)  // pairs with the store in `finish`
        // The loop is done with the records (each finished after its last completion): back to
        // the pool.
        for index in records.indices {
            records[index].batch = nil
            recycle(&records[index])
        }
        let cancelled = Task.isCancelled
        let timedOut = !cancelled && timer.fired.load(ordering: .relaxed)
        if (cancelled || timedOut) && batch.results.allSatisfy({ $0 == -ECANCELED }) {
            if timedOut { throw Errno.timedOut }
            throw CancellationError()
        }
        return batch.results.map { result in
            var settled = Self.settled(result, cancelled: cancelled || timedOut)
            if timedOut && settled == -ECANCELED { settled = -ETIMEDOUT }
            return settled >= 0 ? .success(Int(settled)) : .failure(Errno(rawValue: -settled))
        }
    }

    /// Queues a batch's records and suspends until the last one finishes; true when the
    /// executor refused them (shut down).
    private nonisolated(nonsending) func wait(for batch: Batch, _ records: [Operation]) async -> Bool {
        await suspendUntilResumed { (continuation: UnsafeContinuation<Bool, Never>) in
            batch.continuation = continuation
            if !enqueue(batch: records) { continuation.resume(returning: true) }
        } onCancel: {
            requestCancel(batch: records)
        }
    }
}
