// What the kernel prints in /proc/PID/fdinfo/N for an io_uring descriptor, read into values.
//
// The kernel's io_uring/fdinfo.c (io_uring_show_fdinfo) writes `Name:\tvalue` lines, some of them
// followed by indented lists: SQEs and CQEs (`%5u: key:value, ...`), UserFiles and UserBufs
// (`%5u: name`), PollList (`  op=%d, task_works=%d`), CqOverflowList
// (`  user_data=%llu, res=%d, flags=%x`) and Personalities. Releases add and drop lines: Linux 5.x
// printed only SqThread onwards; 5.16 added the SQ/CQ heads, tails and the two entry lists; 6.10
// added SqTotalTime and SqWorkTime (printed only for IORING_SETUP_SQTHREAD_STATS later); NAPI
// lines come and go with CONFIG_NET_RX_BUSY_POLL. So every field is optional, lists may be
// empty, and lines this parser does not know are kept in `other` rather than refused.

/// One `/proc/PID/fdinfo/N` of an io_uring descriptor, as the running kernel printed it.
///
/// Every field is nil when the kernel did not print it (older releases print fewer lines).
public struct RingFdinfo: Sendable, Equatable, Codable {
    /// `SqMask`: the submission queue's size minus one.
    public var sqMask: UInt32?
    /// `SqHead`: the submission head the kernel has published (entries it has consumed).
    public var sqHead: UInt32?
    /// `SqTail`: the submission tail the application has published.
    public var sqTail: UInt32?
    /// `CachedSqHead`: the kernel's private submission head (may run ahead of `sqHead`).
    public var cachedSqHead: UInt32?
    /// `CqMask`: the completion queue's size minus one.
    public var cqMask: UInt32?
    /// `CqHead`: the completion head the application has published (entries it has reaped).
    public var cqHead: UInt32?
    /// `CqTail`: the completion tail the kernel has published.
    public var cqTail: UInt32?
    /// `CachedCqTail`: the kernel's private completion tail.
    public var cachedCqTail: UInt32?
    /// The count on the `SQEs:` line: `SqTail - SqHead`, entries not yet consumed.
    public var sqeCount: UInt32?
    /// The count on the `CQEs:` line: `CqTail - CqHead`, completions not yet reaped.
    public var cqeCount: UInt32?
    /// The submission entries the kernel listed under `SQEs:` (none with IORING_SETUP_NO_SQARRAY).
    public var sqes: [FdinfoEntry] = []
    /// The completions the kernel listed under `CQEs:`.
    public var cqes: [FdinfoEntry] = []
    /// `SqThread`: the SQPOLL thread's id, or -1 without SQPOLL (or when the kernel could not lock).
    public var sqThread: Int32?
    /// `SqThreadCpu`: the CPU the SQPOLL thread is pinned to (`IORING_SETUP_SQ_AFF`) or runs on,
    /// -1 while the kernel does not know it (a thread that has not started yet) or without SQPOLL.
    public var sqThreadCPU: Int32?
    /// `SqTotalTime`: the SQPOLL thread's system time in microseconds (Linux 6.10+).
    public var sqTotalTime: UInt64?
    /// `SqWorkTime`: the part of `sqTotalTime` the SQPOLL thread spent working (Linux 6.10+).
    public var sqWorkTime: UInt64?
    /// `UserFiles`: the size of the registered file table.
    public var userFiles: UInt32?
    /// `UserBufs`: the number of registered buffers.
    public var userBuffers: UInt32?
    /// The `PollList:` entries: requests waiting for readiness (poll-armed reads, receives,
    /// accepts, polls) in the kernel's cancellation table.
    public var pollList: [FdinfoEntry] = []
    /// The `CqOverflowList:` entries: completions the kernel holds because the CQ was full.
    public var overflowList: [FdinfoEntry] = []
    /// Whether the kernel printed a `CqOverflowList:` header (it did from Linux 5.16 on).
    public var hasOverflowList = false
    /// Every other `Name: value` line, by name (`pos`, `flags`, `mino`, NAPI lines, and lines of
    /// releases newer than this parser).
    public var other: [String: String] = [:]

    /// An empty value; `parse(_:)` fills it.
    public init() {}

    /// The ring's inode (`ino`): two descriptors of one ring (a `dup`) show the same number.
    public var inode: UInt64? { other["ino"].flatMap { UInt64($0) } }

    /// Whether the kernel printed the ring's part at all. Since Linux 6.14 (and stable releases
    /// that took the change), io_uring/fdinfo.c prints it only when a `mutex_trylock` of the
    /// ring's `uring_lock` succeeds, so a read that races a submission gets only `pos`, `flags`
    /// and the like.
    public var printedRing: Bool {
        sqMask != nil || sqThread != nil || userFiles != nil || hasOverflowList || sqeCount != nil
    }

    /// Submission entries the kernel has not consumed yet (`SqTail - SqHead`), if printed.
    public var pendingSubmissions: UInt32? {
        if let sqHead, let sqTail { return sqTail &- sqHead }  // free-running 32-bit indices
        return sqeCount
    }

    /// Completions the application has not reaped yet (`CqTail - CqHead`), if printed.
    public var pendingCompletions: UInt32? {
        if let cqHead, let cqTail { return cqTail &- cqHead }  // free-running 32-bit indices
        return cqeCount
    }

    /// Submission queue entries (`SqMask + 1`).
    public var sqEntries: UInt32? { sqMask.map { $0 &+ 1 } }
    /// Completion queue entries (`CqMask + 1`).
    public var cqEntries: UInt32? { cqMask.map { $0 &+ 1 } }

    /// The SQPOLL thread, if the ring has one the kernel reported.
    public var sqPollThread: Int32? { sqThread.flatMap { $0 >= 0 ? $0 : nil } }

    /// Reads the text of one fdinfo file. Never fails: lines it does not understand go to
    /// `other` (or are dropped when they are list items of an unknown list).
    public static func parse(_ text: String) -> RingFdinfo {
        var info = RingFdinfo()
        var section: Section = .none
        for line in text.split(separator: "\n", omittingEmptySubsequences: true) {
            let indented = line.first == " " || line.first == "\t"
            if indented || line.first?.isNumber == true {
                info.add(item: line, to: section)
                continue
            }
            guard let colon = line.firstIndex(of: ":") else { continue }
            let name = String(line[..<colon])
            let value = line[line.index(after: colon)...].trimmingBlanks
            section = .none
            switch name {
            case "SqMask": info.sqMask = hexOrDecimal(value).flatMap(UInt32.init(exactly:))
            case "SqHead": info.sqHead = UInt32(value)
            case "SqTail": info.sqTail = UInt32(value)
            case "CachedSqHead": info.cachedSqHead = UInt32(value)
            case "CqMask": info.cqMask = hexOrDecimal(value).flatMap(UInt32.init(exactly:))
            case "CqHead": info.cqHead = UInt32(value)
            case "CqTail": info.cqTail = UInt32(value)
            case "CachedCqTail": info.cachedCqTail = UInt32(value)
            case "SQEs":
                info.sqeCount = UInt32(value)
                section = .sqes
            case "CQEs":
                info.cqeCount = UInt32(value)
                section = .cqes
            case "SqThread": info.sqThread = Int32(value)
            case "SqThreadCpu": info.sqThreadCPU = Int32(value)
            case "SqTotalTime": info.sqTotalTime = UInt64(value)
            case "SqWorkTime": info.sqWorkTime = UInt64(value)
            case "UserFiles":
                info.userFiles = UInt32(value)
                section = .listed
            case "UserBufs":
                info.userBuffers = UInt32(value)
                section = .listed
            case "Personalities": section = .listed
            case "PollList": section = .poll
            case "CqOverflowList":
                info.hasOverflowList = true
                section = .overflow
            default:
                info.other[name] = value
            }
        }
        return info
    }

    private enum Section { case none, sqes, cqes, poll, overflow, listed }

    private mutating func add(item line: Substring, to section: Section) {
        switch section {
        case .sqes: sqes.append(FdinfoEntry(parsing: line))
        case .cqes: cqes.append(FdinfoEntry(parsing: line))
        case .poll: pollList.append(FdinfoEntry(parsing: line))
        case .overflow: overflowList.append(FdinfoEntry(parsing: line))
        case .listed, .none: break  // file names, buffer addresses, credentials: not shown
        }
    }
}

/// One listed entry of an fdinfo file: an SQE (`  12: opcode:READ, fd:5, ...`), a CQE
/// (`   3: user_data:7, res:0, flag:0`), a poll-list request (`  op=22, task_works=0`) or an
/// overflowed completion (`  user_data=9, res=-125, flags=0`).
public struct FdinfoEntry: Sendable, Equatable, Codable {
    /// The slot number before the first colon (SQEs and CQEs), if any.
    public var slot: UInt32?
    /// The `key:value` or `key=value` pairs in the order printed.
    public var fields: [Field]

    /// One `key:value` pair of an entry.
    public struct Field: Sendable, Equatable, Codable {
        /// The key as printed (`opcode`, `fd`, `user_data`, `op`, `res`, ...).
        public var key: String
        /// The value as printed.
        public var value: String
        /// A pair.
        public init(key: String, value: String) {
            self.key = key
            self.value = value
        }
    }

    /// An entry with the given slot and fields.
    public init(slot: UInt32? = nil, fields: [Field]) {
        self.slot = slot
        self.fields = fields
    }

    /// Reads one listed line; tokens are separated by commas and blanks (the kernel's SQE line
    /// has `buf_index:%d user_data:%llu` without a comma between them).
    public init(parsing line: Substring) {
        var rest = line.trimmingBlanks[...]
        slot = nil
        if let colon = rest.firstIndex(of: ":"), let number = UInt32(rest[..<colon]) {
            slot = number
            rest = rest[rest.index(after: colon)...]
        }
        fields = []
        for token in rest.split(whereSeparator: { $0 == "," || $0 == " " || $0 == "\t" }) {
            guard let separator = token.firstIndex(where: { $0 == ":" || $0 == "=" }) else { continue }
            fields.append(
                Field(key: String(token[..<separator]), value: String(token[token.index(after: separator)...])))
        }
    }

    /// The value printed for `key`, if any.
    public subscript(key: String) -> String? { fields.first { $0.key == key }?.value }

    /// The operation: the kernel's name on an SQE line (`opcode:READ`), or the number on a
    /// poll-list line (`op=22`) turned into the name `names` gives it.
    public func operation(names: (UInt8) -> String? = { _ in nil }) -> String? {
        if let name = self["opcode"] { return name }
        if let text = self["op"], let number = UInt8(text) { return names(number) ?? "op \(number)" }
        return nil
    }

    /// The descriptor on an SQE line (`fd:5`).
    public var fd: Int32? { self["fd"].flatMap { Int32($0) } }
    /// `user_data` of an SQE, CQE or overflowed completion.
    public var userData: UInt64? { self["user_data"].flatMap { UInt64($0) } }
    /// `res` of a CQE or overflowed completion.
    public var result: Int32? { self["res"].flatMap { Int32($0) } }
}

/// `0x1f` or `31`.
func hexOrDecimal(_ text: String) -> UInt64? {
    if text.hasPrefix("0x") || text.hasPrefix("0X") { return UInt64(text.dropFirst(2), radix: 16) }
    return UInt64(text)
}

extension Substring {
    /// Without leading and trailing blanks and tabs.
    var trimmingBlanks: String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" }
        return String(drop(while: blank).reversed().drop(while: blank).reversed())
    }
}
