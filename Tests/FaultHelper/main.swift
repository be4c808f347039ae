// ring-fault-helper: a test-only program that installs a seccomp filter making chosen system
// calls fail with a chosen errno (the way container runtimes refuse io_uring), then reports what
// the library does under it. Used by FaultInjectionTests; not part of any product.
//
//   ring-fault-helper [--engine] io_uring_setup=ENOSYS [io_setup=EPERM ...]
//
// Prints one line: `available` or `unavailable errno=<n> explanation=<text>`; with `--engine`,
// starts a RingExecutor with `.automatic`, checks a write and read through it, and prints
// `engine=<kind> io=ok|failed` followed by one `passed-over <kind>: <reason>` line per engine
// it skipped (or `error <description>`).
import CSyscalls
import Glibc
import Ring
import RingExec
import SystemPackage
import Synchronization

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

var rules: [(UInt32, UInt32)] = []
var engineMode = false
for argument in CommandLine.arguments.dropFirst() {
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
    return withUnsafePointer(to: &fprog) { cs_prctl(22 /* PR_SET_SECCOMP */, 2 /* FILTER */, UInt(bitPattern: $0), 0, 0) }
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

if engineMode {
    let done = Atomic<Bool>(false)
    Task.detached {  // not the main actor: the main thread waits below
        await reportEngine()
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
