public import SystemPackage

/// One submission queue entry: the kernel's 64-byte `struct io_uring_sqe`.
///
/// Field order and widths follow the kernel ABI exactly (checked by a test against the system
/// header and by `MemoryLayout` offsets). Many kernel fields are unions; each stored property
/// here is named after the union's most common member, and the encoders in `Encoders.swift`
/// document which member they fill. A value starts all zero; an encoder fills only what its
/// opcode reads, so reserved fields stay zero.
///
/// Kernel ABI: `include/uapi/linux/io_uring.h`, layout as of Linux 6.18 (io_uring arrived in 5.1;
/// the 128-byte form, `IORING_SETUP_SQE128`, in 5.19).
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
///
/// Kernel ABI: `include/uapi/linux/io_uring.h`, layout as of Linux 6.18 (since 5.1; 32-byte
/// entries, `IORING_SETUP_CQE32`, since 5.19).
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

    /// A completion with these fields (tests and scripted engines build them; the ring copies them
    /// out of the kernel).
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
///
/// Kernel ABI: `include/uapi/linux/time_types.h`, unchanged since io_uring arrived in 5.1.
@frozen
public struct KernelTimespec: Equatable, Sendable {
    /// `tv_sec`: whole seconds.
    public var seconds: Int64
    /// `tv_nsec`: nanoseconds, 0 to 999,999,999.
    public var nanoseconds: Int64

    /// A timespec from its two fields.
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
///
/// Kernel ABI: `include/uapi/linux/io_uring.h`, layout as of Linux 6.18 (since 5.1; `user_addr`
/// since 6.5).
@frozen
public struct SQRingOffsets: Equatable, Sendable {
    /// `head`: offset of the SQ head index (written by the kernel).
    public var head: UInt32 = 0
    /// `tail`: offset of the SQ tail index (written by the application).
    public var tail: UInt32 = 0
    /// `ring_mask`: offset of the index mask (entries - 1).
    public var ringMask: UInt32 = 0
    /// `ring_entries`: offset of the number of entries.
    public var ringEntries: UInt32 = 0
    /// `flags`: offset of the `IORING_SQ_*` flags word (written by the kernel).
    public var flags: UInt32 = 0
    /// `dropped`: offset of the count of invalid entries the kernel skipped.
    public var dropped: UInt32 = 0
    /// `array`: offset of the index array (absent with `IORING_SETUP_NO_SQARRAY`).
    public var array: UInt32 = 0
    /// `resv1`: reserved, zero.
    public var resv1: UInt32 = 0
    /// `user_addr`: ring memory supplied by the application (`IORING_SETUP_NO_MMAP`).
    public var userAddress: UInt64 = 0
    /// All offsets zero; `io_uring_setup` fills them in.
    public init() {}
}

/// `struct io_cqring_offsets`: where each CQ ring field lives in the CQ mapping.
///
/// Kernel ABI: `include/uapi/linux/io_uring.h`, layout as of Linux 6.18 (since 5.1; `flags` since
/// 5.8, `user_addr` since 6.5).
@frozen
public struct CQRingOffsets: Equatable, Sendable {
    /// `head`: offset of the CQ head index (written by the application).
    public var head: UInt32 = 0
    /// `tail`: offset of the CQ tail index (written by the kernel).
    public var tail: UInt32 = 0
    /// `ring_mask`: offset of the index mask (entries - 1).
    public var ringMask: UInt32 = 0
    /// `ring_entries`: offset of the number of entries.
    public var ringEntries: UInt32 = 0
    /// `overflow`: offset of the count of completions lost to overflow (without
    /// `IORING_FEAT_NODROP`).
    public var overflow: UInt32 = 0
    /// `cqes`: offset of the first completion entry.
    public var cqes: UInt32 = 0
    /// `flags`: offset of the `IORING_CQ_*` flags word (Linux 5.8).
    public var flags: UInt32 = 0
    /// `resv1`: reserved, zero.
    public var resv1: UInt32 = 0
    /// `user_addr`: ring memory supplied by the application (`IORING_SETUP_NO_MMAP`).
    public var userAddress: UInt64 = 0
    /// All offsets zero; `io_uring_setup` fills them in.
    public init() {}
}

/// `struct io_uring_params`: passed to `io_uring_setup(2)` and filled in by the kernel.
///
/// Kernel ABI: `include/uapi/linux/io_uring.h`, layout as of Linux 6.18 (unchanged in size since
/// 5.1).
@frozen
public struct RingParameters: Equatable, Sendable {
    /// `sq_entries`: submission queue size, as the kernel rounded it.
    public var sqEntries: UInt32 = 0
    /// `cq_entries`: completion queue size (set it with `IORING_SETUP_CQSIZE`).
    public var cqEntries: UInt32 = 0
    /// `flags`: the `IORING_SETUP_*` flags.
    public var flags: UInt32 = 0
    /// `sq_thread_cpu`: the CPU of the SQPOLL thread (`IORING_SETUP_SQ_AFF`).
    public var sqThreadCPU: UInt32 = 0
    /// `sq_thread_idle`: milliseconds the SQPOLL thread stays awake without work.
    public var sqThreadIdle: UInt32 = 0
    /// `features`: the `IORING_FEAT_*` bits the kernel filled in.
    public var features: UInt32 = 0
    /// `wq_fd`: the ring whose io-wq to share (`IORING_SETUP_ATTACH_WQ`).
    public var wqFD: UInt32 = 0
    /// `resv[0]`: reserved, zero.
    public var resv0: UInt32 = 0
    /// `resv[1]`: reserved, zero.
    public var resv1: UInt32 = 0
    /// `resv[2]`: reserved, zero.
    public var resv2: UInt32 = 0
    /// `sq_off`: the SQ ring layout, filled in by the kernel.
    public var sqOffsets = SQRingOffsets()
    /// `cq_off`: the CQ ring layout, filled in by the kernel.
    public var cqOffsets = CQRingOffsets()
    /// All zero: no flags, sizes chosen by the caller of setup.
    public init() {}
}

/// `struct io_uring_getevents_arg`: the extended argument of `io_uring_enter(2)`.
///
/// Kernel ABI: `include/uapi/linux/io_uring.h`, layout as of Linux 6.18 (since 5.11,
/// `IORING_ENTER_EXT_ARG`; `min_wait_usec` since 6.12).
@frozen
public struct GetEventsArgument: Equatable, Sendable {
    /// `sigmask`: address of a signal mask to apply while waiting, or 0.
    public var sigmask: UInt64 = 0
    /// `sigmask_sz`: size of that mask in bytes.
    public var sigmaskSize: UInt32 = 0
    /// `min_wait_usec`: minimum wait before returning fewer completions than asked for (Linux 6.12,
    /// `IORING_FEAT_MIN_TIMEOUT`).
    public var minWaitMicroseconds: UInt32 = 0
    /// `ts`: address of a `KernelTimespec` timeout, or 0.
    public var timespec: UInt64 = 0
    /// All zero: no signal mask, no timeout.
    public init() {}
}

/// `struct io_uring_rsrc_update`: one slot update (used to register ring fds).
///
/// Kernel ABI: `include/uapi/linux/io_uring.h`, layout as of Linux 6.18 (since 5.13; the same
/// layout as 5.5's `io_uring_files_update`).
@frozen
public struct ResourceUpdate: Equatable, Sendable {
    /// `offset`: the first slot to update.
    public var offset: UInt32 = 0
    /// `resv`: reserved, zero.
    public var resv: UInt32 = 0
    /// `data`: the value for the slot (for ring fds, the descriptor), or an address.
    public var data: UInt64 = 0
    /// All zero.
    public init() {}
}
