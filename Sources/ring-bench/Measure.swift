import Glibc
import Histogram
import SystemPackage

/// What a row's run measured.
struct Measured: Sendable {
    var ops: Int
    var seconds: Double
    /// Calls into the kernel by the submitting thread(s), if known.
    var systemCalls: Int?
    var latency: Latency
    /// CPU time of the whole process (all threads) over wall time, in percent of one core.
    var cpuPercent: Double
    /// Operations that returned an error or a short transfer (reported, never hidden).
    var failures: Int
}

/// Latency percentiles in microseconds.
struct Latency: Sendable {
    var p50: Double
    var p99: Double
    var p999: Double

    init(_ histogram: Histogram<UInt64>) {
        p50 = Double(histogram.valueAtPercentile(50)) / 1000
        p99 = Double(histogram.valueAtPercentile(99)) / 1000
        p999 = Double(histogram.valueAtPercentile(99.9)) / 1000
    }

    init(p50: Double, p99: Double, p999: Double) {
        self.p50 = p50
        self.p99 = p99
        self.p999 = p999
    }
}

/// A latency histogram in nanoseconds, 1 ns to 60 s, two significant digits (1% resolution,
/// small enough to keep one per task).
func makeHistogram() -> Histogram<UInt64> {
    Histogram<UInt64>(
        lowestDiscernibleValue: 1, highestTrackableValue: 60_000_000_000, numberOfSignificantValueDigits: .two)
}

/// Monotonic nanoseconds (vDSO clock_gettime: no system call).
@inline(__always)
func nanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_MONOTONIC, &spec)
    return UInt64(spec.tv_sec) &* 1_000_000_000 &+ UInt64(spec.tv_nsec)
}

/// Process CPU time (user + system, all threads) in seconds.
func cpuSeconds() -> Double {
    var usage = rusage()
    getrusage(RUSAGE_SELF.rawValue, &usage)
    let user = Double(usage.ru_utime.tv_sec) + Double(usage.ru_utime.tv_usec) / 1e6
    let system = Double(usage.ru_stime.tv_sec) + Double(usage.ru_stime.tv_usec) / 1e6
    return user + system
}

/// Wall and CPU time around a run.
struct Stopwatch {
    let startWall = nanoseconds()
    let startCPU = cpuSeconds()

    var seconds: Double { Double(nanoseconds() - startWall) / 1e9 }
    func cpuPercent(over seconds: Double) -> Double { (cpuSeconds() - startCPU) / seconds * 100 }
}

/// The file every engine and fio read and write: created and filled with data (so O_DIRECT
/// reads hit real blocks), flushed to disk, removed afterwards unless the user supplied it.
struct TestFile {
    let path: String
    let bytes: Int
    let owned: Bool

    init(path: String?, sizeMiB: Int) throws {
        if let path {
            self.path = path
            let fd = try FileDescriptor.open(path, .readOnly)
            defer { try? fd.close() }
            bytes = Int(try fd.seek(offset: 0, from: .end))
            owned = false
            return
        }
        self.path = "/tmp/ring-bench-\(getpid()).dat"
        bytes = sizeMiB << 20
        owned = true
        let writer = try FileDescriptor.open(
            self.path, .writeOnly, options: [.create, .truncate], permissions: .ownerReadWrite)
        defer { try? writer.close() }
        var random = SplitMix(seed: 42)
        var chunk = [UInt64](repeating: 0, count: (1 << 20) / 8)
        for _ in 0..<sizeMiB {
            for i in chunk.indices { chunk[i] = random.next() }  // incompressible, non-zero data
            _ = try chunk.withUnsafeBytes { try writer.writeAll($0) }
        }
        fsync(writer.rawValue)
    }

    func open(direct: Bool, forWriting: Bool) throws -> FileDescriptor {
        try FileDescriptor.open(path, forWriting ? .readWrite : .readOnly, options: direct ? [.direct] : [])
    }

    /// Reads the whole file once so page-cache runs start warm.
    func warmCache() {
        guard let fd = try? FileDescriptor.open(path, .readOnly) else { return }
        defer { try? fd.close() }
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buffer.deallocate() }
        while let n = try? fd.read(into: buffer), n > 0 {}
    }

    func remove() {
        if owned { unlink(path) }
    }
}

/// SplitMix64: fast, deterministic offsets, so every engine sees the same kind of sequence.
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

/// Where the next operation goes and whether it reads: random or sequential offsets, a read
/// percentage for mixed workloads. One per slot or task; sequential slots share nothing and
/// stride through the file from their own starting point.
struct AccessPattern {
    var random: SplitMix
    let blocks: UInt64
    let blockSize: UInt64
    let sequential: Bool
    let readPercent: UInt64
    var cursor: UInt64

    init(workload: Workload, fileBytes: Int, blockSize: Int, slot: Int, slots: Int, readPercent: Int) {
        random = SplitMix(seed: 0x5EED_0000 &+ UInt64(slot))
        blocks = UInt64(max(fileBytes / blockSize, 1))
        self.blockSize = UInt64(blockSize)
        sequential = workload == .read || workload == .write
        self.readPercent =
            switch workload {
            case .read, .randread: 100
            case .write, .randwrite: 0
            default: UInt64(readPercent)
            }
        cursor = blocks * UInt64(slot) / UInt64(max(slots, 1))
    }

    /// (offset, isRead) for the next operation.
    @inline(__always)
    mutating func next() -> (UInt64, Bool) {
        let block: UInt64
        if sequential {
            block = cursor % blocks
            cursor &+= 1
        } else {
            block = random.next() % blocks
        }
        let isRead = readPercent == 100 || (readPercent != 0 && random.next() % 100 < readPercent)
        return (block &* blockSize, isRead)
    }
}

extension Array {
    /// The element with the median `key` (the upper one of an even count); nil when empty.
    func median(by key: (Element) -> Double) -> Element? {
        guard !isEmpty else { return nil }
        return sorted { key($0) < key($1) }[count / 2]
    }
}
