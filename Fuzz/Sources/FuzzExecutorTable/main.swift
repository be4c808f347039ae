// Target 4: the executor's operation table. A real RingExecutor (its loop thread, queues,
// cancellation and shutdown paths) drives a scripted engine whose every decision comes from the
// fuzzer's bytes: complete at once, hold, fail, honour or ignore a cancel, post multishot
// completions. Tasks submit single operations (several in a row, so the loop's pooled records are
// reused between them), batches, linked chains and multishot streams, some cancelled before or
// after submission, from the loop thread (in tasks that prefer it, and isolated to an actor
// pinned to it), from others, and the input may shut the executor down with work in flight.
// What must hold: every operation resumes exactly once (a second resume
// traps in the executor; a lost one trips the watchdog) with a result its engine produced for
// it, or a cancellation; a stream yields exactly the values posted for it; no token is ever in
// flight twice (a reused record carries a new one), and a completion never names an earlier use
// of a record (`Operation.from(token:)` traps).
import FuzzSupport
import Glibc
import Ring
import Synchronization
import SystemPackage

@testable import RingExec

exit(runFuzzer { data, size in fuzzExecutor(UnsafeRawPointer(data), size) })

@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafeRawPointer?, _ size: Int) -> Int32 {
    fuzzExecutor(data, size)
}

/// Decisions for the engine, consumed on the loop thread only.
final class Script: @unchecked Sendable {
    var input: FuzzInput
    init(_ input: FuzzInput) { self.input = input }
    func byte() -> UInt8 { input.next() }
}

/// An engine that does what the script says. Operation `i` carries `i` in `entry.off`, and its
/// successful result is `i` (multishot: 100_000 + i*16 + n), so each task can check that the
/// value it got is its own.
final class ScriptedEngine: IOEngine {
    let script: Script
    let capacity: Int
    /// Small values make the executor hand batches over while its jobs still run.
    let submitBatch: Int
    var held: [(token: UInt64, entry: SubmissionEntry)] = []
    var ready: [(UInt64, Int32, UInt32)] = []
    /// Tokens prepared whose final completion has not been posted yet.
    var inFlight: Set<UInt64> = []
    let woken = Atomic<Bool>(false)

    init(script: Script) {
        self.script = script
        capacity = 1 + Int(script.byte() % 8)
        submitBatch = [1, 2, 4, .max][Int(script.byte() % 4)]
    }

    var kind: EngineKind { .ioURing }
    var systemCalls: Int { 0 }
    var submissionCapacity: Int { capacity }
    func supports(_ entry: SubmissionEntry) -> Bool { true }
    var submissionSpace: Int { max(0, capacity - held.count) }

    static func isMultishot(_ entry: SubmissionEntry) -> Bool { entry.op == .accept && entry.ioprio & 1 != 0 }

    func post(_ token: UInt64, _ entry: SubmissionEntry, cancelled: Bool) {
        inFlight.remove(token)
        let index = Int32(truncatingIfNeeded: entry.off)
        if Self.isMultishot(entry) {
            let shots = cancelled ? 0 : Int32(script.byte() % 4)
            for n in 0..<shots { ready.append((token, 100_000 + index * 16 + n, CQEFlags.more.rawValue)) }
            ready.append((token, script.byte() % 2 == 0 ? -ECANCELED : -EIO, 0))  // the final one
        } else if cancelled {
            ready.append((token, -ECANCELED, 0))
        } else {
            ready.append((token, script.byte() % 5 == 0 ? -EIO : index, 0))
        }
    }

    func prepare(_ entry: SubmissionEntry, token: UInt64) -> Bool {
        // Raw multishot entries must be refused before they reach an engine (issue 13, item 8).
        precondition(entry.off >> 40 != 1, "a raw multishot submit reached the engine")
        guard held.count < capacity else { return false }
        precondition(inFlight.insert(token).inserted, "token \(token) handed to the engine while still in flight")
        if script.byte() % 3 == 0 { post(token, entry, cancelled: false) } else { held.append((token, entry)) }
        return true
    }

    func cancel(token: UInt64) -> Bool {
        if let index = held.firstIndex(where: { $0.token == token }), script.byte() % 4 != 0 {
            let (token, entry) = held.remove(at: index)
            post(token, entry, cancelled: true)
        }
        return true  // otherwise the operation finishes later with its own result
    }

    func cancelAll() {
        for (token, entry) in held { post(token, entry, cancelled: true) }
        held.removeAll()
    }

    func submit(wait: Bool, timeout: Duration?) {
        // The kernel makes progress on its own too, not only while the loop waits.
        if !wait && !held.isEmpty && script.byte() % 2 == 0 {
            let (token, entry) = held.remove(at: Int(script.byte()) % held.count)
            post(token, entry, cancelled: false)
        }
        guard wait, ready.isEmpty else { return }
        if !held.isEmpty {
            // Blocking would be the kernel finishing something: let the script pick what.
            let (token, entry) = held.remove(at: Int(script.byte()) % held.count)
            post(token, entry, cancelled: false)
        } else if !woken.exchange(false, ordering: .acquiring) {
            usleep(50)
        }
    }

    func reap(_ body: (UInt64, Int32, UInt32) -> Void) {
        let batch = ready
        ready.removeAll()
        for (token, result, flags) in batch { body(token, result, flags) }
    }

    func wake() { woken.store(true, ordering: .releasing) }
    func close() { precondition(held.isEmpty && ready.isEmpty, "engine closed with work in flight") }
}

/// Where a task's body runs.
enum Placement: UInt8 {
    case preferringTheRing, offTheRing, pinnedActor
}

/// An actor whose jobs the executor runs (its actor face).
actor Pinned {
    let executor: RingExecutor
    init(_ executor: RingExecutor) { self.executor = executor }
    nonisolated var unownedExecutor: UnownedSerialExecutor { executor.asUnownedSerialExecutor() }
    func run(_ body: nonisolated(nonsending) @Sendable () async -> Outcome) async -> Outcome {
        let outcome = await body()
        assertIsolated()  // on the loop thread, or on the one that runs late actor jobs
        return outcome
    }
}

/// What one task saw.
enum Outcome: Sendable, Equatable {
    case value(Int32)
    case cancelled
    case stream([Int32], ended: Bool)
}

func fuzzExecutor(_ data: UnsafeRawPointer?, _ size: Int) -> Int32 {
    var driver = FuzzInput(data, size / 2)
    let script = Script(FuzzInput(data.map { $0 + size / 2 }, size - size / 2))
    let executor: RingExecutor
    do {
        executor = try RingExecutor { () throws(EngineError) in
            (ScriptedEngine(script: script), EngineSelection(engine: .ioURing, passedOver: [], fromEnvironment: false))
        }
    } catch {
        fatalError("scripted engine refused: \(error)")
    }
    let count = 1 + Int(driver.next(UInt8.self) % 24)
    let plans = (0..<count).map { _ in
        (
            kind: driver.next(UInt8.self) % 6, cancel: driver.next(UInt8.self) % 4,
            placement: Placement(rawValue: driver.next(UInt8.self) % 3)!
        )
    }
    let shutdownEarly = driver.next(UInt8.self) % 4 == 0

    let results = ResultBox(count: count)
    let pinned = Pinned(executor)
    for (index, plan) in plans.enumerated() {
        // Runs where its caller runs: in a task that prefers the ring, off the ring, or isolated
        // to an actor pinned to it (whose waits borrow the executor as the task's preference).
        let body: nonisolated(nonsending) @Sendable () async -> Outcome = {
            var entry = SubmissionEntry.nop()
            entry.off = UInt64(index)
            switch plan.kind {
            case 0, 1:
                // Several in a row: on the loop thread each reuses the record the one before left.
                var result: Int32 = 0
                for step in 0...(index % 3) {
                    // A yield puts the task back on its executor between two operations (on the
                    // pinned actor it looks like a bounce to the loop, which relearns the task).
                    if step == 1 && plan.kind == 1 { await Task.yield() }
                    result = await executor.submit(entry)
                    if result == -ECANCELED && Task.isCancelled { return .cancelled }
                    check(
                        result == Int32(index) || result == -EIO || result == -ECANCELED || result == -ESHUTDOWN,
                        "operation \(index) got \(result) in a row")
                }
                return .value(result)
            case 3:
                // A batch: every request carries the task's index, so every result must be it.
                let buffer = UnsafeMutableRawBufferPointer(start: nil, count: 0)
                let requests = (0..<(1 + index % 4)).map { _ in
                    IORequest.read(FileDescriptor(rawValue: 0), into: buffer, offset: UInt64(index))
                }
                do {
                    let results = try await executor.perform(requests)
                    for result in results {
                        switch result {
                        case .success(let value): check(value == index, "batch \(index) got \(value)")
                        case .failure(let error):
                            check([.ioError, .canceled].contains(error), "batch \(index) failed with \(error)")
                        }
                    }
                    return .value(Int32(index))
                } catch is CancellationError {
                    return .cancelled
                } catch {
                    check(error as? Errno == Errno(rawValue: ESHUTDOWN), "batch \(index) threw \(error)")
                    return .value(-ESHUTDOWN)
                }
            case 2:
                var second = SubmissionEntry.nop()
                second.off = UInt64(index)
                do {
                    let values = try await executor.submitChain([entry.flags(.link), second])
                    return .value(values[0])
                } catch {
                    return .cancelled
                }
            case 4:
                // A multishot entry through the one-completion API: refused, never submitted.
                var accept = SubmissionEntry()
                accept.op = .accept
                accept.ioprio = 1
                accept.off = UInt64(index) | 1 << 40
                let result = await executor.submit(accept)
                check(
                    result == -EINVAL || result == -ECANCELED || result == -ESHUTDOWN,
                    "raw multishot submit got \(result)")
                return .cancelled
            default:
                var values: [Int32] = []
                do {
                    var accept = SubmissionEntry()  // multishot accept, as the engine sees it
                    accept.op = .accept
                    accept.ioprio = 1
                    accept.off = UInt64(index)
                    let stream = executor.multishot(accept)
                    for try await value in stream { values.append(value) }
                    return .stream(values, ended: true)
                } catch {
                    return .stream(values, ended: false)
                }
            }
        }
        let task =
            switch plan.placement {
            case .preferringTheRing: Task(executorPreference: executor) { await body() }
            case .offTheRing: Task.detached { await body() }
            case .pinnedActor: Task.detached { await pinned.run(body) }
            }
        if plan.cancel == 1 { task.cancel() }
        Task.detached {
            if plan.cancel == 2 { await Task.yield(); task.cancel() }
            results.store(index, await task.value)
        }
    }
    if shutdownEarly { executor.shutdownGracefully(deadline: .zero) }

    // Watchdog: every task must finish; a lost completion leaves one suspended forever.
    let start = ContinuousClock.now
    while results.finished < count {
        if ContinuousClock.now - start > .seconds(5) {
            let missing = (0..<count).filter { results.load($0) == nil }.map { "\($0): \(plans[$0])" }
            fatalError("operations never resumed (lost completions): \(missing), shutdownEarly \(shutdownEarly)")
        }
        usleep(100)
    }
    if !shutdownEarly { executor.shutdownGracefully(deadline: .zero) }

    for index in 0..<count {
        switch results.load(index) {
        case .value(let value):
            check(
                value == Int32(index) || value == -EIO || value == -ECANCELED || value == -ESHUTDOWN,
                "operation \(index) got \(value), which its engine never produced")
        case .cancelled:
            break
        case .stream(let values, _):
            for (n, value) in values.enumerated() {
                check(value == 100_000 + Int32(index) * 16 + Int32(n), "stream \(index) yielded \(value) at \(n)")
            }
        case nil:
            check(false, "operation \(index) has no outcome")
        }
    }
    return 0
}

/// Outcomes by operation, written once each from the watcher tasks.
final class ResultBox: Sendable {
    private let lock = Mutex<[Outcome?]>([])
    private let done = Atomic<Int>(0)
    var finished: Int { done.load(ordering: .acquiring) }
    init(count: Int) { lock.withLock { $0 = Array(repeating: nil, count: count) } }
    func store(_ index: Int, _ outcome: Outcome) {
        lock.withLock {
            check($0[index] == nil, "operation \(index) resumed twice")
            $0[index] = outcome
        }
        done.add(1, ordering: .releasing)
    }
    func load(_ index: Int) -> Outcome? { lock.withLock { $0[index] } }
}
