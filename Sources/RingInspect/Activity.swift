// What two samples of one ring say about it: rates, backlog, and what is waiting.
import Ring

/// One ring between two samples: where its queues stand at the second sample, and how fast the
/// indices moved since the first.
public struct RingActivity: Sendable, Equatable, Codable {
    /// The process.
    public var pid: Int32
    /// The process's command name.
    public var command: String
    /// The io_uring descriptor in that process.
    public var fd: Int32
    /// Submission and completion queue sizes.
    public var sqEntries: UInt32?
    /// Completion queue size.
    public var cqEntries: UInt32?
    /// `SqHead`, `SqTail`, `CqHead`, `CqTail` at the second sample.
    public var sqHead: UInt32?
    /// `SqTail` at the second sample.
    public var sqTail: UInt32?
    /// `CqHead` at the second sample.
    public var cqHead: UInt32?
    /// `CqTail` at the second sample.
    public var cqTail: UInt32?
    /// Submissions the kernel has not consumed.
    public var pendingSubmissions: UInt32?
    /// Completions the application has not reaped.
    public var pendingCompletions: UInt32?
    /// Completions the kernel holds back because the CQ was full (`CqOverflowList`); nil when the
    /// kernel does not print that list.
    public var overflow: Int?
    /// Requests parked in the kernel waiting for readiness (`PollList`).
    public var waiting: Int
    /// Everything queued in the ring itself: pending submissions, unreaped and overflowed
    /// completions.
    public var backlog: Int
    /// The SQPOLL thread, if the ring has one.
    public var sqPollThread: Int32?
    /// The CPU the SQPOLL thread is pinned to or runs on, when the kernel knows it.
    public var sqPollCPU: Int32?
    /// Registered file table size and registered buffers.
    public var registeredFiles: UInt32?
    /// Registered buffers.
    public var registeredBuffers: UInt32?
    /// Submissions the kernel consumed per second (`SqHead` movement); nil with one sample.
    public var submissionsPerSecond: Double?
    /// Completions the kernel posted per second (`CqTail` movement); nil with one sample.
    public var completionsPerSecond: Double?
    /// The oldest entries waiting: unconsumed submissions from the head, unreaped completions
    /// from the head, overflowed completions, then parked requests; at most `oldestLimit`.
    public var oldest: [PendingEntry]

    /// True when the kernel printed only the file's generic lines at the second sample (the ring
    /// stayed locked through every attempt; see `RingFdinfo.printedRing`): the rest is unknown.
    public var incomplete: Bool

    /// How many waiting entries `oldest` keeps.
    public static let oldestLimit = 8

    /// The ring as `current` shows it, with rates since `previous` (the same pid and fd, read
    /// earlier) when given.
    public init(_ current: RingSample, since previous: RingSample? = nil) {
        let info = current.info
        pid = current.pid
        command = current.command
        fd = current.fd
        incomplete = !info.printedRing
        sqEntries = info.sqEntries
        cqEntries = info.cqEntries
        sqHead = info.sqHead
        sqTail = info.sqTail
        cqHead = info.cqHead
        cqTail = info.cqTail
        pendingSubmissions = info.pendingSubmissions
        pendingCompletions = info.pendingCompletions
        overflow = info.hasOverflowList ? info.overflowList.count : nil
        waiting = info.pollList.count
        backlog = Int(info.pendingSubmissions ?? 0) + Int(info.pendingCompletions ?? 0) + info.overflowList.count
        sqPollThread = info.sqPollThread
        sqPollCPU = info.sqPollThread == nil ? nil : info.sqThreadCPU.flatMap { $0 >= 0 ? $0 : nil }
        registeredFiles = info.userFiles
        registeredBuffers = info.userBuffers
        if let previous, current.time > previous.time {
            let seconds = Double(current.time - previous.time) / 1e9
            // Free-running 32-bit indices: the difference wraps like the indices do.
            if let now = info.sqHead, let then = previous.info.sqHead {
                submissionsPerSecond = Double(now &- then) / seconds
            }
            if let now = info.cqTail, let then = previous.info.cqTail {
                completionsPerSecond = Double(now &- then) / seconds
            }
        }
        var oldest: [PendingEntry] = []
        oldest += info.sqes.map { PendingEntry(.submission, $0) }
        oldest += info.cqes.map { PendingEntry(.completion, $0) }
        oldest += info.overflowList.map { PendingEntry(.overflow, $0) }
        oldest += info.pollList.map { PendingEntry(.waiting, $0) }
        self.oldest = Array(oldest.prefix(Self.oldestLimit))
    }

    /// Activity of every ring in `current`, each with rates since the sample of the same pid and
    /// descriptor in `previous`, if there is one. A ring a process holds through several
    /// descriptors (the same `ino`) is shown once, under its lowest descriptor.
    public static func between(_ previous: [RingSample], _ current: [RingSample]) -> [RingActivity] {
        var earlier: [Descriptor: RingSample] = [:]
        for sample in previous { earlier[Descriptor(pid: sample.pid, fd: sample.fd)] = sample }
        var seen: Set<Inode> = []
        return current.sorted { ($0.pid, $0.fd) < ($1.pid, $1.fd) }.compactMap { sample in
            if let inode = sample.info.inode, !seen.insert(Inode(pid: sample.pid, inode: inode)).inserted {
                return nil
            }
            return RingActivity(sample, since: earlier[Descriptor(pid: sample.pid, fd: sample.fd)])
        }
    }

    private struct Descriptor: Hashable {
        var pid: Int32
        var fd: Int32
    }

    private struct Inode: Hashable {
        var pid: Int32
        var inode: UInt64
    }
}

/// One entry waiting in or behind a ring, as fdinfo lists it.
public struct PendingEntry: Sendable, Equatable, Codable {
    /// Where the entry waits.
    public enum Place: String, Sendable, Codable {
        /// In the SQ, not yet consumed by the kernel.
        case submission
        /// In the CQ, not yet reaped by the application.
        case completion
        /// In the kernel's overflow list (the CQ was full).
        case overflow
        /// Consumed, parked in the kernel waiting for readiness (PollList).
        case waiting
    }

    /// Where the entry waits.
    public var place: Place
    /// The operation's kernel name without `IORING_OP_` (`READ`, `RECV`), if printed.
    public var operation: String?
    /// The descriptor (submissions only).
    public var fd: Int32?
    /// `user_data`, if printed.
    public var userData: UInt64?
    /// The result (completions only).
    public var result: Int32?

    /// The entry `entry` listed in `place`.
    public init(_ place: Place, _ entry: FdinfoEntry) {
        self.place = place
        operation = entry.operation(names: Self.opcodeName)
        fd = entry.fd
        userData = entry.userData
        result = entry.result
    }

    /// `READ` for 22: the kernel's name without its prefix, as fdinfo prints SQE opcodes; nil for a
    /// number this package does not name.
    public static func opcodeName(_ number: UInt8) -> String? {
        guard Int(number) < Opcode.allKnown.count else { return nil }
        let name = Opcode(rawValue: number).kernelName
        let prefix = "IORING_OP_"
        return name.hasPrefix(prefix) ? String(name.dropFirst(prefix.count)) : name
    }
}
