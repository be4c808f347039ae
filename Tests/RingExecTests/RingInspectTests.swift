import Glibc
import Ring
import RingInspect
import SystemPackage
import Testing

/// The fdinfo parser reads what the running kernel prints for a live ring, and what older and
/// newer kernels print (fields added, missing, lists in other shapes), without refusing any of it.
@Suite struct RingInspectTests {
    /// The fdinfo text of `fd` in this process.
    static func ownFdinfo(_ fd: Int32) throws -> String {
        String(decoding: try ToolBehaviourTests.readWholeFile("/proc/self/fdinfo/\(fd)"), as: UTF8.self)
    }

    @Test func aLiveRingOfThisKernelParsesWithItsIndicesAndUnreapedCompletions() throws {
        let ring8: Ring
        do {
            ring8 = try Ring(entries: 8)
        } catch {
            skip(.ioURing, "no io_uring here: \(error)")
            return
        }
        var ring = ring8
        var pushed = 0
        for userData: UInt64 in [7, 8, 9] where ring.push(.nop().userData(userData)) { pushed += 1 }
        #expect(pushed == 3)
        let submitted = try ring.submitAndWait(3)
        #expect(submitted == 3)
        let text = try Self.ownFdinfo(ring.fd.rawValue)
        let info = RingFdinfo.parse(text)
        #expect(RingScanner.ringDescriptors(of: getpid()).contains(ring.fd.rawValue))

        #expect(info.sqEntries == UInt32(ring.submissionCapacity), "\(text)")
        #expect(info.cqEntries == UInt32(ring.completionCapacity), "\(text)")
        #expect(info.sqHead == 3 && info.sqTail == 3 && info.cachedSqHead == 3, "\(text)")
        #expect(info.pendingSubmissions == 0 && info.sqeCount == 0, "\(text)")
        #expect(info.cqHead == 0 && info.cqTail == 3 && info.pendingCompletions == 3 && info.cqeCount == 3, "\(text)")
        #expect(info.cqes.map(\.userData) == [7, 8, 9], "\(text)")
        #expect(info.cqes.map(\.result) == [0, 0, 0], "\(text)")
        #expect(info.cqes.map(\.slot) == [0, 1, 2], "\(text)")
        #expect(info.sqThread == -1 && info.sqPollThread == nil, "\(text)")
        #expect(info.userFiles == 0 && info.userBuffers == 0, "\(text)")
        #expect(info.hasOverflowList && info.overflowList.isEmpty && info.pollList.isEmpty, "\(text)")
        #expect(info.inode != nil, "\(text)")
        // Everything this kernel prints is either understood or kept; nothing known leaks to `other`.
        for known in ["SqHead", "CqTail", "SQEs", "CQEs", "UserFiles", "PollList"] {
            #expect(info.other[known] == nil)
        }
        // Reaping moves the head, and fdinfo shows it.
        let reapedCount = ring.forEachCompletion { _ in }
        #expect(reapedCount == 3)
        let reaped = RingFdinfo.parse(try Self.ownFdinfo(ring.fd.rawValue))
        #expect(reaped.cqHead == 3 && reaped.pendingCompletions == 0 && reaped.cqes.isEmpty)
    }

    @Test func anSQPollRingShowsItsThread() throws {
        var options = RingOptions(flags: .sqPoll)
        options.sqThreadIdle = .milliseconds(10)
        let ring: Ring
        do {
            ring = try Ring(entries: 4, options: options)
        } catch {
            skip(.sqpoll, "an SQPOLL ring is refused here: \(error)")
            return
        }
        let info = RingFdinfo.parse(try Self.ownFdinfo(ring.fd.rawValue))
        let thread = try #require(info.sqPollThread)
        // The poll thread is a thread of this process (an io_uring worker task in our group).
        #expect(access("/proc/self/task/\(thread)", F_OK) == 0)
        // -1 until the thread has recorded the CPU it runs on, then that CPU.
        let cpu = try #require(info.sqThreadCPU)
        #expect(cpu >= -1 && cpu < Int32(sysconf(Int32(_SC_NPROCESSORS_CONF))))
    }

    /// Linux 6.1's layout: no SqTotalTime/SqWorkTime, SQEs listed, a poll list, an overflow list.
    static let linux61 = """
        pos:\t0
        flags:\t02000002
        mnt_id:\t15
        ino:\t1057
        SqMask:\t0x7
        SqHead:\t4294967294
        SqTail:\t1
        CachedSqHead:\t4294967294
        CqMask:\t0xf
        CqHead:\t10
        CqTail:\t12
        CachedCqTail:\t12
        SQEs:\t3
            6: opcode:READ, fd:5, flags:0, off:0, addr:0x7f00, rw_flags:0x0, buf_index:0 user_data:41
            7: opcode:NOP, fd:-1, flags:0, off:0, addr:0x0, rw_flags:0x0, buf_index:0 user_data:42
            0: opcode:SEND, fd:9, flags:4, off:0, addr:0x7f80, rw_flags:0x0, buf_index:0 user_data:43
        CQEs:\t2
           10: user_data:39, res:4096, flag:0
           11: user_data:40, res:-11, flag:2
        SqThread:\t-1
        SqThreadCpu:\t-1
        UserFiles:\t2
            0: data.bin
            1: <none>
        UserBufs:\t1
            0: 0x7f1200000000/65536
        PollList:
          op=27, task_works=0
          op=6, task_works=1
        CqOverflowList:
          user_data=44, res=-125, flags=0
        """

    @Test func linux61FormatParsesWithWrappedIndices() {
        let info = RingFdinfo.parse(Self.linux61)
        #expect(info.sqEntries == 8 && info.cqEntries == 16)
        #expect(info.pendingSubmissions == 3)  // 1 - 4294967294, wrapped
        #expect(info.pendingCompletions == 2)
        #expect(info.sqes.map { $0.operation() } == ["READ", "NOP", "SEND"])
        #expect(info.sqes.map(\.fd) == [5, -1, 9])
        #expect(info.sqes.map(\.userData) == [41, 42, 43])
        #expect(info.sqes.map(\.slot) == [6, 7, 0])
        #expect(info.cqes.map(\.result) == [4096, -11])
        #expect(info.sqTotalTime == nil && info.sqWorkTime == nil)
        #expect(info.userFiles == 2 && info.userBuffers == 1)
        #expect(info.pollList.map { $0.operation(names: PendingEntry.opcodeName) } == ["RECV", "POLL_ADD"])
        #expect(info.overflowList.map(\.userData) == [44] && info.overflowList.map(\.result) == [-125])
        #expect(info.other["mnt_id"] == "15" && info.inode == 1057)

        let activity = RingActivity(RingSample(pid: 1, command: "x", fd: 3, time: 0, info: info))
        #expect(activity.backlog == 3 + 2 + 1)
        #expect(activity.waiting == 2 && activity.overflow == 1)
        #expect(
            activity.oldest.map(\.place) == [
                .submission, .submission, .submission, .completion, .completion, .overflow, .waiting, .waiting,
            ])
        #expect(activity.submissionsPerSecond == nil)
    }

    /// Linux 5.10's layout: it printed nothing before SqThread, and no overflow list.
    static let linux510 = """
        pos:\t0
        flags:\t02000002
        mnt_id:\t14
        SqThread:\t812
        SqThreadCpu:\t1
        UserFiles:\t0
        UserBufs:\t0
        Personalities:
            1
        \tUid:\t0\t\t0\t\t0\t\t0
        \tGid:\t0\t\t0\t\t0\t\t0
        \tGroups:\t0
        \tCapEff:\t000001ffffffffff
        PollList:
          op=6, task_works=0
        """

    @Test func linux510FormatParsesWithoutIndices() {
        let info = RingFdinfo.parse(Self.linux510)
        #expect(info.sqHead == nil && info.pendingSubmissions == nil && info.sqEntries == nil)
        #expect(info.sqPollThread == 812 && info.sqThreadCPU == 1)
        #expect(!info.hasOverflowList && info.pollList.count == 1)
        let activity = RingActivity(RingSample(pid: 1, command: "x", fd: 3, time: 0, info: info))
        #expect(activity.overflow == nil && activity.backlog == 0 && activity.sqPollCPU == 1)
        // Personalities' indented credential lines are not mistaken for fields.
        #expect(info.other["Uid"] == nil && info.other.keys.sorted() == ["flags", "mnt_id", "pos"])
    }

    /// A newer layout: SQPOLL statistics, NAPI lines, 128-byte SQEs and 32-byte CQEs with extra
    /// words, a line and a list this parser has never seen.
    static let newer = """
        SqMask:\t0x1
        SqHead:\t0
        SqTail:\t1
        CachedSqHead:\t0
        CqMask:\t0x3
        CqHead:\t0
        CqTail:\t1
        CachedCqTail:\t1
        SQEs:\t1
            0: opcode:URING_CMD, fd:4, flags:0, off:0, addr:0x0, rw_flags:0x0, buf_index:0 user_data:5, e0:0x1, e1:0x2
        CQEs:\t1
            0: user_data:6, res:0, flags:8000, extra1:1, extra2:2
        SqThread:\t900
        SqThreadCpu:\t0
        SqTotalTime:\t18099614
        SqWorkTime:\t16748316
        UserFiles:\t0
        UserBufs:\t0
        PollList:
        CqOverflowList:
        NAPI:\tenabled
        napi tracking:\tdynamic
        ZeroCopyRings:\t2
        FutureList:
          thing=1, other=2
        """

    @Test func newerFormatKeepsUnknownLinesAndIgnoresUnknownLists() {
        let info = RingFdinfo.parse(Self.newer)
        #expect(info.sqes.first?.operation() == "URING_CMD" && info.sqes.first?["e1"] == "0x2")
        #expect(info.cqes.first?["extra2"] == "2" && info.cqes.first?.userData == 6)
        #expect(info.sqTotalTime == 18_099_614 && info.sqWorkTime == 16_748_316)
        #expect(info.other["NAPI"] == "enabled" && info.other["napi tracking"] == "dynamic")
        #expect(info.other["ZeroCopyRings"] == "2" && info.other["FutureList"] == "")
        // An unknown list's items belong to no known list.
        #expect(info.pollList.isEmpty && info.overflowList.isEmpty && info.hasOverflowList)
    }

    /// Linux 6.14+ prints the ring's part only if it can take the ring's lock at once.
    @Test func aReadThatRacedTheRingsLockIsIncomplete() {
        let info = RingFdinfo.parse("pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t9\n")
        #expect(!info.printedRing && info.inode == 9)
        #expect(RingFdinfo.parse(Self.linux510).printedRing && RingFdinfo.parse(Self.linux61).printedRing)
        let activity = RingActivity(RingSample(pid: 1, command: "x", fd: 3, time: 0, info: info))
        #expect(activity.incomplete && activity.sqHead == nil && activity.backlog == 0)
    }

    @Test func ratesComeFromIndexMovementAcrossAWrap() {
        var first = RingFdinfo()
        first.sqHead = UInt32.max - 99
        first.cqTail = UInt32.max - 49
        var second = first
        second.sqHead = 900  // 1,000 further, across the wrap
        second.cqTail = 450  // 500 further
        let earlier = RingSample(pid: 5, command: "c", fd: 7, time: 1_000_000_000, info: first)
        let later = RingSample(pid: 5, command: "c", fd: 7, time: 1_500_000_000, info: second)
        let rings = RingActivity.between([earlier], [later])
        #expect(rings.count == 1)
        #expect(rings.first?.submissionsPerSecond == 2000)
        #expect(rings.first?.completionsPerSecond == 1000)
        // Another descriptor of the same ring (same inode) is shown once; another process's is not merged.
        var withInode = second
        withInode.other["ino"] = "77"
        let twice = RingActivity.between(
            [],
            [
                RingSample(pid: 5, command: "c", fd: 9, time: 0, info: withInode),
                RingSample(pid: 5, command: "c", fd: 8, time: 0, info: withInode),
                RingSample(pid: 6, command: "c", fd: 8, time: 0, info: withInode),
            ])
        #expect(twice.map(\.fd) == [8, 8] && twice.map(\.pid) == [5, 6])
    }
}
