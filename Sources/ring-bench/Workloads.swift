import ArgumentParser
import Glibc
import Histogram
import Ring
import RingExec
import Synchronization
import SystemPackage

enum Workload: String, ExpressibleByArgument, CaseIterable, Sendable {
    case nop, randread, randwrite, read, write, mixed

    var isIO: Bool { self != .nop }
    var writes: Bool { self == .randwrite || self == .write || self == .mixed }
}

/// Everything a row needs besides the engine, mode and depth.
struct Spec: Sendable {
    var workload: Workload
    var blockSize: Int
    var direct: Bool
    var runtime: Double
    var opsLimit: Int
    var batch: Int
    /// `--submit-batch`; nil for the defaults (see `rawSubmitBatch` and `RingExecutor`).
    var submitBatch: Int?
    /// `--repeat`: rounds per row (the report shows the median).
    var repeats: Int
    var sqpoll: Bool
    var fixedFiles: Bool
    var fixedBuffers: Bool
    var readPercent: Int
    var threads: Int
    /// `--async-batch`: requests per `perform(_:)` await in async mode (1: one `read`/`write`
    /// per await).
    var asyncBatch: Int = 1
    /// `--pinned-actor`: async loops run isolated to an actor pinned to the executor.
    var pinnedActor = false

    /// Most requests per `io_uring_enter` in raw mode. With O_DIRECT, 8: the kernel plugs the
    /// block layer for the length of one submit call, so 32 requests in one call reach the disk
    /// together and late (measured ~25% fewer IOPS at QD 32 here, see BENCHMARKS.md). Page-cache
    /// reads complete inside the call, where splitting it only adds system calls.
    var rawSubmitBatch: Int { submitBatch ?? (direct ? 8 : .max) }
    var asyncSubmitBatch: Int { submitBatch ?? RingExecutor.defaultSubmitBatch }
}

// MARK: Raw ring

/// The raw loop's ring: SQPOLL when asked, else the best shape the kernel accepts, as the
/// executor chooses it (SINGLE_ISSUER|DEFER_TASKRUN from 6.1, COOP_TASKRUN|TASKRUN_FLAG from
/// 5.19, plain before); only EINVAL (an unknown flag) moves on to the next shape.
func makeRawRing(_ spec: Spec, entries: Int) throws -> Ring {
    let shapes: [SetupFlags] =
        spec.sqpoll ? [.sqPoll] : [[.singleIssuer, .deferTaskRun], [.coopTaskRun, .taskRunFlag], []]
    return try makeRawRing(spec, entries: entries, shapes: shapes[...])
}

private func makeRawRing(_ spec: Spec, entries: Int, shapes: ArraySlice<SetupFlags>) throws -> Ring {
    var options = RingOptions(flags: shapes.first ?? [])
    if spec.sqpoll { options.sqThreadIdle = .milliseconds(100) }
    options.registerRingFD = true  // the ring lives and dies on this thread
    do {
        return try Ring(entries: entries, options: options)
    } catch {
        guard error.errno == .invalidArgument, shapes.count > 1 else { throw error }
        return try makeRawRing(spec, entries: entries, shapes: shapes.dropFirst())
    }
}

/// The Ring API in a tight loop on this thread: keeps `depth` operations in flight (NOP:
/// `depth` per submit), refills each slot as it completes, one `io_uring_enter` per batch
/// (more when a batch exceeds `rawSubmitBatch`).
func runRaw(_ spec: Spec, depth: Int, file: TestFile?) throws -> Measured {
    var ring = try makeRawRing(spec, entries: max(depth, 8))
    var histogram = makeHistogram()
    if spec.workload == .nop { return try rawNop(&ring, spec, depth: depth, histogram: &histogram) }

    let file = file!
    let fd = try file.open(direct: spec.direct, forWriting: spec.workload.writes)
    defer { try? fd.close() }
    let bs = spec.blockSize
    let buffers = UnsafeMutableRawBufferPointer.allocate(byteCount: depth * bs, alignment: 4096)
    defer { buffers.deallocate() }
    buffers.initializeMemory(as: UInt8.self, repeating: 0xA5)
    let base = buffers.baseAddress!

    // Registered file and buffers: the kernel skips the fd lookup / page pinning per request.
    var target = fd
    var extraFlags: SQEFlags = []
    if spec.fixedFiles {
        let raw = [fd.rawValue]
        try raw.withUnsafeBufferPointer { try ring.registerFiles($0) }
        target = FileDescriptor(rawValue: 0)
        extraFlags = .fixedFile
    }
    if spec.fixedBuffers {
        let vectors = (0..<depth).map { iovec(iov_base: base + $0 * bs, iov_len: bs) }
        try vectors.withUnsafeBufferPointer { try ring.registerBuffers($0) }
    }

    var patterns = (0..<depth).map {
        AccessPattern(
            workload: spec.workload, fileBytes: file.bytes, blockSize: bs, slot: $0, slots: depth,
            readPercent: spec.readPercent)
    }
    let started = UnsafeMutableBufferPointer<UInt64>.allocate(capacity: depth)
    defer { started.deallocate() }
    let fixedBuffers = spec.fixedBuffers
    // `now` is when the slot's request is queued: the reap time of the batch that freed it (one
    // clock read per batch, not per operation).
    func entry(_ slot: Int, now: UInt64) -> SubmissionEntry {
        let memory = UnsafeMutableRawBufferPointer(start: base + slot * bs, count: bs)
        let (offset, isRead) = patterns[slot].next()
        started[slot] = now
        let e: SubmissionEntry =
            switch (isRead, fixedBuffers) {
            case (true, false): .read(target, into: memory, offset: offset)
            case (false, false): .write(target, from: UnsafeRawBufferPointer(memory), offset: offset)
            case (true, true): .readFixed(target, into: memory, offset: offset, bufferIndex: UInt16(slot))
            case (false, true):
                .writeFixed(target, from: UnsafeRawBufferPointer(memory), offset: offset, bufferIndex: UInt16(slot))
            }
        return e.userData(UInt64(slot)).flags(extraFlags)
    }

    let watch = Stopwatch()
    let first = nanoseconds()
    let submitBatch = spec.rawSubmitBatch
    for slot in 0..<depth { try push(entry(slot, now: first), to: &ring, submittingEvery: submitBatch) }
    let deadline = nanoseconds() + UInt64(spec.runtime * 1e9)
    let enterBefore = ring.enterCalls
    var done = 0, failures = 0
    let finished = UnsafeMutableBufferPointer<Int>.allocate(capacity: depth)
    defer { finished.deallocate() }
    let wantBatch = min(max(spec.batch, 1), depth)
    var stopping = false
    var inFlight = depth
    while inFlight > 0 {
        try ring.submitAndWait(stopping ? 1 : wantBatch)
        var count = 0
        let now = nanoseconds()
        ring.forEachCompletion(limit: depth) { c in
            if c.result != Int32(bs) { failures += 1 }
            let slot = Int(c.userData)
            _ = histogram.record(now &- started[slot])
            finished[count] = slot
            count += 1
        }
        done += count
        inFlight -= count
        if !stopping && (done >= spec.opsLimit || now > deadline) { stopping = true }
        if !stopping {
            for i in 0..<count { try push(entry(finished[i], now: now), to: &ring, submittingEvery: submitBatch) }
            inFlight += count
        }
    }
    let seconds = watch.seconds
    return Measured(
        ops: done, seconds: seconds, systemCalls: ring.enterCalls - enterBefore, latency: Latency(histogram),
        cpuPercent: watch.cpuPercent(over: seconds), failures: failures)
}

/// Pushes `entry`, submitting until there is room, and submits once `batch` entries wait (a
/// last partial batch goes with the caller's next wait). Only an SQPOLL ring is ever full here
/// (the rings hold `depth` entries): its poll thread posts completions before it moves the SQ
/// head, so a slot whose completion was reaped can still look taken for a moment.
@inline(__always)
private func push(_ entry: SubmissionEntry, to ring: inout Ring, submittingEvery batch: Int = .max) throws {
    while !ring.push(entry) { try ring.submit() }
    if batch != .max && ring.pendingSubmissions >= batch { try ring.submit() }
}

/// `depth` NOPs per submit, all waited for in the same system call.
private func rawNop(_ ring: inout Ring, _ spec: Spec, depth: Int, histogram: inout Histogram<UInt64>) throws -> Measured
{
    let watch = Stopwatch()
    let deadline = nanoseconds() + UInt64(spec.runtime * 1e9)
    var done = 0
    let enterBefore = ring.enterCalls
    while done < spec.opsLimit {
        let start = nanoseconds()
        for _ in 0..<depth { try push(.nop(), to: &ring) }
        try ring.submitAndWait(depth)
        done += ring.forEachCompletion { _ in }
        let end = nanoseconds()
        _ = histogram.record(end &- start)  // batch round trip
        if end > deadline { break }
    }
    let seconds = watch.seconds
    return Measured(
        ops: done, seconds: seconds, systemCalls: ring.enterCalls - enterBefore, latency: Latency(histogram),
        cpuPercent: watch.cpuPercent(over: seconds), failures: 0)
}

// MARK: Async

/// `depth` tasks, each awaiting one RingExec operation at a time, on an executor group of
/// `spec.threads` executors running `engine`.
func runAsync(_ spec: Spec, engine: EngineKind, depth: Int, file: TestFile?) async throws -> Measured {
    let group = try RingExecutorGroup(
        threads: spec.threads, entries: max(depth, 32), engine: .only(engine), submitBatch: spec.asyncSubmitBatch)
    defer { group.shutdownGracefully() }
    let fd: FileDescriptor? =
        spec.workload.isIO ? try file!.open(direct: spec.direct, forWriting: spec.workload.writes) : nil
    defer { try? fd?.close() }
    let stop = StopFlag()
    let watch = Stopwatch()
    let callsBefore = group.executors.reduce(0) { $0 + $1.systemCalls }
    let deadline = nanoseconds() + UInt64(spec.runtime * 1e9)
    let perTaskLimit =
        spec.opsLimit == .max
        ? Int.max : max(1, spec.opsLimit / (spec.asyncBatch > 1 ? max(1, depth / spec.asyncBatch) : depth))

    // With `--async-batch N`, depth / N tasks each keep one batch of N requests in flight.
    let taskCount = spec.asyncBatch > 1 ? max(1, depth / spec.asyncBatch) : depth
    let tasks = (0..<taskCount).map { slot in
        let executor = group.executors[slot % group.executors.count]
        let body: nonisolated(nonsending) @Sendable () async throws -> TaskResult = {
            var result = TaskResult(histogram: makeHistogram())
            if let fd, spec.asyncBatch > 1 {
                try await asyncBatchLoop(
                    executor, fd: fd, spec: spec, file: file!, slot: slot, slots: taskCount, limit: perTaskLimit,
                    stop: stop, into: &result)
            } else if let fd {
                try await asyncIOLoop(
                    executor, fd: fd, spec: spec, file: file!, slot: slot, slots: depth, limit: perTaskLimit,
                    stop: stop, into: &result)
            } else {
                while !stop.isSet && result.ops < perTaskLimit {
                    let start = nanoseconds()
                    try await executor.nop()
                    _ = result.histogram.record(nanoseconds() &- start)
                    result.ops += 1
                }
            }
            stop.finished()
            return result
        }
        if spec.pinnedActor {
            let pinned = PinnedToRing(executor)
            return Task { try await pinned.run(body) }
        }
        return Task(executorPreference: executor) { try await body() }
    }
    // The timer: this task is not on any ring, so it does not disturb them. It also ends the row
    // when every task reached its share of `--ops`.
    while nanoseconds() < deadline && stop.running(taskCount) {
        try await Task.sleep(for: .milliseconds(10))
    }
    stop.set()
    var total = TaskResult(histogram: makeHistogram())
    for task in tasks {
        let one = try await task.value
        total.ops += one.ops
        total.failures += one.failures
        total.histogram.add(one.histogram)
    }
    let seconds = watch.seconds
    let calls = group.executors.reduce(0) { $0 + $1.systemCalls } - callsBefore
    return Measured(
        ops: total.ops, seconds: seconds, systemCalls: calls, latency: Latency(total.histogram),
        cpuPercent: watch.cpuPercent(over: seconds), failures: total.failures)
}

private nonisolated(nonsending) func asyncIOLoop(
    _ executor: RingExecutor, fd: FileDescriptor, spec: Spec, file: TestFile, slot: Int, slots: Int, limit: Int,
    stop: StopFlag,
    into result: inout TaskResult
) async throws {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: spec.blockSize, alignment: 4096)
    defer { buffer.deallocate() }
    buffer.initializeMemory(as: UInt8.self, repeating: 0xA5)
    var pattern = AccessPattern(
        workload: spec.workload, fileBytes: file.bytes, blockSize: spec.blockSize, slot: slot, slots: slots,
        readPercent: spec.readPercent)
    while !stop.isSet && result.ops < limit {
        let (offset, isRead) = pattern.next()
        let start = nanoseconds()
        let n =
            isRead
            ? try await executor.read(fd, into: buffer, offset: offset)
            : try await executor.write(fd, from: UnsafeRawBufferPointer(buffer), offset: offset)
        _ = result.histogram.record(nanoseconds() &- start)
        if n != spec.blockSize { result.failures += 1 }
        result.ops += 1
    }
}

/// One task's share of `--async-batch`: `spec.asyncBatch` requests per `perform(_:)` await, each
/// with its own buffer; every request's latency is the batch's round trip.
private nonisolated(nonsending) func asyncBatchLoop(
    _ executor: RingExecutor, fd: FileDescriptor, spec: Spec, file: TestFile, slot: Int, slots: Int, limit: Int,
    stop: StopFlag,
    into result: inout TaskResult
) async throws {
    let count = spec.asyncBatch
    let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: spec.blockSize * count, alignment: 4096)
    defer { storage.deallocate() }
    storage.initializeMemory(as: UInt8.self, repeating: 0xA5)
    let buffers = (0..<count).map {
        UnsafeMutableRawBufferPointer(rebasing: storage[($0 * spec.blockSize)...].prefix(spec.blockSize))
    }
    var pattern = AccessPattern(
        workload: spec.workload, fileBytes: file.bytes, blockSize: spec.blockSize, slot: slot, slots: slots,
        readPercent: spec.readPercent)
    var requests: [IORequest] = []
    requests.reserveCapacity(count)
    while !stop.isSet && result.ops < limit {
        requests.removeAll(keepingCapacity: true)
        for buffer in buffers {
            let (offset, isRead) = pattern.next()
            requests.append(
                isRead
                    ? .read(fd, into: buffer, offset: offset)
                    : .write(fd, from: UnsafeRawBufferPointer(buffer), offset: offset))
        }
        let start = nanoseconds()
        let results = try await executor.perform(requests)
        let elapsed = nanoseconds() &- start
        for outcome in results {
            _ = result.histogram.record(elapsed)
            if (try? outcome.get()) != spec.blockSize { result.failures += 1 }
        }
        result.ops += count
    }
}

/// An actor whose jobs run on a ring executor (`--pinned-actor`).
actor PinnedToRing {
    let executor: RingExecutor
    init(_ executor: RingExecutor) { self.executor = executor }
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }

    /// Runs `body` isolated to this actor.
    func run<T: Sendable>(_ body: nonisolated(nonsending) @Sendable () async throws -> T) async throws -> T {
        try await body()
    }
}

struct TaskResult: @unchecked Sendable {  // a histogram is plain arrays; each task owns its own
    var ops = 0
    var failures = 0
    var histogram: Histogram<UInt64>
}

final class StopFlag: Sendable {
    private let flag = Atomic<Bool>(false)
    private let done = Atomic<Int>(0)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
    /// A task has stopped (reached its operation limit or saw the flag).
    func finished() { done.add(1, ordering: .relaxed) }
    /// Whether some of `tasks` are still going.
    func running(_ tasks: Int) -> Bool { done.load(ordering: .relaxed) < tasks }
}
