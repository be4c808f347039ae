// ring-fault-helper: a test-only program that installs a seccomp filter making chosen system
// calls fail with a chosen errno (the way container runtimes refuse io_uring), then reports what
// the library does under it. Used by FaultInjectionTests; not part of any product.
//
//   ring-fault-helper [--engine] io_uring_setup=ENOSYS [io_setup=EPERM ...]
//   ring-fault-helper --teardown io_uring|libaio|posix-aio
//   ring-fault-helper --nofile | --memlock | --shutdown-on-loop-thread | --group-shutdown-on-loop-thread
//   ring-fault-helper --accept-emfile | --accept-emfile-shutdown
//
// Prints one line: `available` or `unavailable errno=<n> explanation=<text>`; with `--engine`,
// starts a RingExecutor with `.automatic`, checks a write and read through it, and prints
// `engine=<kind> io=ok|failed` followed by one `passed-over <kind>: <reason>` line per engine
// it skipped (or `error <description>`).
import CSyscalls
import Glibc
import Ring
import RingExec
import Synchronization
import SystemPackage

let syscallNumbers: [String: UInt32] = [
    "io_uring_setup": 425, "io_uring_enter": 426, "io_uring_register": 427,
    "io_setup": 206,  // x86_64; the helper only runs where the tests run
]
let errnoNames: [String: UInt32] = ["ENOSYS": UInt32(ENOSYS), "EPERM": UInt32(EPERM), "EACCES": UInt32(EACCES)]

struct Filter {
    var code: UInt16
    var jt: UInt8
    var jf: UInt8
    var k: UInt32
}

/// Open descriptors of this process.
func openDescriptors() -> Int {
    guard let directory = opendir("/proc/self/fd") else { return -1 }
    defer { closedir(directory) }
    var count = -1  // the directory stream's own descriptor
    while let entry = readdir(directory) {
        if entry.pointee.d_name.0 != UInt8(ascii: ".") { count += 1 }
    }
    return count
}

/// What each open descriptor of this process refers to (`/proc/self/fd` links), by number.
func descriptorTargets() -> [Int32: String] {
    var targets: [Int32: String] = [:]
    for fd in 0..<Int32(4096) where fcntl(fd, F_GETFD) >= 0 {
        var buffer = [CChar](repeating: 0, count: 512)
        let n = readlink("/proc/self/fd/\(fd)", &buffer, buffer.count - 1)
        targets[fd] = n > 0 ? String(decoding: buffer[..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : "?"
    }
    return targets
}

/// Open descriptors that could be the executor's: all but libdispatch's timer and epoll
/// descriptors, which it opens lazily per clock and QoS class when `Task.sleep` first needs one
/// (seen on Linux 6.1 and 6.12 under qemu as a timerfd appearing during the measured run).
/// swift-ring itself opens neither.
func ownDescriptors() -> Int {
    descriptorTargets().values.filter { $0 != "anon_inode:[timerfd]" && $0 != "anon_inode:[eventpoll]" }.count
}

/// Teardown with thousands of operations in flight, alone in this process so descriptor counts
/// are exact: prints `fds-before=N fds-after=M took-ms=T succeeded=S in-flight=I` (I: operations
/// the executor had in flight when shutdown began).
func teardown(_ engine: EngineKind) async {
    do {
        // Warm up: the runtime and libraries open some descriptors lazily, once (Task.sleep's
        // timer among them: the wait below may or may not need it).
        try await runTeardown(engine, sleepers: 10, readers: 10)
        try await Task.sleep(for: .milliseconds(1))
        let before = ownDescriptors()
        let targetsBefore = descriptorTargets()
        let (took, succeeded, inFlight) = try await runTeardown(engine, sleepers: 2000, readers: 1000)
        let ms = took.components.seconds * 1000 + took.components.attoseconds / 1_000_000_000_000_000
        // The POSIX aio engine closes its wake-up eventfd when the executor is freed, which
        // happens when the last finished task lets go of it, a moment after shutdown returns:
        // wait (bounded) for the count to settle. A descriptor really left open never does.
        var after = ownDescriptors()
        let settle = ContinuousClock.now + .seconds(5)
        while after != before && ContinuousClock.now < settle {
            try await Task.sleep(for: .milliseconds(1))
            after = ownDescriptors()
        }
        print("fds-before=\(before) fds-after=\(after) took-ms=\(ms) succeeded=\(succeeded) in-flight=\(inFlight)")
        if after != before {
            // Name what is left open, so a failure says which descriptor leaked.
            let added = descriptorTargets().filter { targetsBefore[$0.key] != $0.value }
            print(
                "new-descriptors: "
                    + added.sorted { $0.key < $1.key }.map { "\($0.key)->\($0.value)" }.joined(separator: " "))
        }
    } catch {
        print("error \(error)")
    }
}

/// Starts an executor, parks work that cannot finish on it, shuts it down with a 200 ms
/// deadline; returns how long shutdown took, how many operations claimed success and how many
/// were in flight when it began.
@discardableResult
func runTeardown(_ engine: EngineKind, sleepers: Int, readers: Int) async throws -> (Duration, Int, Int) {
    let executor = try RingExecutor(entries: 256, engine: .only(engine))
    var pipes: [(Int32, Int32)] = []
    for _ in 0..<8 {
        var fds: [Int32] = [0, 0]
        pipe(&fds)
        pipes.append((fds[0], fds[1]))
    }
    let readEnds = pipes.map { FileDescriptor(rawValue: $0.0) }
    var tasks = (0..<sleepers).map { _ in Task { try await executor.sleep(for: .seconds(120)) } }
    if engine == .ioURing {
        tasks += (0..<readers).map { i in Task { _ = try await executor.read(readEnds[i % 8], upTo: 8) } }
    }
    // Wait (bounded) until every operation is in flight, polled on the loop thread (see
    // waitForOperationsInFlight in the tests), so shutdown really has thousands to cancel.
    let expected = tasks.count
    let waitUntil = ContinuousClock.now + .seconds(20)
    while await executor.run({ executor.operationsInFlight }) < expected && ContinuousClock.now < waitUntil {
        try await Task.sleep(for: .milliseconds(1))
    }
    let inFlight = await executor.run { executor.operationsInFlight }
    let start = ContinuousClock.now
    executor.shutdownGracefully(deadline: .milliseconds(200))
    let took = ContinuousClock.now - start
    var succeeded = 0
    for task in tasks {
        if case .success = await task.result { succeeded += 1 }
    }
    for (r, w) in pipes {
        close(r)
        close(w)
    }
    return (took, succeeded, inFlight)
}

/// RLIMIT_NOFILE nearly exhausted: opens and sockets through the executor fail with EMFILE as
/// a typed error, and the executor keeps working. Prints `open=<errno> socket=<errno> after=ok|...`.
func descriptorLimit() async {
    do {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        var limit = rlimit()
        getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        limit.rlim_cur = rlim_t(openDescriptors() + 2)
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
        var opened: [FileDescriptor] = []
        var openError = "none"
        for _ in 0..<10 {
            do {
                opened.append(try await executor.open("/dev/null", .readOnly))
            } catch let error as Errno {
                openError = "\(error.rawValue)"
                break
            }
        }
        var socketError = "none"
        do {
            opened.append(try await executor.socket())
        } catch let error as Errno {
            socketError = "\(error.rawValue)"
        }
        try await executor.nop()
        for fd in opened { try await executor.close(fd) }
        let again = try await executor.open("/dev/null", .readOnly)
        try await executor.close(again)
        print("open=\(openError) socket=\(socketError) after=ok")
    } catch {
        print("error \(error)")
    }
}

/// RLIMIT_MEMLOCK tiny, no CAP_IPC_LOCK (root drops to nobody first): registering 8 MiB of
/// fixed buffers fails with a typed ENOMEM and the executor keeps working. Prints
/// `memlock=<errno> after=ok`.
func memoryLockLimit() async {
    var limit = rlimit(rlim_cur: 64 << 10, rlim_max: 64 << 10)
    setrlimit(8, &limit)  // RLIMIT_MEMLOCK (Linux-only, not in Swift's Glibc module)
    if getuid() == 0 && setuid(65534) != 0 {  // root has CAP_IPC_LOCK, which skips the limit
        print("error could not drop root")
        return
    }
    do {
        let executor = try RingExecutor(entries: 16)  // created without CAP_IPC_LOCK: accounted
        defer { executor.shutdownGracefully() }
        let outcome = try await executor.run { () throws -> String in
            let memory = UnsafeMutableRawBufferPointer.allocate(byteCount: 8 << 20, alignment: 4096)
            defer { memory.deallocate() }
            let vector = UnsafeMutablePointer<iovec>.allocate(capacity: 1)
            defer { vector.deallocate() }
            vector.initialize(to: iovec(iov_base: memory.baseAddress, iov_len: memory.count))
            do {
                try executor.withRing { ring throws(Errno) in
                    try ring.registerBuffers(UnsafeBufferPointer(start: vector, count: 1))
                }
                return "none"
            } catch let error as Errno {
                return "\(error.rawValue)"
            }
        }
        try await executor.nop()
        print("memlock=\(outcome) after=ok")
    } catch {
        print("error \(error)")
    }
}

var rules: [(UInt32, UInt32)] = []
var engineMode = false
var limitMode = false
var memlockMode = false
var teardownEngine: EngineKind?
var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "--posix-aio-wake", arguments.count == 3, let threads = Int(arguments[1]),
    let count = Int(arguments[2])
{
    posixAIOWakeCheck(threads: threads, executors: count)
}
if arguments.first == "--shutdown-on-loop-thread" {
    // Calls the blocking shutdown from a task on the executor's own thread: the process must stop
    // with a message saying why (the test reads it from standard error).
    let executor = try RingExecutor(entries: 8)
    Task(executorPreference: executor) { executor.shutdownGracefully() }
    for _ in 0..<1000 { usleep(10_000) }  // the trap ends this far sooner
    print("shutdownGracefully returned on the loop thread")
    exit(0)
}
if arguments.first == "--group-shutdown-on-loop-thread" {
    // The same for a group, called from a task on its second executor's thread.
    let group = try RingExecutorGroup(threads: 2, entries: 8)
    Task(executorPreference: group.executors[1]) { group.shutdownGracefully() }
    for _ in 0..<1000 { usleep(10_000) }
    print("the group's shutdownGracefully returned on a loop thread")
    exit(0)
}
if arguments.first == "--accept-emfile" || arguments.first == "--accept-emfile-shutdown" {
    acceptEMFILECheck(shutDown: arguments.first == "--accept-emfile-shutdown")
}
if arguments.first == "--memlock" {
    memlockMode = true
    arguments = []
}
if arguments.first == "--nofile" {
    limitMode = true
    arguments = []
}
if arguments.first == "--teardown", arguments.count == 2 {
    teardownEngine = EngineKind(rawValue: arguments[1])
    arguments = []
}
for argument in arguments {
    if argument == "--engine" {
        engineMode = true
        continue
    }
    let parts = argument.split(separator: "=").map(String.init)
    guard parts.count == 2, let nr = syscallNumbers[parts[0]], let e = errnoNames[parts[1]] else {
        print("usage: ring-fault-helper SYSCALL=ERRNO ...")
        exit(2)
    }
    rules.append((nr, e))
}

// BPF: load the syscall number, compare with each rule, return ERRNO(e) on a match, else allow.
let loadNr = Filter(code: 0x20, jt: 0, jf: 0, k: 0)  // BPF_LD|BPF_W|BPF_ABS, seccomp_data.nr
var program = [loadNr]
for (nr, e) in rules {
    program.append(Filter(code: 0x15, jt: 0, jf: 1, k: nr))  // BPF_JMP|BPF_JEQ|BPF_K
    program.append(Filter(code: 0x06, jt: 0, jf: 0, k: 0x0005_0000 | e))  // RET SECCOMP_RET_ERRNO|e
}
program.append(Filter(code: 0x06, jt: 0, jf: 0, k: 0x7fff_0000))  // RET SECCOMP_RET_ALLOW

guard cs_prctl(38 /* PR_SET_NO_NEW_PRIVS */, 1, 0, 0, 0) == 0 else {
    print("error: PR_SET_NO_NEW_PRIVS failed")
    exit(3)
}
let installed = program.withUnsafeBufferPointer { filters -> Int32 in
    struct SockFprog {
        var len: UInt16
        var filter: UnsafeRawPointer?
    }
    var fprog = SockFprog(len: UInt16(filters.count), filter: UnsafeRawPointer(filters.baseAddress))
    return withUnsafePointer(to: &fprog) {
        cs_prctl(22 /* PR_SET_SECCOMP */, 2 /* FILTER */, UInt(bitPattern: $0), 0, 0)
    }
}
guard installed == 0 else {
    print("error: PR_SET_SECCOMP failed")
    exit(3)
}

/// Starts an executor, writes and reads back a few bytes through it, reports the selection.
func reportEngine() async {
    do {
        let executor = try RingExecutor(entries: 8)
        defer { executor.shutdownGracefully() }
        let path = "/tmp/ring-fault-helper-\(getpid())"
        defer { unlink(path) }
        let fd = try FileDescriptor.open(path, .readWrite, options: [.create, .truncate], permissions: .ownerReadWrite)
        defer { try? fd.close() }
        let written = try await executor.write(fd, bytes: Array("engine check".utf8), offset: 0)
        let back = try await executor.read(fd, upTo: 64, offset: 0)
        let ok = written == 12 && back == Array("engine check".utf8)
        print("engine=\(executor.engineSelection.engine) io=\(ok ? "ok" : "failed")")
        for skipped in executor.engineSelection.passedOver { print("passed-over \(skipped.engine): \(skipped.reason)") }
    } catch {
        print("error \(error)")
    }
}

if engineMode || teardownEngine != nil || limitMode || memlockMode {
    let done = Atomic<Bool>(false)
    let (engine, limits, memlock) = (teardownEngine, limitMode, memlockMode)
    Task.detached {  // not the main actor: the main thread waits below
        if memlock {
            await memoryLockLimit()
        } else if limits {
            await descriptorLimit()
        } else if let engine {
            await teardown(engine)
        } else {
            await reportEngine()
        }
        done.store(true, ordering: .releasing)
    }
    while !done.load(ordering: .acquiring) { usleep(1000) }
    exit(0)
}

let report = Probe.run()
if let reason = report.unavailableReason {
    print("unavailable errno=\(reason.errno.rawValue) explanation=\(reason.explanation)")
} else {
    print("available")
}
