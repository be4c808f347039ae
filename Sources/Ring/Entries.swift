public import SystemPackage

/// One submission queue entry: the kernel's 64-byte `struct io_uring_sqe`.
///
/// Field order and widths follow the kernel ABI exactly (checked by a test against the system
/// header and by `MemoryLayout` offsets). Many kernel fields are unions; each stored property
/// here is named after the union's most common member, and the encoders in `Encoders.swift`
/// document which member they fill. A value starts all zero; an encoder fills only what its
/// opcode reads, so reserved fields stay zero.
@frozen
public struct SubmissionEntry: Equatable, Sendable {
    /// `opcode` (offset 0).
    public var opcode: UInt8
    /// `flags`, `IOSQE_*` (offset 1).
    public var flags: UInt8
    /// `ioprio` (offset 2); for some opcodes a flag field (multishot accept/recv, poll-first).
    public var ioprio: UInt16
    /// `fd` (offset 4): a file descriptor, or a fixed-file index with `IOSQE_FIXED_FILE`.
    public var fd: Int32
    /// `off` / `addr2` / `cmd_op` (offset 8).
    public var off: UInt64
    /// `addr` / `splice_off_in` / `level,optname` (offset 16).
    public var addr: UInt64
    /// `len` (offset 24): byte count, iovec count, or an opcode-specific number.
    public var len: UInt32
    /// The opcode-specific flags union: `rw_flags`, `fsync_flags`, `poll32_events`,
    /// `timeout_flags`, `cancel_flags`, `open_flags`, `msg_flags`, ... (offset 28).
    public var opFlags: UInt32
    /// `user_data` (offset 32): returned untouched in the completion.
    public var userData: UInt64
    /// `buf_index` / `buf_group` (offset 40).
    public var bufIndex: UInt16
    /// `personality` (offset 42).
    public var personality: UInt16
    /// `splice_fd_in` / `file_index` / `addr_len` / `optlen` / `zcrx_ifq_idx` (offset 44).
    public var spliceFdIn: Int32
    /// `addr3` / `attr_ptr` / `optval` (offset 48).
    public var addr3: UInt64
    /// `__pad2[0]` / `attr_type_mask` (offset 56).
    public var pad2: UInt64

    /// An all-zero entry (opcode `NOP`).
    @inlinable
    public init() {
        opcode = 0; flags = 0; ioprio = 0; fd = 0; off = 0; addr = 0; len = 0; opFlags = 0
        userData = 0; bufIndex = 0; personality = 0; spliceFdIn = 0; addr3 = 0; pad2 = 0
    }

    /// The opcode as a typed value.
    @inlinable public var op: Opcode {
        get { Opcode(rawValue: opcode) }
        set { opcode = newValue.rawValue }
    }

    /// The `IOSQE_*` flags as a typed set.
    @inlinable public var sqeFlags: SQEFlags {
        get { SQEFlags(rawValue: flags) }
        set { flags = newValue.rawValue }
    }

    /// `file_index` is the same four bytes as `splice_fd_in`.
    @inlinable public var fileIndex: UInt32 {
        get { UInt32(bitPattern: spliceFdIn) }
        set { spliceFdIn = Int32(bitPattern: newValue) }
    }

    /// Returns a copy with `user_data` set: `ring.push(.nop().userData(7))`.
    @inlinable public func userData(_ value: UInt64) -> SubmissionEntry {
        var copy = self
        copy.userData = value
        return copy
    }

    /// Returns a copy with these `IOSQE_*` flags added.
    @inlinable public func flags(_ extra: SQEFlags) -> SubmissionEntry {
        var copy = self
        copy.flags |= extra.rawValue
        return copy
    }
}

/// One completion queue entry, copied out of the ring: the kernel's `struct io_uring_cqe`
/// (16 bytes), plus the 16 extra bytes of a 32-byte entry (`IORING_SETUP_CQE32`), zero otherwise.
@frozen
public struct Completion: Equatable, Sendable {
    /// `user_data` of the request that completed.
    public var userData: UInt64
    /// `res`: the result, or `-errno` on failure.
    public var result: Int32
    /// `flags`: `IORING_CQE_F_*` plus a buffer id in the upper 16 bits.
    public var rawFlags: UInt32
    /// `big_cqe[0]` of a 32-byte entry (e.g. a `URING_CMD` second result); 0 on 16-byte rings.
    public var extra1: UInt64
    /// `big_cqe[1]` of a 32-byte entry; 0 on 16-byte rings.
    public var extra2: UInt64

    @inlinable
    public init(userData: UInt64, result: Int32, flags: UInt32, extra1: UInt64 = 0, extra2: UInt64 = 0) {
        self.userData = userData
        self.result = result
        self.rawFlags = flags
        self.extra1 = extra1
        self.extra2 = extra2
    }

    /// The `IORING_CQE_F_*` bits.
    @inlinable public var flags: CQEFlags { CQEFlags(rawValue: rawFlags) }

    /// The selected buffer's id when `flags` contains `.buffer`, else nil.
    @inlinable public var bufferID: UInt16? {
        flags.contains(.buffer) ? UInt16(truncatingIfNeeded: rawFlags >> CQEFlags.bufferIDShift) : nil
    }

    /// Whether more completions will follow for this request (multishot).
    @inlinable public var hasMore: Bool { flags.contains(.more) }

    /// The failure as an `Errno` when `result` is negative, else nil.
    public var error: Errno? { result < 0 ? Errno(rawValue: -result) : nil }
}

/// The kernel's `struct __kernel_timespec`: 64-bit seconds and nanoseconds.
@frozen
public struct KernelTimespec: Equatable, Sendable {
    public var seconds: Int64
    public var nanoseconds: Int64

    @inlinable public init(seconds: Int64, nanoseconds: Int64) {
        self.seconds = seconds
        self.nanoseconds = nanoseconds
    }

    /// Converts a `Duration`; negative durations become zero (the kernel rejects negative
    /// timespecs with `EINVAL`).
    @inlinable public init(_ duration: Duration) {
        let (s, attos) = duration.components
        if s < 0 || (s == 0 && attos < 0) {
            self.init(seconds: 0, nanoseconds: 0)
        } else {
            self.init(seconds: s, nanoseconds: attos / 1_000_000_000)
        }
    }
}

/// `struct io_sqring_offsets`: where each SQ ring field lives in the SQ mapping.
@frozen
public struct SQRingOffsets: Equatable, Sendable {
    public var head: UInt32 = 0
    public var tail: UInt32 = 0
    public var ringMask: UInt32 = 0
    public var ringEntries: UInt32 = 0
    public var flags: UInt32 = 0
    public var dropped: UInt32 = 0
    public var array: UInt32 = 0
    public var resv1: UInt32 = 0
    /// `user_addr`: ring memory supplied by the application (`IORING_SETUP_NO_MMAP`).
    public var userAddress: UInt64 = 0
    public init() {}
}

/// `struct io_cqring_offsets`: where each CQ ring field lives in the CQ mapping.
@frozen
public struct CQRingOffsets: Equatable, Sendable {
    public var head: UInt32 = 0
    public var tail: UInt32 = 0
    public var ringMask: UInt32 = 0
    public var ringEntries: UInt32 = 0
    public var overflow: UInt32 = 0
    public var cqes: UInt32 = 0
    public var flags: UInt32 = 0
    public var resv1: UInt32 = 0
    /// `user_addr`: ring memory supplied by the application (`IORING_SETUP_NO_MMAP`).
    public var userAddress: UInt64 = 0
    public init() {}
}

/// `struct io_uring_params`: passed to `io_uring_setup(2)` and filled in by the kernel.
@frozen
public struct RingParameters: Equatable, Sendable {
    public var sqEntries: UInt32 = 0
    public var cqEntries: UInt32 = 0
    public var flags: UInt32 = 0
    public var sqThreadCPU: UInt32 = 0
    public var sqThreadIdle: UInt32 = 0
    public var features: UInt32 = 0
    public var wqFD: UInt32 = 0
    public var resv0: UInt32 = 0
    public var resv1: UInt32 = 0
    public var resv2: UInt32 = 0
    public var sqOffsets = SQRingOffsets()
    public var cqOffsets = CQRingOffsets()
    public init() {}
}

/// `struct io_uring_getevents_arg`: the extended argument of `io_uring_enter(2)`.
@frozen
public struct GetEventsArgument: Equatable, Sendable {
    public var sigmask: UInt64 = 0
    public var sigmaskSize: UInt32 = 0
    public var minWaitMicroseconds: UInt32 = 0
    public var timespec: UInt64 = 0
    public init() {}
}

/// `struct io_uring_rsrc_update`: one slot update (used to register ring fds).
@frozen
public struct ResourceUpdate: Equatable, Sendable {
    public var offset: UInt32 = 0
    public var resv: UInt32 = 0
    public var data: UInt64 = 0
    public init() {}
}
