// Finding io_uring descriptors of processes through /proc, and sampling their fdinfo.
//
// An io_uring descriptor's /proc/PID/fd link reads `anon_inode:[io_uring]` (io_uring_setup makes
// it with anon_inode_getfile("[io_uring]", ...), io_uring/io_uring.c). Reading another user's
// /proc/PID/fd needs the same rights as ptrace: descriptors we may not see are left out.
import Glibc

/// One io_uring descriptor of one process, read at one moment.
public struct RingSample: Sendable, Equatable, Codable {
    /// The process.
    public var pid: Int32
    /// The process's command name (`/proc/PID/comm`).
    public var command: String
    /// The descriptor number in that process.
    public var fd: Int32
    /// CLOCK_MONOTONIC when the fdinfo was read, in nanoseconds.
    public var time: UInt64
    /// What the kernel printed.
    public var info: RingFdinfo

    /// A sample.
    public init(pid: Int32, command: String, fd: Int32, time: UInt64, info: RingFdinfo) {
        self.pid = pid
        self.command = command
        self.fd = fd
        self.time = time
        self.info = info
    }
}

/// Reads io_uring descriptors out of /proc.
public enum RingScanner {
    /// What an io_uring descriptor's /proc/PID/fd link reads.
    public static let linkTarget = "anon_inode:[io_uring]"

    /// Every process id in /proc.
    public static func allProcesses(proc: String = "/proc") -> [Int32] {
        directoryEntries(proc).compactMap { Int32($0) }.sorted()
    }

    /// Descriptors of `pid` whose link says io_uring, in order; empty when the process is gone or
    /// its descriptors cannot be read.
    public static func ringDescriptors(of pid: Int32, proc: String = "/proc") -> [Int32] {
        let directory = "\(proc)/\(pid)/fd"
        return directoryEntries(directory).compactMap { name -> Int32? in
            guard let fd = Int32(name), readLink("\(directory)/\(name)") == linkTarget else { return nil }
            return fd
        }.sorted()
    }

    /// Samples every io_uring descriptor of each process in `pids` (all processes when nil).
    /// Processes and descriptors that vanish meanwhile are left out.
    public static func sample(_ pids: [Int32]?, proc: String = "/proc") -> [RingSample] {
        var samples: [RingSample] = []
        for pid in pids ?? allProcesses(proc: proc) {
            let fds = ringDescriptors(of: pid, proc: proc)
            if fds.isEmpty { continue }
            let command = readText("\(proc)/\(pid)/comm").map { Substring($0).trimmingBlanksAndNewlines } ?? "?"
            for fd in fds {
                if let sample = sample(pid: pid, command: command, fd: fd, proc: proc) { samples.append(sample) }
            }
        }
        return samples
    }

    /// How many times `sample` reads an fdinfo that came back without the ring's part.
    public static let attempts = 50

    /// One descriptor's fdinfo. The kernel leaves the ring's part out while the ring's owner
    /// holds its lock (see `RingFdinfo.printedRing`), so an incomplete read is tried again after
    /// a millisecond, up to `attempts` times; the last read is returned whatever it holds.
    static func sample(pid: Int32, command: String, fd: Int32, proc: String) -> RingSample? {
        var attempt = 0
        while true {
            guard let text = readText("\(proc)/\(pid)/fdinfo/\(fd)") else { return nil }
            let info = RingFdinfo.parse(text)
            attempt += 1
            if info.printedRing || attempt >= attempts {
                return RingSample(pid: pid, command: command, fd: fd, time: monotonicNanoseconds(), info: info)
            }
            var pause = timespec(tv_sec: 0, tv_nsec: 1_000_000)
            nanosleep(&pause, nil)
        }
    }

    /// Whether `pid` names a process that exists now.
    public static func exists(_ pid: Int32, proc: String = "/proc") -> Bool {
        access("\(proc)/\(pid)", F_OK) == 0
    }

    static func directoryEntries(_ path: String) -> [String] {
        guard let directory = opendir(path) else { return [] }
        defer { closedir(directory) }
        var names: [String] = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names
    }

    static func readLink(_ path: String) -> String? {
        var buffer = [UInt8](repeating: 0, count: 256)
        let count = buffer.withUnsafeMutableBytes { raw in
            readlink(path, raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
        }
        guard count > 0 else { return nil }
        return String(decoding: buffer[..<count], as: UTF8.self)
    }

    /// The whole text of a small /proc file, or nil if it cannot be opened.
    static func readText(_ path: String) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
            if n < 0 && errno == EINTR { continue }
            if n < 0 { return bytes.isEmpty ? nil : String(decoding: bytes, as: UTF8.self) }
            if n == 0 { return String(decoding: bytes, as: UTF8.self) }
            bytes += chunk[..<n]
        }
    }

    /// CLOCK_MONOTONIC in nanoseconds.
    public static func monotonicNanoseconds() -> UInt64 { RingInspect.monotonicNanoseconds() }
}

/// CLOCK_MONOTONIC in nanoseconds.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
}

extension Substring {
    var trimmingBlanksAndNewlines: String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\n" }
        return String(drop(while: blank).reversed().drop(while: blank).reversed())
    }
}
