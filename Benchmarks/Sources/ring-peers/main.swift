// ring-peers: 4 KiB random reads from the page cache with 32 tasks through RingExec, SwiftNIO's
// NIOFileSystem and blocking pread on the global executor (same file, same offsets generator,
// same checks); the same with O_DIRECT for RingExec and pread (NIOFileSystem has no O_DIRECT);
// then Task.yield() round trips on a ring-preferring task vs the global executor.
// Prints one table with ratios; `--runtime SECONDS` per row (default 2), `--tasks N` (32).
import Glibc
import RingExec
import Synchronization
import SystemPackage
import _NIOFileSystem

struct Options: Sendable {
    var runtime = 2.0
    var tasks = 32
    var sizeMiB = 256

    /// The same settings with one task (the batch row keeps `tasks` reads in flight from one).
    var oneTask: Options {
        var copy = self
        copy.tasks = 1
        return copy
    }
}

func parse() -> Options {
    var options = Options()
    var arguments = Array(CommandLine.arguments.dropFirst())
    while arguments.count >= 2 {
        let (name, value) = (arguments[0], arguments[1])
        arguments.removeFirst(2)
        switch name {
        case "--runtime": options.runtime = Double(value) ?? options.runtime
        case "--tasks": options.tasks = Int(value) ?? options.tasks
        case "--size": options.sizeMiB = Int(value) ?? options.sizeMiB
        default: print("unknown option \(name)"); exit(2)
        }
    }
    return options
}

final class Stop: Sendable {
    private let flag = Atomic<Bool>(false)
    var isSet: Bool { flag.load(ordering: .relaxed) }
    func set() { flag.store(true, ordering: .relaxed) }
}

struct Rng {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func now() -> Double {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return Double(spec.tv_sec) + Double(spec.tv_nsec) / 1e9
}

/// Runs `tasks` copies of `body` (each returns operations done) until the time is up; ops/s.
func measure(_ options: Options, _ body: @escaping @Sendable (Int, Stop) async throws -> Int) async throws -> Double {
    let stop = Stop()
    let start = now()
    let total = try await withThrowingTaskGroup(of: Int.self) { group in
        for task in 0..<options.tasks { group.addTask { try await body(task, stop) } }
        try await Task.sleep(for: .milliseconds(Int(options.runtime * 1000)))
        stop.set()
        return try await group.reduce(0, +)
    }
    return Double(total) / (now() - start)
}

func main() async throws {
    let options = parse()
    let path = "/tmp/ring-peers-\(getpid()).dat"
    defer { unlink(path) }
    let fd = try FileDescriptor.open(path, .readWrite, options: [.create, .truncate], permissions: .ownerReadWrite)
    defer { try? fd.close() }
    var rng = Rng(state: 7)
    var chunk = [UInt64](repeating: 0, count: 1 << 17)
    for _ in 0..<options.sizeMiB {
        for i in chunk.indices { chunk[i] = rng.next() }
        _ = try chunk.withUnsafeBytes { try fd.writeAll($0) }
    }
    let blocks = UInt64(options.sizeMiB * 256)
    // Warm the page cache.
    let warm = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
    for i in 0..<options.sizeMiB { _ = try fd.read(fromAbsoluteOffset: Int64(i << 20), into: warm) }
    warm.deallocate()

    var rows: [(String, Double)] = []

    // RingExec: tasks preferring one executor (one thread).
    let executor = try RingExecutor(entries: 64, engine: .ioURing)
    let ring = try await ringReads(executor, fd: fd, blocks: blocks, options)
    rows.append(("RingExec (io_uring), \(options.tasks) tasks", ring))
    // The batch API: one task keeps the same number of reads in flight, one await per batch.
    let batched = try await measure(options.oneTask) { _, stop in
        try await batchLoop(executor, fd: fd, blocks: blocks, count: options.tasks, stop: stop)
    }
    rows.append(("RingExec batch API, \(options.tasks) reads per await, 1 task", batched))
    // The same tasks spread over a group with one executor per core (the pools below use every
    // core too).
    let group = try RingExecutorGroup(entries: 64, engine: .only(.ioURing))
    let grouped = try await measure(options) { task, stop in
        try await readLoop(
            group.executors[task % group.executors.count], fd: fd, blocks: blocks, task: task, stop: stop)
    }
    group.shutdownGracefully()
    rows.append(("RingExec group of \(group.executors.count) executors, \(options.tasks) tasks", grouped))

    // NIOFileSystem: its default thread pool does the blocking reads.
    let handle = try await FileSystem.shared.openFile(forReadingAt: FilePath(path), options: .init())
    let nio = try await measure(options) { task, stop in
        var rng = Rng(state: UInt64(task))
        var done = 0
        while !stop.isSet {
            let bytes = try await handle.readChunk(
                fromAbsoluteOffset: Int64((rng.next() % blocks) * 4096), length: .bytes(4096))
            precondition(bytes.readableBytes == 4096)
            done += 1
        }
        return done
    }
    try await handle.close()
    rows.append(("NIOFileSystem readChunk, \(options.tasks) tasks", nio))

    // Blocking pread inside tasks on the global executor (what "just call pread" does).
    let pread = try await blockingReads(fd: fd, blocks: blocks, options)
    rows.append(("blocking pread on the global executor, \(options.tasks) tasks", pread))

    // O_DIRECT: the disk, not the page cache.
    let direct = open(path, O_RDONLY | oDirect)
    guard direct >= 0 else { throw Errno(rawValue: errno) }
    let directFD = FileDescriptor(rawValue: direct)
    defer { try? directFD.close() }
    let ringDirect = try await ringReads(executor, fd: directFD, blocks: blocks, options)
    let preadDirect = try await blockingReads(fd: directFD, blocks: blocks, options)
    let directRows = [
        ("RingExec (io_uring), O_DIRECT, \(options.tasks) tasks", ringDirect),
        ("blocking pread, O_DIRECT, global executor, \(options.tasks) tasks", preadDirect),
    ]

    // Scheduling: Task.yield() round trips, one task, ring vs global.
    let yields = 200_000
    var start = now()
    await executor.run { for _ in 0..<yields { await Task.yield() } }
    let ringYield = Double(yields) / (now() - start)
    start = now()
    await Task.detached { for _ in 0..<yields { await Task.yield() } }.value
    let globalYield = Double(yields) / (now() - start)
    executor.shutdownGracefully()

    print("ring-peers: 4 KiB random reads, \(options.runtime) s per row, \(options.sizeMiB) MiB file")
    print("page cache:")
    for (name, rate) in rows {
        let comparison =
            rate == grouped
            ? "the group is \(two(grouped / nio))x NIOFileSystem"
            : rate == batched
                ? "the batch API is \(two(batched / nio))x NIOFileSystem" : "RingExec is \(two(ring / rate))x"
        print("\(name.rightPad(60)) \(String(Int(rate)).leftPad(9)) reads/s   \(comparison)")
    }
    print("O_DIRECT:")
    for (name, rate) in directRows {
        print("\(name.rightPad(60)) \(String(Int(rate)).leftPad(9)) reads/s   RingExec is \(two(ringDirect / rate))x")
    }
    print("\("Task.yield() round trips, ring-preferring task".rightPad(60)) \(String(Int(ringYield)).leftPad(9)) /s")
    print(
        "\("Task.yield() round trips, global executor".rightPad(60)) \(String(Int(globalYield)).leftPad(9)) /s   ring is \(two(ringYield / globalYield))x"
    )
}

/// O_DIRECT, which Glibc's Swift module hides (it needs _GNU_SOURCE); the value differs by
/// architecture.
#if arch(x86_64)
    let oDirect: Int32 = 0o40000
#else
    let oDirect: Int32 = 0o200000  // arm64, riscv64
#endif

/// RingExec: `options.tasks` tasks preferring `executor`, each awaiting one read at a time.
func ringReads(_ executor: RingExecutor, fd: FileDescriptor, blocks: UInt64, _ options: Options) async throws -> Double
{
    try await measure(options) { task, stop in
        try await readLoop(executor, fd: fd, blocks: blocks, task: task, stop: stop)
    }
}

/// One task's reads on `executor` until `stop`; returns how many.
func readLoop(_ executor: RingExecutor, fd: FileDescriptor, blocks: UInt64, task: Int, stop: Stop) async throws -> Int {
    try await executor.run {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { buffer.deallocate() }
        var rng = Rng(state: UInt64(task))
        var done = 0
        while !stop.isSet {
            let n = try await executor.read(fd, into: buffer, offset: (rng.next() % blocks) * 4096)
            precondition(n == 4096)
            done += 1
        }
        return done
    }
}

/// One task on `executor` reading `count` random blocks per `perform(_:)` await until `stop`.
func batchLoop(_ executor: RingExecutor, fd: FileDescriptor, blocks: UInt64, count: Int, stop: Stop) async throws -> Int
{
    try await executor.run {
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096 * count, alignment: 4096)
        defer { storage.deallocate() }
        let buffers = (0..<count).map {
            UnsafeMutableRawBufferPointer(rebasing: storage[($0 * 4096)..<($0 * 4096 + 4096)])
        }
        var rng = Rng(state: 99)
        var requests: [IORequest] = []
        requests.reserveCapacity(count)
        var done = 0
        while !stop.isSet {
            requests.removeAll(keepingCapacity: true)
            for buffer in buffers { requests.append(.read(fd, into: buffer, offset: (rng.next() % blocks) * 4096)) }
            for result in try await executor.perform(requests) { precondition((try? result.get()) == 4096) }
            done += count
        }
        return done
    }
}

/// Blocking pread in `options.tasks` tasks on the global executor (what "just call pread" does).
func blockingReads(fd: FileDescriptor, blocks: UInt64, _ options: Options) async throws -> Double {
    try await measure(options) { task, stop in
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { buffer.deallocate() }
        var rng = Rng(state: UInt64(task))
        var done = 0
        while !stop.isSet {
            let n = try fd.read(fromAbsoluteOffset: Int64((rng.next() % blocks) * 4096), into: buffer)
            precondition(n == 4096)
            done += 1
            await Task.yield()  // let the other tasks on the pool's threads in
        }
        return done
    }
}

extension String {
    func leftPad(_ width: Int) -> String { count >= width ? self : String(repeating: " ", count: width - count) + self }
    func rightPad(_ width: Int) -> String {
        count >= width ? self : self + String(repeating: " ", count: width - count)
    }
}

func two(_ x: Double) -> String {
    let hundredths = Int((x * 100).rounded())
    return "\(hundredths / 100).\(hundredths % 100 < 10 ? "0" : "")\(hundredths % 100)"
}

let done = Atomic<Bool>(false)
Task.detached {
    do { try await main() } catch { print("ring-peers: \(error)") }
    done.store(true, ordering: .releasing)
}
while !done.load(ordering: .acquiring) { usleep(10_000) }
