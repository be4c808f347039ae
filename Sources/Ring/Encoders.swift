public import Glibc
public import SystemPackage

// One encoder per opcode. Each starts from an all-zero entry and fills exactly the fields its
// opcode reads, so reserved fields stay zero. Encoders that take a pointer store it in the
// entry: the caller keeps that memory alive, unmoved, until the request's completion arrives
// (the kernel may read or write it at any time before then). The memory-safe API is RingExec.

extension SubmissionEntry {
    /// Sets opcode, fd, address, length and offset: the shape most opcodes share.
    @inlinable
    static func make(
        _ op: Opcode, fd: Int32 = -1, addr: UInt64 = 0, len: UInt32 = 0, off: UInt64 = 0
    ) -> SubmissionEntry {
        var e = SubmissionEntry()
        e.opcode = op.rawValue
        e.fd = fd
        e.addr = addr
        e.len = len
        e.off = off
        return e
    }

    /// The four plain read/write opcodes share one layout: buffer (or iovec array) in `addr`, its
    /// length (or count) in `len`, file offset in `off`, `RWF_*` in `rw_flags`.
    @inlinable
    static func readWrite(
        _ op: Opcode, _ fd: FileDescriptor, _ pointer: UnsafeRawPointer?, _ count: Int, _ offset: UInt64,
        _ flags: ReadWriteFlags
    ) -> SubmissionEntry {
        var e = make(op, fd: fd.rawValue, addr: address(pointer), len: UInt32(clamping: count), off: offset)
        e.opFlags = flags.rawValue
        return e
    }

    @inlinable
    static func address(_ pointer: UnsafeRawPointer?) -> UInt64 {
        UInt64(UInt(bitPattern: pointer))
    }

    /// Offset meaning "at the file's current position" for reads and writes (`-1`; needs
    /// `IORING_FEAT_RW_CUR_POS`). Not valid on files without a position (pipes use 0 or this).
    public static let currentPosition: UInt64 = .max

    /// `IORING_OP_NOP`: does nothing and completes with 0. Useful for wake-ups and benchmarks.
    @inlinable
    public static func nop() -> SubmissionEntry {
        make(.nop)
    }

    /// `IORING_OP_READ`: reads up to `buffer.count` bytes at `offset` (like `pread(2)`), or at
    /// the file position when `offset` is `currentPosition`. Result: bytes read, 0 at EOF.
    /// The buffer must stay valid until the completion.
    @inlinable
    public static func read(
        _ fd: FileDescriptor, into buffer: UnsafeMutableRawBufferPointer, offset: UInt64,
        flags: ReadWriteFlags = []
    ) -> SubmissionEntry {
        readWrite(.read, fd, buffer.baseAddress, buffer.count, offset, flags)
    }

    /// `IORING_OP_WRITE`: writes `buffer` at `offset` (like `pwrite(2)`), or at the file position
    /// when `offset` is `currentPosition`. Result: bytes written. The buffer must stay valid until
    /// the completion.
    @inlinable
    public static func write(
        _ fd: FileDescriptor, from buffer: UnsafeRawBufferPointer, offset: UInt64, flags: ReadWriteFlags = []
    ) -> SubmissionEntry {
        readWrite(.write, fd, buffer.baseAddress, buffer.count, offset, flags)
    }

    /// `IORING_OP_READV`: scatter read into `iovecs` at `offset` (like `preadv2(2)`). The iovec
    /// array and every buffer it names must stay valid until the completion.
    @inlinable
    public static func readv(
        _ fd: FileDescriptor, _ iovecs: UnsafeBufferPointer<iovec>, offset: UInt64, flags: ReadWriteFlags = []
    ) -> SubmissionEntry {
        readWrite(.readv, fd, iovecs.baseAddress, iovecs.count, offset, flags)
    }

    /// `IORING_OP_WRITEV`: gather write from `iovecs` at `offset` (like `pwritev2(2)`). The iovec
    /// array and every buffer it names must stay valid until the completion.
    @inlinable
    public static func writev(
        _ fd: FileDescriptor, _ iovecs: UnsafeBufferPointer<iovec>, offset: UInt64, flags: ReadWriteFlags = []
    ) -> SubmissionEntry {
        readWrite(.writev, fd, iovecs.baseAddress, iovecs.count, offset, flags)
    }

    /// `IORING_OP_FSYNC`: `fsync(2)`, or `fdatasync(2)` with `.dataSync`. A non-zero `length`
    /// limits the sync to `offset..<offset+length`.
    @inlinable
    public static func fsync(
        _ fd: FileDescriptor, flags: FsyncFlags = [], offset: UInt64 = 0, length: UInt32 = 0
    ) -> SubmissionEntry {
        var e = make(.fsync, fd: fd.rawValue, len: length, off: offset)
        e.opFlags = flags.rawValue
        return e
    }

    /// `IORING_OP_TIMEOUT`: completes with `-ETIME` when `timespec` elapses, or with 0 once
    /// `completionCount` other requests have completed (0 = time only). With `.multishot`,
    /// fires repeatedly (`completionCount` = shots, 0 = until cancelled).
    /// The kernel copies the timespec at submission; keep it valid until `submit` returns
    /// (under SQPOLL, until the completion, since submission happens asynchronously).
    @inlinable
    public static func timeout(
        _ timespec: UnsafePointer<KernelTimespec>, completionCount: UInt32 = 0, flags: TimeoutFlags = []
    ) -> SubmissionEntry {
        var e = make(.timeout, addr: address(timespec), len: 1, off: UInt64(completionCount))
        e.opFlags = flags.rawValue
        return e
    }

    /// `IORING_OP_TIMEOUT_REMOVE`: cancels the timeout whose `user_data` is `target`. Result 0,
    /// or `-ENOENT` if it was not found, `-EALREADY` if it is already firing.
    @inlinable
    public static func timeoutRemove(target: UInt64, flags: TimeoutFlags = []) -> SubmissionEntry {
        var e = make(.timeoutRemove, addr: target)
        e.opFlags = flags.rawValue
        return e
    }

    /// `IORING_OP_LINK_TIMEOUT`: bounds the request linked before it (which must carry `.link`).
    /// If the time passes first, that request is cancelled (`-ECANCELED`) and this one completes
    /// with `-ETIME`; otherwise this one completes with `-ECANCELED`.
    @inlinable
    public static func linkTimeout(_ timespec: UnsafePointer<KernelTimespec>, flags: TimeoutFlags = [])
        -> SubmissionEntry
    {
        var e = make(.linkTimeout, addr: address(timespec), len: 1)
        e.opFlags = flags.rawValue
        return e
    }

    /// `IORING_OP_ASYNC_CANCEL` by user data: cancels the request(s) whose `user_data` is `target`
    /// (`.all` for every match). Result: 0 (or the count with `.all`), `-ENOENT` if none was
    /// found, `-EALREADY` if it was running and could only be signalled.
    @inlinable
    public static func cancel(userData target: UInt64, flags: CancelFlags = []) -> SubmissionEntry {
        var e = make(.asyncCancel, addr: target)
        e.opFlags = flags.rawValue
        return e
    }

    /// `IORING_OP_ASYNC_CANCEL` by file: cancels requests on `fd` (`IORING_ASYNC_CANCEL_FD`);
    /// add `.all` to cancel every one, `.fdFixed` when `fd` is a fixed-file index.
    @inlinable
    public static func cancel(fd: FileDescriptor, flags: CancelFlags = []) -> SubmissionEntry {
        var e = make(.asyncCancel, fd: fd.rawValue)
        e.opFlags = flags.union(.fd).rawValue
        return e
    }

    /// `IORING_OP_ASYNC_CANCEL` of everything in flight (`IORING_ASYNC_CANCEL_ANY` with `_ALL`).
    /// Result: the number of requests cancelled (0 when nothing was in flight).
    @inlinable
    public static func cancelAny() -> SubmissionEntry {
        var e = make(.asyncCancel)
        e.opFlags = CancelFlags([.any, .all]).rawValue
        return e
    }

    /// `IORING_OP_ASYNC_CANCEL` by opcode (`IORING_ASYNC_CANCEL_OP`): cancels requests of `opcode`
    /// (add `.all` for every one).
    @inlinable
    public static func cancel(opcode: Opcode, flags: CancelFlags = []) -> SubmissionEntry {
        var e = make(.asyncCancel, len: UInt32(opcode.rawValue))
        e.opFlags = flags.union(.opcode).rawValue
        return e
    }

    /// `IORING_OP_TIMEOUT_REMOVE` with `IORING_TIMEOUT_UPDATE`: re-arms timeout `target` with a new
    /// time. Add `.linkTimeoutUpdate` in `flags` (without `.update`) for a link timeout.
    @inlinable
    public static func timeoutUpdate(
        target: UInt64, _ timespec: UnsafePointer<KernelTimespec>, flags: TimeoutFlags = []
    ) -> SubmissionEntry {
        var e = make(.timeoutRemove, addr: target, off: address(timespec))
        e.opFlags = (flags.contains(.linkTimeoutUpdate) ? flags : flags.union(.update)).rawValue
        return e
    }
}
