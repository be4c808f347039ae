import ArgumentParser
import Glibc
import Ring
import SystemPackage

/// ring-bench: measures the raw ring. This first cut covers the raw-ring workloads (NOP and
/// page-cache/O_DIRECT random reads); engines, async mode and fio comparison come next.
@main
struct RingBench: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring-bench",
        abstract: "Benchmark the raw io_uring ring (NOP and random reads).")

    enum Workload: String, ExpressibleByArgument, CaseIterable {
        case nop, randread
    }

    @Option(help: "Workload: nop or randread.")
    var workload: Workload = .nop

    @Option(help: "Comma-separated queue depths (entries in flight; for nop, entries per submit).")
    var qd: String = "1,32,128"

    @Option(help: "Seconds per row.")
    var runtime: Double = 2

    @Option(help: "Stop each row after this many operations (overrides --runtime when reached first).")
    var ops: Int = .max

    @Option(help: "Block size in bytes for randread.")
    var bs: Int = 4096

    @Option(help: "File size in MiB for randread (a temporary file is created and removed).")
    var size: Int = 256

    @Flag(help: "Open the file with O_DIRECT.")
    var direct = false

    @Flag(help: "Use an SQPOLL ring.")
    var sqpoll = false

    func run() throws {
        let depths = qd.split(separator: ",").compactMap { Int($0) }.filter { $0 > 0 }
        guard !depths.isEmpty else { throw ValidationError("--qd needs positive integers") }
        print("workload  qd     ops/s         ns/op   syscalls/op")
        switch workload {
        case .nop:
            for depth in depths { try report(depth, nop(depth: depth)) }
        case .randread:
            let file = try TestFile(sizeMiB: size, direct: direct)
            defer { file.remove() }
            for depth in depths { try report(depth, randread(file: file, depth: depth)) }
        }
    }

    func report(_ depth: Int, _ result: Result) throws {
        let perSecond = Double(result.ops) / result.seconds
        let line = [
            pad(workload.rawValue, 9), pad(String(depth), 6), pad(String(Int(perSecond)), 13),
            pad(String(format1(1e9 / perSecond)), 7), String(Double(Int(Double(result.enters) / Double(result.ops) * 1000)) / 1000),
        ].joined(separator: " ")
        print(line)
    }

    struct Result {
        var ops: Int
        var seconds: Double
        var enters: Int
    }

    func options() -> RingOptions {
        var o = RingOptions(flags: sqpoll ? .sqPoll : [.singleIssuer, .deferTaskRun])
        if sqpoll { o.sqThreadIdle = .milliseconds(100) }
        return o
    }

    /// `depth` NOPs per submit; waits for all of them in the same system call.
    func nop(depth: Int) throws -> Result {
        var ring = try Ring(entries: max(depth, 8), options: options())
        let clock = ContinuousClock()
        let start = clock.now
        let limit = clock.now + .milliseconds(Int(runtime * 1000))
        var done = 0, enters = 0
        while done < ops {
            for _ in 0..<depth { _ = ring.push(.nop()) }
            try ring.submitAndWait(depth)
            enters += 1
            done += ring.forEachCompletion { _ in }
            if done & 0xFFF < depth && clock.now > limit { break }
        }
        return Result(ops: done, seconds: seconds(clock.now - start), enters: enters)
    }

    /// Keeps `depth` random reads in flight over the file.
    func randread(file: TestFile, depth: Int) throws -> Result {
        var ring = try Ring(entries: max(depth, 8), options: options())
        let buffers = UnsafeMutableRawBufferPointer.allocate(byteCount: depth * bs, alignment: 4096)
        defer { buffers.deallocate() }
        let blocks = UInt64(file.bytes / bs)
        let base = buffers.baseAddress!
        let blockSize = bs
        // A cheap PRNG: the system generator costs a getrandom(2) call per number.
        var random = SplitMix(seed: 0x5EED_1234)
        func entry(_ slot: Int) -> SubmissionEntry {
            let buffer = UnsafeMutableRawBufferPointer(start: base + slot * blockSize, count: blockSize)
            let offset = (random.next() % blocks) * UInt64(blockSize)
            return .read(file.fd, into: buffer, offset: offset).userData(UInt64(slot))
        }
        for slot in 0..<depth { _ = ring.push(entry(slot)) }
        let clock = ContinuousClock()
        let start = clock.now
        let limit = clock.now + .milliseconds(Int(runtime * 1000))
        var done = 0, enters = 0, failed = 0
        // Slots whose read completed; refilled after the batch (the ring is busy while reaping).
        let finished = UnsafeMutableBufferPointer<Int>.allocate(capacity: depth)
        defer { finished.deallocate() }
        while done < ops {
            try ring.submitAndWait(1)
            enters += 1
            var count = 0
            ring.forEachCompletion(limit: depth) { c in
                if c.result != Int32(bs) { failed += 1 }
                finished[count] = Int(c.userData)
                count += 1
            }
            done += count
            for i in 0..<count { _ = ring.push(entry(finished[i])) }
            if done & 0x3FF < depth && clock.now > limit { break }
        }
        if failed > 0 { print("warning: \(failed) reads returned short or failed") }
        return Result(ops: done, seconds: seconds(clock.now - start), enters: enters)
    }
}

func seconds(_ d: Duration) -> Double {
    Double(d.components.seconds) + Double(d.components.attoseconds) / 1e18
}

func pad(_ s: String, _ width: Int) -> String {
    s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
}

func format1(_ x: Double) -> String {
    let scaled = (x * 10).rounded() / 10
    return String(scaled)
}

/// A temporary file filled with data, so reads hit real (cached) pages.
struct TestFile {
    let path: String
    let fd: FileDescriptor
    let bytes: Int

    init(sizeMiB: Int, direct: Bool) throws {
        path = "/tmp/ring-bench-\(getpid()).dat"
        bytes = sizeMiB << 20
        let writer = try FileDescriptor.open(path, .writeOnly, options: [.create, .truncate], permissions: .ownerReadWrite)
        let chunk = [UInt8](repeating: 0xA5, count: 1 << 20)
        for _ in 0..<sizeMiB { _ = try chunk.withUnsafeBytes { try writer.writeAll($0) } }
        try writer.close()
        var options: FileDescriptor.OpenOptions = []
        if direct { options.insert(.direct) }
        fd = try FileDescriptor.open(path, .readOnly, options: options)
    }

    func remove() {
        try? fd.close()
        unlink(path)
    }
}

/// SplitMix64: fast, deterministic offsets so every engine reads the same sequence.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
