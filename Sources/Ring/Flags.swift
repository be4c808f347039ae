/// A kernel bit set whose bits have kernel names, so they can be printed, probed and compared
/// against the system header.
public protocol KernelFlags: OptionSet, Sendable, CustomStringConvertible
where
    Element == Self,
    RawValue: FixedWidthInteger & Sendable
{
    /// Every bit this package knows, in ascending order, with its kernel name.
    static var allNamed: [(flag: Self, kernelName: String)] { get }
}

extension KernelFlags {
    /// The kernel names of the bits set, then any unknown bits in hex: `IOSQE_IO_LINK|0x100`.
    public var description: String {
        var names: [String] = []
        var rest = rawValue
        for (flag, name) in Self.allNamed where contains(flag) && flag.rawValue != 0 {
            names.append(name)
            rest &= ~flag.rawValue
        }
        if rest != 0 { names.append("0x" + String(rest, radix: 16)) }
        return names.isEmpty ? "[]" : names.joined(separator: "|")
    }
}

/// Flags on one submission entry (`io_uring_sqe.flags`, the kernel's `IOSQE_*`).
public struct SQEFlags: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt8
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    /// `IOSQE_FIXED_FILE`: `fd` is an index into the registered file table.
    public static let fixedFile = SQEFlags(rawValue: 1 << 0)
    /// `IOSQE_IO_DRAIN`: start only after every earlier request has completed.
    public static let drain = SQEFlags(rawValue: 1 << 1)
    /// `IOSQE_IO_LINK`: the next entry starts only if this one succeeds.
    public static let link = SQEFlags(rawValue: 1 << 2)
    /// `IOSQE_IO_HARDLINK`: the next entry starts when this one ends, whatever its result.
    public static let hardLink = SQEFlags(rawValue: 1 << 3)
    /// `IOSQE_ASYNC`: skip the non-blocking attempt and go straight to an io-wq worker.
    public static let async = SQEFlags(rawValue: 1 << 4)
    /// `IOSQE_BUFFER_SELECT`: pick a buffer from the group in `bufIndex`.
    public static let bufferSelect = SQEFlags(rawValue: 1 << 5)
    /// `IOSQE_CQE_SKIP_SUCCESS`: post no completion if the request succeeds.
    public static let skipSuccess = SQEFlags(rawValue: 1 << 6)

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: SQEFlags, kernelName: String)] = [
        (.fixedFile, "IOSQE_FIXED_FILE"), (.drain, "IOSQE_IO_DRAIN"), (.link, "IOSQE_IO_LINK"),
        (.hardLink, "IOSQE_IO_HARDLINK"), (.async, "IOSQE_ASYNC"),
        (.bufferSelect, "IOSQE_BUFFER_SELECT"), (.skipSuccess, "IOSQE_CQE_SKIP_SUCCESS"),
    ]
}

/// Flags for `io_uring_setup(2)` (`io_uring_params.flags`, the kernel's `IORING_SETUP_*`).
public struct SetupFlags: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt32
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `IORING_SETUP_IOPOLL`: busy-poll for completions (O_DIRECT on polled block devices only).
    public static let ioPoll = SetupFlags(rawValue: 1 << 0)
    /// `IORING_SETUP_SQPOLL`: a kernel thread consumes the SQ; submission needs no syscall.
    public static let sqPoll = SetupFlags(rawValue: 1 << 1)
    /// `IORING_SETUP_SQ_AFF`: pin the SQPOLL thread to `sq_thread_cpu`.
    public static let sqAffinity = SetupFlags(rawValue: 1 << 2)
    /// `IORING_SETUP_CQSIZE`: the CQ size is given in `cq_entries`.
    public static let cqSize = SetupFlags(rawValue: 1 << 3)
    /// `IORING_SETUP_CLAMP`: clamp oversize entry counts instead of failing with `EINVAL`.
    public static let clamp = SetupFlags(rawValue: 1 << 4)
    /// `IORING_SETUP_ATTACH_WQ`: share the io-wq backend of the ring in `wq_fd`.
    public static let attachWQ = SetupFlags(rawValue: 1 << 5)
    /// `IORING_SETUP_R_DISABLED`: start disabled; enable with `Ring.enable()`.
    public static let disabled = SetupFlags(rawValue: 1 << 6)
    /// `IORING_SETUP_SUBMIT_ALL`: keep submitting the batch after an entry fails to prepare.
    public static let submitAll = SetupFlags(rawValue: 1 << 7)
    /// `IORING_SETUP_COOP_TASKRUN`: run completion work at the next kernel entry, without an IPI.
    public static let coopTaskRun = SetupFlags(rawValue: 1 << 8)
    /// `IORING_SETUP_TASKRUN_FLAG`: set `IORING_SQ_TASKRUN` when completion work is pending.
    public static let taskRunFlag = SetupFlags(rawValue: 1 << 9)
    /// `IORING_SETUP_SQE128`: 128-byte submission entries.
    public static let sqe128 = SetupFlags(rawValue: 1 << 10)
    /// `IORING_SETUP_CQE32`: 32-byte completion entries.
    public static let cqe32 = SetupFlags(rawValue: 1 << 11)
    /// `IORING_SETUP_SINGLE_ISSUER`: only one thread submits.
    public static let singleIssuer = SetupFlags(rawValue: 1 << 12)
    /// `IORING_SETUP_DEFER_TASKRUN`: completion work runs only when the issuer waits for events.
    /// Needs `.singleIssuer`. Add `.taskRunFlag` so `Ring.forEachCompletion` can see pending work
    /// and flush it; without it, completions of async work appear only after a wait or
    /// `Ring.flushCompletions()`.
    public static let deferTaskRun = SetupFlags(rawValue: 1 << 13)
    /// `IORING_SETUP_NO_MMAP`: the application provides the ring memory.
    public static let noMmap = SetupFlags(rawValue: 1 << 14)
    /// `IORING_SETUP_REGISTERED_FD_ONLY`: return a registered ring index instead of an fd.
    public static let registeredFDOnly = SetupFlags(rawValue: 1 << 15)
    /// `IORING_SETUP_NO_SQARRAY`: no SQ index array; entries are consumed in ring order.
    public static let noSQArray = SetupFlags(rawValue: 1 << 16)
    /// `IORING_SETUP_HYBRID_IOPOLL`: sleep before polling (with `ioPoll`).
    public static let hybridIOPoll = SetupFlags(rawValue: 1 << 17)
    /// `IORING_SETUP_CQE_MIXED`: 16- and 32-byte completions in one ring (`CQEFlags.big`).
    public static let cqeMixed = SetupFlags(rawValue: 1 << 18)
    /// `IORING_SETUP_SQE_MIXED`: 64- and 128-byte submissions in one ring (newer than 6.18).
    public static let sqeMixed = SetupFlags(rawValue: 1 << 19)

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: SetupFlags, kernelName: String)] = [
        (.ioPoll, "IORING_SETUP_IOPOLL"), (.sqPoll, "IORING_SETUP_SQPOLL"),
        (.sqAffinity, "IORING_SETUP_SQ_AFF"), (.cqSize, "IORING_SETUP_CQSIZE"),
        (.clamp, "IORING_SETUP_CLAMP"), (.attachWQ, "IORING_SETUP_ATTACH_WQ"),
        (.disabled, "IORING_SETUP_R_DISABLED"), (.submitAll, "IORING_SETUP_SUBMIT_ALL"),
        (.coopTaskRun, "IORING_SETUP_COOP_TASKRUN"), (.taskRunFlag, "IORING_SETUP_TASKRUN_FLAG"),
        (.sqe128, "IORING_SETUP_SQE128"), (.cqe32, "IORING_SETUP_CQE32"),
        (.singleIssuer, "IORING_SETUP_SINGLE_ISSUER"),
        (.deferTaskRun, "IORING_SETUP_DEFER_TASKRUN"), (.noMmap, "IORING_SETUP_NO_MMAP"),
        (.registeredFDOnly, "IORING_SETUP_REGISTERED_FD_ONLY"),
        (.noSQArray, "IORING_SETUP_NO_SQARRAY"), (.hybridIOPoll, "IORING_SETUP_HYBRID_IOPOLL"),
        (.cqeMixed, "IORING_SETUP_CQE_MIXED"), (.sqeMixed, "IORING_SETUP_SQE_MIXED"),
    ]
}

/// Flags for `io_uring_enter(2)` (the kernel's `IORING_ENTER_*`).
public struct EnterFlags: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt32
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `IORING_ENTER_GETEVENTS`: wait for `min_complete` completions (and run task work).
    public static let getEvents = EnterFlags(rawValue: 1 << 0)
    /// `IORING_ENTER_SQ_WAKEUP`: wake a sleeping SQPOLL thread.
    public static let sqWakeup = EnterFlags(rawValue: 1 << 1)
    /// `IORING_ENTER_SQ_WAIT`: wait until the SQPOLL thread has made room in the SQ.
    public static let sqWait = EnterFlags(rawValue: 1 << 2)
    /// `IORING_ENTER_EXT_ARG`: the last argument is an `io_uring_getevents_arg`.
    public static let extArg = EnterFlags(rawValue: 1 << 3)
    /// `IORING_ENTER_REGISTERED_RING`: `fd` is a registered ring index.
    public static let registeredRing = EnterFlags(rawValue: 1 << 4)
    /// `IORING_ENTER_ABS_TIMER`: the wait timeout is absolute.
    public static let absTimer = EnterFlags(rawValue: 1 << 5)
    /// `IORING_ENTER_EXT_ARG_REG`: the wait argument lives in a registered region.
    public static let extArgReg = EnterFlags(rawValue: 1 << 6)
    /// `IORING_ENTER_NO_IOWAIT`: do not account the wait as iowait.
    public static let noIOWait = EnterFlags(rawValue: 1 << 7)

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: EnterFlags, kernelName: String)] = [
        (.getEvents, "IORING_ENTER_GETEVENTS"), (.sqWakeup, "IORING_ENTER_SQ_WAKEUP"),
        (.sqWait, "IORING_ENTER_SQ_WAIT"), (.extArg, "IORING_ENTER_EXT_ARG"),
        (.registeredRing, "IORING_ENTER_REGISTERED_RING"), (.absTimer, "IORING_ENTER_ABS_TIMER"),
        (.extArgReg, "IORING_ENTER_EXT_ARG_REG"), (.noIOWait, "IORING_ENTER_NO_IOWAIT"),
    ]
}

/// What the running kernel's io_uring offers (`io_uring_params.features`, `IORING_FEAT_*`).
public struct Features: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt32
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `IORING_FEAT_SINGLE_MMAP`: SQ and CQ rings share one mapping.
    public static let singleMmap = Features(rawValue: 1 << 0)
    /// `IORING_FEAT_NODROP`: completions are never dropped; overflow is kept by the kernel.
    public static let noDrop = Features(rawValue: 1 << 1)
    /// `IORING_FEAT_SUBMIT_STABLE`: data for a submitted entry need not outlive the submit call.
    public static let submitStable = Features(rawValue: 1 << 2)
    /// `IORING_FEAT_RW_CUR_POS`: offset -1 means the current file position.
    public static let rwCurrentPosition = Features(rawValue: 1 << 3)
    /// `IORING_FEAT_CUR_PERSONALITY`: requests run with the submitter's credentials.
    public static let currentPersonality = Features(rawValue: 1 << 4)
    /// `IORING_FEAT_FAST_POLL`: internal poll instead of punting to a worker.
    public static let fastPoll = Features(rawValue: 1 << 5)
    /// `IORING_FEAT_POLL_32BITS`: 32-bit poll event masks.
    public static let poll32Bits = Features(rawValue: 1 << 6)
    /// `IORING_FEAT_SQPOLL_NONFIXED`: SQPOLL works with plain file descriptors.
    public static let sqPollNonFixed = Features(rawValue: 1 << 7)
    /// `IORING_FEAT_EXT_ARG`: `io_uring_enter` takes an extended argument (wait timeout).
    public static let extArg = Features(rawValue: 1 << 8)
    /// `IORING_FEAT_NATIVE_WORKERS`: io-wq workers are threads of the submitting process.
    public static let nativeWorkers = Features(rawValue: 1 << 9)
    /// `IORING_FEAT_RSRC_TAGS`: registered resources carry tags.
    public static let resourceTags = Features(rawValue: 1 << 10)
    /// `IORING_FEAT_CQE_SKIP`: `IOSQE_CQE_SKIP_SUCCESS` is supported.
    public static let cqeSkip = Features(rawValue: 1 << 11)
    /// `IORING_FEAT_LINKED_FILE`: files of linked requests are resolved at execution.
    public static let linkedFile = Features(rawValue: 1 << 12)
    /// `IORING_FEAT_REG_REG_RING`: register calls accept a registered ring index.
    public static let registerRegisteredRing = Features(rawValue: 1 << 13)
    /// `IORING_FEAT_RECVSEND_BUNDLE`: send/recv bundles.
    public static let recvSendBundle = Features(rawValue: 1 << 14)
    /// `IORING_FEAT_MIN_TIMEOUT`: waits take a minimum batch timeout.
    public static let minTimeout = Features(rawValue: 1 << 15)
    /// `IORING_FEAT_RW_ATTR`: reads and writes take attributes (e.g. PI).
    public static let rwAttributes = Features(rawValue: 1 << 16)
    /// `IORING_FEAT_NO_IOWAIT`: `IORING_ENTER_NO_IOWAIT` is supported.
    public static let noIOWait = Features(rawValue: 1 << 17)

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: Features, kernelName: String)] = [
        (.singleMmap, "IORING_FEAT_SINGLE_MMAP"), (.noDrop, "IORING_FEAT_NODROP"),
        (.submitStable, "IORING_FEAT_SUBMIT_STABLE"), (.rwCurrentPosition, "IORING_FEAT_RW_CUR_POS"),
        (.currentPersonality, "IORING_FEAT_CUR_PERSONALITY"), (.fastPoll, "IORING_FEAT_FAST_POLL"),
        (.poll32Bits, "IORING_FEAT_POLL_32BITS"), (.sqPollNonFixed, "IORING_FEAT_SQPOLL_NONFIXED"),
        (.extArg, "IORING_FEAT_EXT_ARG"), (.nativeWorkers, "IORING_FEAT_NATIVE_WORKERS"),
        (.resourceTags, "IORING_FEAT_RSRC_TAGS"), (.cqeSkip, "IORING_FEAT_CQE_SKIP"),
        (.linkedFile, "IORING_FEAT_LINKED_FILE"),
        (.registerRegisteredRing, "IORING_FEAT_REG_REG_RING"),
        (.recvSendBundle, "IORING_FEAT_RECVSEND_BUNDLE"), (.minTimeout, "IORING_FEAT_MIN_TIMEOUT"),
        (.rwAttributes, "IORING_FEAT_RW_ATTR"), (.noIOWait, "IORING_FEAT_NO_IOWAIT"),
    ]
}

/// Flags on a completion (`io_uring_cqe.flags`, `IORING_CQE_F_*`). The upper 16 bits carry the
/// buffer id when `buffer` is set; see `Completion.bufferID`.
public struct CQEFlags: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt32
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `IORING_CQE_F_BUFFER`: the upper 16 bits hold the id of the selected buffer.
    public static let buffer = CQEFlags(rawValue: 1 << 0)
    /// `IORING_CQE_F_MORE`: a multishot request will post more completions.
    public static let more = CQEFlags(rawValue: 1 << 1)
    /// `IORING_CQE_F_SOCK_NONEMPTY`: the socket still had data after this receive.
    public static let socketNonEmpty = CQEFlags(rawValue: 1 << 2)
    /// `IORING_CQE_F_NOTIF`: a zero-copy notification: the send buffer is free again.
    public static let notification = CQEFlags(rawValue: 1 << 3)
    /// `IORING_CQE_F_BUF_MORE`: the incrementally consumed buffer is not used up yet.
    public static let bufferMore = CQEFlags(rawValue: 1 << 4)
    /// `IORING_CQE_F_SKIP`: padding entry in a mixed-size CQ; skip it.
    public static let skip = CQEFlags(rawValue: 1 << 5)
    /// `IORING_CQE_F_32`: this entry is 32 bytes (mixed-size CQ).
    public static let big = CQEFlags(rawValue: 1 << 15)

    /// `IORING_CQE_BUFFER_SHIFT`: where the buffer id starts in `flags`.
    public static let bufferIDShift: UInt32 = 16

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: CQEFlags, kernelName: String)] = [
        (.buffer, "IORING_CQE_F_BUFFER"), (.more, "IORING_CQE_F_MORE"),
        (.socketNonEmpty, "IORING_CQE_F_SOCK_NONEMPTY"), (.notification, "IORING_CQE_F_NOTIF"),
        (.bufferMore, "IORING_CQE_F_BUF_MORE"), (.skip, "IORING_CQE_F_SKIP"),
        (.big, "IORING_CQE_F_32"),
    ]
}

/// Flags the kernel sets in the SQ ring's `flags` word (`IORING_SQ_*`).
public struct SQRingFlags: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt32
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `IORING_SQ_NEED_WAKEUP`: the SQPOLL thread sleeps; enter with `sqWakeup`.
    public static let needWakeup = SQRingFlags(rawValue: 1 << 0)
    /// `IORING_SQ_CQ_OVERFLOW`: completions wait in the kernel's overflow list.
    public static let cqOverflow = SQRingFlags(rawValue: 1 << 1)
    /// `IORING_SQ_TASKRUN`: completion work is pending; enter with `getEvents` to run it.
    public static let taskRun = SQRingFlags(rawValue: 1 << 2)

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: SQRingFlags, kernelName: String)] = [
        (.needWakeup, "IORING_SQ_NEED_WAKEUP"), (.cqOverflow, "IORING_SQ_CQ_OVERFLOW"),
        (.taskRun, "IORING_SQ_TASKRUN"),
    ]
}

/// Flags the application sets in the CQ ring's `flags` word (`IORING_CQ_*`).
public struct CQRingFlags: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt32
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `IORING_CQ_EVENTFD_DISABLED`: do not signal the registered eventfd.
    public static let eventFDDisabled = CQRingFlags(rawValue: 1 << 0)

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: CQRingFlags, kernelName: String)] = [
        (.eventFDDisabled, "IORING_CQ_EVENTFD_DISABLED")
    ]
}

/// `sqe.fsync_flags` (`IORING_FSYNC_*`).
public struct FsyncFlags: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt32
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `IORING_FSYNC_DATASYNC`: `fdatasync` semantics.
    public static let dataSync = FsyncFlags(rawValue: 1 << 0)

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: FsyncFlags, kernelName: String)] = [
        (.dataSync, "IORING_FSYNC_DATASYNC")
    ]
}

/// `sqe.timeout_flags` (`IORING_TIMEOUT_*`, `IORING_LINK_TIMEOUT_UPDATE`).
public struct TimeoutFlags: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt32
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `IORING_TIMEOUT_ABS`: the time is absolute.
    public static let absolute = TimeoutFlags(rawValue: 1 << 0)
    /// `IORING_TIMEOUT_UPDATE`: (timeout remove) update an armed timeout instead.
    public static let update = TimeoutFlags(rawValue: 1 << 1)
    /// `IORING_TIMEOUT_BOOTTIME`: measure on `CLOCK_BOOTTIME`.
    public static let bootTime = TimeoutFlags(rawValue: 1 << 2)
    /// `IORING_TIMEOUT_REALTIME`: measure on `CLOCK_REALTIME`.
    public static let realTime = TimeoutFlags(rawValue: 1 << 3)
    /// `IORING_LINK_TIMEOUT_UPDATE`: (timeout remove) update an armed link timeout.
    public static let linkTimeoutUpdate = TimeoutFlags(rawValue: 1 << 4)
    /// `IORING_TIMEOUT_ETIME_SUCCESS`: expiry completes with `-ETIME` but counts as success
    /// for links.
    public static let etimeSuccess = TimeoutFlags(rawValue: 1 << 5)
    /// `IORING_TIMEOUT_MULTISHOT`: fire repeatedly (count = number of shots, 0 = forever).
    public static let multishot = TimeoutFlags(rawValue: 1 << 6)

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: TimeoutFlags, kernelName: String)] = [
        (.absolute, "IORING_TIMEOUT_ABS"), (.update, "IORING_TIMEOUT_UPDATE"),
        (.bootTime, "IORING_TIMEOUT_BOOTTIME"), (.realTime, "IORING_TIMEOUT_REALTIME"),
        (.linkTimeoutUpdate, "IORING_LINK_TIMEOUT_UPDATE"),
        (.etimeSuccess, "IORING_TIMEOUT_ETIME_SUCCESS"), (.multishot, "IORING_TIMEOUT_MULTISHOT"),
    ]
}

/// `sqe.cancel_flags` (`IORING_ASYNC_CANCEL_*`): how `ASYNC_CANCEL` picks its targets.
public struct CancelFlags: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt32
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `IORING_ASYNC_CANCEL_ALL`: cancel every match, not just the first.
    public static let all = CancelFlags(rawValue: 1 << 0)
    /// `IORING_ASYNC_CANCEL_FD`: match on the file descriptor in `fd`.
    public static let fd = CancelFlags(rawValue: 1 << 1)
    /// `IORING_ASYNC_CANCEL_ANY`: match every request.
    public static let any = CancelFlags(rawValue: 1 << 2)
    /// `IORING_ASYNC_CANCEL_FD_FIXED`: `fd` is a fixed-file index.
    public static let fdFixed = CancelFlags(rawValue: 1 << 3)
    /// `IORING_ASYNC_CANCEL_USERDATA`: match on user data (the default when no key is given).
    public static let userData = CancelFlags(rawValue: 1 << 4)
    /// `IORING_ASYNC_CANCEL_OP`: match on the opcode in `len`.
    public static let opcode = CancelFlags(rawValue: 1 << 5)

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: CancelFlags, kernelName: String)] = [
        (.all, "IORING_ASYNC_CANCEL_ALL"), (.fd, "IORING_ASYNC_CANCEL_FD"),
        (.any, "IORING_ASYNC_CANCEL_ANY"), (.fdFixed, "IORING_ASYNC_CANCEL_FD_FIXED"),
        (.userData, "IORING_ASYNC_CANCEL_USERDATA"), (.opcode, "IORING_ASYNC_CANCEL_OP"),
    ]
}

/// `sqe.rw_flags` for reads and writes: the `RWF_*` flags of `preadv2(2)`/`pwritev2(2)`.
public struct ReadWriteFlags: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt32
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `RWF_HIPRI`: high-priority (polled) I/O.
    public static let highPriority = ReadWriteFlags(rawValue: 0x01)
    /// `RWF_DSYNC`: per-write `O_DSYNC`.
    public static let dataSync = ReadWriteFlags(rawValue: 0x02)
    /// `RWF_SYNC`: per-write `O_SYNC`.
    public static let sync = ReadWriteFlags(rawValue: 0x04)
    /// `RWF_NOWAIT`: fail with `EAGAIN` rather than block.
    public static let noWait = ReadWriteFlags(rawValue: 0x08)
    /// `RWF_APPEND`: per-write `O_APPEND`.
    public static let append = ReadWriteFlags(rawValue: 0x10)

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: ReadWriteFlags, kernelName: String)] = [
        (.highPriority, "RWF_HIPRI"), (.dataSync, "RWF_DSYNC"), (.sync, "RWF_SYNC"),
        (.noWait, "RWF_NOWAIT"), (.append, "RWF_APPEND"),
    ]
}
