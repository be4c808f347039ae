import Foundation
import Glibc
import Synchronization
import SystemPackage
import Testing

@testable import RingExec

/// A temporary file under /tmp (ext4 here, so O_DIRECT works), removed by `remove()`.
struct TemporaryFile: Sendable {
    let path: String
    let fd: FileDescriptor

    init(path: String, fd: FileDescriptor) {
        self.path = path
        self.fd = fd
    }

    init(direct: Bool = false, contents: [UInt8] = []) throws {
        var template = Array("/tmp/ringexec-test-XXXXXX".utf8CString)
        let raw = mkstemp(&template)
        guard raw >= 0 else { throw Errno(rawValue: errno) }
        path = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        if !contents.isEmpty {
            let written = try contents.withUnsafeBytes {
                try FileDescriptor(rawValue: raw).writeAll(toAbsoluteOffset: 0, $0)
            }
            precondition(written == contents.count)
        }
        if direct {
            Glibc.close(raw)
            fd = try FileDescriptor.open(FilePath(path), .readWrite, options: .direct)
        } else {
            fd = FileDescriptor(rawValue: raw)
        }
    }

    func remove() {
        try? fd.close()
        unlink(path)
    }
}

/// The byte the test pattern holds at `offset`: varies within and across blocks, so a read from
/// the wrong place or a torn buffer shows.
func patternByte(_ offset: Int) -> UInt8 {
    UInt8(truncatingIfNeeded: (offset &* 31) ^ (offset >> 12) ^ 0x5a)
}

func pattern(count: Int, from start: Int = 0) -> [UInt8] {
    (start..<start + count).map(patternByte)
}

/// Whether these tests run under ThreadSanitizer (.ci/run sets TSAN_OPTIONS).
let underThreadSanitizer = ProcessInfo.processInfo.environment["TSAN_OPTIONS"] != nil

/// Whether these tests run under a sanitizer (5-20 times slower): .ci/run sets TSAN_OPTIONS or
/// LSAN_OPTIONS.
let underSanitizer = underThreadSanitizer || ProcessInfo.processInfo.environment["LSAN_OPTIONS"] != nil

/// Whether waits for state should allow for a slow machine: a sanitizer, or CPUs emulated by
/// qemu (Scripts/kernel-matrix sets RING_TEST_SLOW=1 in its guests).
let onASlowMachine = underSanitizer || ProcessInfo.processInfo.environment["RING_TEST_SLOW"] != nil

extension EngineKind {
    /// What RING_REQUIRE calls this engine.
    var need: Need { Need(rawValue: rawValue)! }
}

/// True (the test is then reported as skipped) when `engine` cannot run under the current
/// sanitizer: glibc's POSIX aio starts threads from its own helper threads through internal calls
/// ThreadSanitizer does not intercept, and TSan then crashes in its allocator on those threads.
func skippedUnderSanitizer(_ engine: EngineKind, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
    guard engine == .posixAIO && underThreadSanitizer else { return false }
    skip(
        .withoutTSan, "posix-aio under ThreadSanitizer: glibc's aio helper threads are invisible to it and crash it",
        sourceLocation: sourceLocation)
    return true
}

/// An executor on `engine`, or nil where that engine is unavailable: the test (case) is then
/// reported as skipped with the reason, or fails when RING_REQUIRE requires the engine.
func makeExecutor(
    _ engine: EngineKind, entries: Int = 64, submitBatch: Int = RingExecutor.defaultSubmitBatch,
    sourceLocation: SourceLocation = #_sourceLocation
) throws -> RingExecutor? {
    if skippedUnderSanitizer(engine, sourceLocation: sourceLocation) { return nil }
    do {
        return try RingExecutor(entries: entries, engine: .only(engine), submitBatch: submitBatch)
    } catch EngineError.unavailable(let kind, let reason) {
        skip(kind.need, "the \(kind) engine is unavailable: \(reason)", sourceLocation: sourceLocation)
        return nil
    }
}

/// Page-aligned memory for O_DIRECT.
func alignedBuffer(_ count: Int) -> UnsafeMutableRawBufferPointer {
    UnsafeMutableRawBufferPointer.allocate(byteCount: count, alignment: 4096)
}

/// A pipe; both ends closed by `close()`.
struct PipePair: Sendable {
    let read: FileDescriptor
    let write: FileDescriptor
    init() throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw Errno(rawValue: errno) }
        read = FileDescriptor(rawValue: fds[0])
        write = FileDescriptor(rawValue: fds[1])
    }
    func close() {
        try? read.close()
        try? write.close()
    }
}

/// Whether `bytes` equals `expected[offset..<offset + bytes.count]` (memcmp: debug builds are
/// slow at element-wise comparison).
func sameBytes(_ bytes: [UInt8], _ expected: [UInt8], at offset: Int) -> Bool {
    guard offset + bytes.count <= expected.count else { return false }
    return bytes.withUnsafeBytes { a in
        expected.withUnsafeBytes { b in memcmp(a.baseAddress!, b.baseAddress! + offset, a.count) == 0 }
    }
}

/// Runs a program to completion; returns its exit status and standard output (and standard error
/// with `standardError`).
func runProcess(
    _ path: String, _ arguments: [String], environment: [String: String]? = nil, standardError: Bool = false
) async throws -> (status: Int32, output: String) {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: path)
    process.arguments = arguments
    if let environment { process.environment = environment }
    let output = Pipe()
    process.standardOutput = output
    if standardError { process.standardError = output }
    try process.run()
    return await waitOffThePool(process, output: output)
}

/// Reads `output` to its end and waits for `process` on a thread of its own. Blocking there
/// instead of in the test keeps the cooperative pool (two threads on a two-core machine) free:
/// tests blocked on child processes for seconds starved every other test meanwhile, among them
/// the ones that wait for an operation to reach the kernel.
///
/// A child still running after `limit` is killed (SIGKILL) and its output ends with a line
/// saying so, so a child that hangs fails its test instead of holding the whole run: a time
/// limit on the test cannot help, because nothing here waits cooperatively.
func waitOffThePool(
    _ process: Process, output: Pipe, limit: Duration = .seconds(120)
) async -> (status: Int32, output: String) {
    struct Child: @unchecked Sendable {  // used by one thread at a time: the waiter, then us
        let process: Process
        let output: Pipe
    }
    let child = Child(process: process, output: output)
    let pid = process.processIdentifier
    let finished = DispatchSemaphore(value: 0)
    let killed = Flag()
    let watchdog = Thread {
        let seconds = Double(limit.components.seconds) + Double(limit.components.attoseconds) * 1e-18
        if finished.wait(timeout: .now() + seconds) == .timedOut {
            // Foundation reaps the child when it exits; checking first leaves only the instant
            // between the check and the kill for the number to be reused.
            guard child.process.isRunning else { return }
            killed.set()
            kill(pid, SIGKILL)
        }
    }
    watchdog.start()
    return await withCheckedContinuation { continuation in
        let waiter = Thread {
            let data = child.output.fileHandleForReading.readDataToEndOfFile()
            child.process.waitUntilExit()
            finished.signal()
            var text = String(decoding: data, as: UTF8.self)
            if killed.isSet { text += "\n[killed by the test after \(limit): it did not exit]\n" }
            continuation.resume(returning: (child.process.terminationStatus, text))
        }
        waiter.start()
    }
}

/// Waits until the executor has nothing in flight, asked on the loop thread
/// (`inFlightOperations()`, which also sees what other threads queued since its last tick), so
/// that counters read next include every completion. `operationsInFlight` is not enough for
/// that: it is published at points of the loop's tick, and reads 0 between a submission and the
/// end of the tick that made it. False after 30 s.
func waitUntilNothingInFlight(_ executor: RingExecutor) async -> Bool {
    await waitUntilInFlightList(of: executor) { $0.isEmpty }
}

/// Waits until `executor`'s `inFlightOperations()` satisfies `condition`, or `done` holds; true
/// only in the first case. Gives up (false) after `waitLimit` or when the waiting task is
/// cancelled.
func waitUntilInFlightList(
    of executor: RingExecutor, orUntil done: @autoclosure () -> Bool = false,
    _ condition: ([RingExecutor.InFlightOperation]) -> Bool
) async -> Bool {
    let deadline = ContinuousClock.now + waitLimit
    while ContinuousClock.now < deadline && !done() {
        if condition(await executor.inFlightOperations()) { return true }
        guard await pauseBeforeLookingAgain() else { return false }
    }
    return false
}

/// The kernel's thread id of `executor`'s loop thread.
func loopThreadID(of executor: RingExecutor) async throws -> Int32 {
    // /proc/thread-self links to "PID/task/TID" of the thread that reads it.
    let link = try await executor.run { try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/thread-self") }
    return try #require(link.split(separator: "/").last.flatMap { Int32($0) }, "\(link)")
}

/// Whether the loop thread `tid` (of `executor`) is blocked in the kernel waiting for its ring:
/// the loop has said it is about to block (`loopIsAsleep`: no system call comes between that
/// and its wait in `io_uring_enter`) and the thread is asleep ('S' in /proc). Work handed over
/// from another thread now must wake it. `loopIsAsleep` alone also holds for the moment before
/// the loop looks once more for work, which may then need no wake-up.
func isBlockedInTheKernel(_ executor: RingExecutor, thread tid: Int32) -> Bool {
    guard executor.loopIsAsleep else { return false }
    guard let stat = try? String(contentsOfFile: "/proc/self/task/\(tid)/stat", encoding: .utf8),
        let close = stat.lastIndex(of: ")")
    else { return false }
    // "tid (name) S ...": the state follows the name, which may itself hold spaces or ')'.
    return stat[stat.index(after: close)...].dropFirst().first == "S" && executor.loopIsAsleep
}

/// Waits until `isBlockedInTheKernel` holds; false after `waitLimit` or when cancelled.
func waitUntilBlockedInTheKernel(_ executor: RingExecutor, thread tid: Int32) async -> Bool {
    await waitUntil { isBlockedInTheKernel(executor, thread: tid) }
}

/// How long the polling waits of the tests wait before they give up. Only a failing test waits
/// this long; a passing one stops at the first look that sees the state, and a test's own time
/// limit cancels its waits earlier. Generous, in wall-clock time: when ~300 tests start at once
/// on two cores that other programs also load, a task can wait over 30 s before it first runs
/// (with six busy loops beside the suite, a dozen 30 s waits ran out; none of 120 s).
let waitLimit: Duration = .seconds(120)

/// The pause between two looks of a polling wait; false when the waiting task has been
/// cancelled, and the wait must then end. (`try? await Task.sleep` returns at once in a
/// cancelled task: a wait built on it turns into a busy loop that holds one of the two
/// cooperative threads until its deadline, and starves the tasks other tests wait for.)
func pauseBeforeLookingAgain(_ pause: Duration = .milliseconds(1)) async -> Bool {
    do {
        try await Task.sleep(for: pause)
        return true
    } catch {
        return false
    }
}

/// Waits until `executor` has at least `count` operations in flight: handed to its engine (or
/// queued on the loop for a full submission queue) and not yet completed. Tests use this instead
/// of sleeping "until the operation reaches the kernel", so that on a loaded machine they do not
/// quietly test the cancelled-before-submission path instead; they `#expect` the result, which
/// says which path the cancellation took. False after `timeout`.
///
/// The count is read on the loop thread (`run`): each hop is a job that wakes the loop, and the
/// value read is the one the loop stored after its previous tick handed its submissions to the
/// engine, so it does not depend on when the loop last chose to publish it.
func waitForOperationsInFlight(
    _ executor: RingExecutor, atLeast count: Int, timeout: Duration = waitLimit
) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    var polls = 0
    while true {
        // Look before judging the deadline: when this task itself was kept waiting past the
        // deadline (a busy pool), the state it waited for has usually arrived meanwhile.
        if await executor.run({ executor.operationsInFlight }) >= count { return true }
        if ContinuousClock.now >= deadline { return false }
        polls += 1
        // Polling, not synchronising: after the first few hops, back off a little so the loop
        // and the tasks it is waiting for get the CPU (two cores, shared).
        if polls < 50 && !Task.isCancelled {
            await Task.yield()
        } else if !(await pauseBeforeLookingAgain()) {
            return false
        }
    }
}

extension Process {
    /// Gives a child that runs until the test stops it standard input and error of its own
    /// (/dev/null) instead of the test process's, which are the pipes `swift test` reads until
    /// they close. If the test process dies before it stops the child (a crash, a signal), an
    /// orphan holding them keeps `swift test` waiting for the step's timeout: a CI run waited so
    /// on a ring-echo and a ring-http after the test process was killed by SIGPIPE.
    func detachFromTheTestsStandardStreams() {
        standardInput = FileHandle.nullDevice
        standardError = FileHandle.nullDevice
    }
}

/// A running ring-echo (Examples/ring-echo), stopped when the last reference goes.
final class EchoServerProcess: @unchecked Sendable {
    let process = Process()
    let port: UInt16

    /// `inspect`: with `SWIFT_RING_INSPECT=1`, so it serves `InspectionService`.
    init?(inspect: Bool = false, sourceLocation: SourceLocation = #_sourceLocation) throws {
        guard let tool = ExampleTests.binary("ring-echo", sourceLocation: sourceLocation) else { return nil }
        process.executableURL = URL(fileURLWithPath: tool)
        if inspect {
            process.environment = ProcessInfo.processInfo.environment.merging(["SWIFT_RING_INSPECT": "1"]) { $1 }
        }
        let output = Pipe()
        process.standardOutput = output
        process.detachFromTheTestsStandardStreams()
        try process.run()
        // First line: "listening on 127.0.0.1:<port>".
        var line = Data()
        while !line.contains(UInt8(ascii: "\n")) {
            let byte = output.fileHandleForReading.readData(ofLength: 1)
            if byte.isEmpty { break }
            line.append(byte)
        }
        let text = String(decoding: line, as: UTF8.self)
        guard
            let port = UInt16(
                text.split(separator: ":").last?.trimmingCharacters(in: .whitespacesAndNewlines) ?? "")
        else {
            process.terminate()
            process.waitUntilExit()
            Issue.record("ring-echo said \(text)", sourceLocation: sourceLocation)
            return nil
        }
        self.port = port
    }

    var pid: Int32 { process.processIdentifier }

    deinit {
        process.terminate()
        process.waitUntilExit()
    }
}
