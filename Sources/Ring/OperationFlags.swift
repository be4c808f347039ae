// Flag sets that live in one opcode's fields (not in the common `IOSQE_*` byte).

/// Poll event mask for `POLL_ADD` (`POLLIN`, `POLLOUT`, ... as in poll(2)), 32 bits wide.
public struct PollEvents: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt32
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `POLLIN`: there is data to read.
    public static let readable = PollEvents(rawValue: 0x001)  // POLLIN
    /// `POLLPRI`: there is urgent data to read.
    public static let priority = PollEvents(rawValue: 0x002)  // POLLPRI
    /// `POLLOUT`: writing will not block.
    public static let writable = PollEvents(rawValue: 0x004)  // POLLOUT
    /// `POLLERR`: an error condition (reported, never needs asking for).
    public static let error = PollEvents(rawValue: 0x008)  // POLLERR
    /// `POLLHUP`: the peer hung up (reported, never needs asking for).
    public static let hangup = PollEvents(rawValue: 0x010)  // POLLHUP
    /// `POLLNVAL`: the descriptor is not open.
    public static let invalid = PollEvents(rawValue: 0x020)  // POLLNVAL
    /// `POLLRDHUP`: the peer shut down its writing half.
    public static let readHangup = PollEvents(rawValue: 0x2000)  // POLLRDHUP

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: PollEvents, kernelName: String)] = [
        (.readable, "POLLIN"), (.priority, "POLLPRI"), (.writable, "POLLOUT"), (.error, "POLLERR"),
        (.hangup, "POLLHUP"), (.invalid, "POLLNVAL"), (.readHangup, "POLLRDHUP"),
    ]
}

/// `POLL_ADD`/`POLL_REMOVE` flags carried in `len` (`IORING_POLL_*`).
public struct PollFlags: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt32
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `IORING_POLL_ADD_MULTI`: stay armed, post a completion with `F_MORE` per event.
    public static let multishot = PollFlags(rawValue: 1 << 0)
    /// `IORING_POLL_UPDATE_EVENTS`: (remove) replace the event mask.
    public static let updateEvents = PollFlags(rawValue: 1 << 1)
    /// `IORING_POLL_UPDATE_USER_DATA`: (remove) replace the user data.
    public static let updateUserData = PollFlags(rawValue: 1 << 2)
    /// `IORING_POLL_ADD_LEVEL`: level-triggered.
    public static let levelTriggered = PollFlags(rawValue: 1 << 3)

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: PollFlags, kernelName: String)] = [
        (.multishot, "IORING_POLL_ADD_MULTI"), (.updateEvents, "IORING_POLL_UPDATE_EVENTS"),
        (.updateUserData, "IORING_POLL_UPDATE_USER_DATA"), (.levelTriggered, "IORING_POLL_ADD_LEVEL"),
    ]
}

/// Send/receive flags carried in `ioprio` (`IORING_RECVSEND_*`, `IORING_RECV_MULTISHOT`, ...).
public struct SendReceiveFlags: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt16
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt16) { self.rawValue = rawValue }

    /// `IORING_RECVSEND_POLL_FIRST`: poll before trying the socket.
    public static let pollFirst = SendReceiveFlags(rawValue: 1 << 0)
    /// `IORING_RECV_MULTISHOT`: keep receiving into provided buffers (`F_MORE` per completion).
    public static let multishot = SendReceiveFlags(rawValue: 1 << 1)
    /// `IORING_RECVSEND_FIXED_BUF`: (zero-copy send) `buf_index` names a registered buffer.
    public static let fixedBuffer = SendReceiveFlags(rawValue: 1 << 2)
    /// `IORING_SEND_ZC_REPORT_USAGE`: the notification says whether data was copied.
    public static let reportUsage = SendReceiveFlags(rawValue: 1 << 3)
    /// `IORING_RECVSEND_BUNDLE`: use several provided buffers in one operation.
    public static let bundle = SendReceiveFlags(rawValue: 1 << 4)

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: SendReceiveFlags, kernelName: String)] = [
        (.pollFirst, "IORING_RECVSEND_POLL_FIRST"), (.multishot, "IORING_RECV_MULTISHOT"),
        (.fixedBuffer, "IORING_RECVSEND_FIXED_BUF"), (.reportUsage, "IORING_SEND_ZC_REPORT_USAGE"),
        (.bundle, "IORING_RECVSEND_BUNDLE"),
    ]
}

/// `MSG_RING` flags (`IORING_MSG_RING_*`).
public struct MessageRingFlags: KernelFlags {
    /// The raw bits, as the kernel reads them.
    public var rawValue: UInt32
    /// Wraps raw bits; bits this package does not name are kept.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }

    /// `IORING_MSG_RING_CQE_SKIP`: post nothing to the target ring (fd passing only).
    public static let skipTargetCompletion = MessageRingFlags(rawValue: 1 << 0)
    /// `IORING_MSG_RING_FLAGS_PASS`: the target CQE's flags come from `file_index`.
    public static let passFlags = MessageRingFlags(rawValue: 1 << 1)

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allNamed: [(flag: MessageRingFlags, kernelName: String)] = [
        (.skipTargetCompletion, "IORING_MSG_RING_CQE_SKIP"), (.passFlags, "IORING_MSG_RING_FLAGS_PASS"),
    ]
}

/// Where an operation that creates a file puts it: a plain descriptor, or a fixed-file slot
/// (the `_direct` variants: `file_index`).
public enum FileDestination: Sendable, Equatable {
    /// A normal file descriptor, returned in the completion.
    case descriptor
    /// This fixed-file slot (0-based); the completion's result is 0 on success.
    case fixedSlot(UInt32)
    /// A free fixed-file slot chosen by the kernel (`IORING_FILE_INDEX_ALLOC`); the result is
    /// the slot. Needs a registered file table (and an allocation range, if set).
    case allocateFixedSlot

    /// The `file_index` value: 0 for none, slot + 1, or `IORING_FILE_INDEX_ALLOC` (~0).
    @inlinable public var fileIndex: UInt32 {
        switch self {
        case .descriptor: 0
        case .fixedSlot(let slot): slot &+ 1  // wrapping: the kernel subtracts 1
        case .allocateFixedSlot: UInt32.max
        }
    }
}

/// `struct open_how` for `openat2(2)`.
///
/// Kernel ABI: `include/uapi/linux/openat2.h`, layout as of Linux 6.18 (since 5.6).
@frozen
public struct OpenHow: Equatable, Sendable {
    /// `flags`: the `open(2)` flags (`O_*`).
    public var flags: UInt64
    /// `mode`: permission bits for a created file.
    public var mode: UInt64
    /// `RESOLVE_*` flags.
    public var resolve: UInt64
    /// `open(2)` flags, creation mode and `RESOLVE_*` flags.
    public init(flags: Int32, mode: UInt32 = 0, resolve: UInt64 = 0) {
        self.flags = UInt64(UInt32(bitPattern: flags))
        self.mode = UInt64(mode)
        self.resolve = resolve
    }
}

/// `struct futex_waitv` for `FUTEX_WAITV`.
///
/// Kernel ABI: `include/uapi/linux/futex.h`, layout as of Linux 6.18 (since 5.16; io_uring's
/// `FUTEX_WAITV` since 6.7).
@frozen
public struct FutexWaitVector: Equatable, Sendable {
    /// `val`: the value the futex word must hold for the wait to start.
    public var value: UInt64
    /// `uaddr`: the futex word.
    public var address: UInt64
    /// `flags`: the `FUTEX2_*` size and flags.
    public var flags: UInt32
    /// `__reserved`: zero.
    public var reserved: UInt32 = 0
    /// A wait on the futex word at `address` while it holds `value`; the word must outlive the
    /// request.
    public init(value: UInt64, address: UnsafeRawPointer, flags: UInt32) {
        self.value = value
        self.address = UInt64(UInt(bitPattern: address))
        self.flags = flags
    }
}

/// `FUTEX2_*` flags used by the futex opcodes.
public enum Futex2 {
    /// `FUTEX2_SIZE_U32`: a 32-bit futex word.
    public static let size32: UInt32 = 0x02
    /// `FUTEX2_PRIVATE`: process-private futex.
    public static let privateFutex: UInt32 = 128
    /// `FUTEX_BITSET_MATCH_ANY`: wait/wake mask matching every waker.
    public static let matchAny: UInt64 = 0xFFFF_FFFF
}
