public import Glibc
public import SystemPackage

// Typed forms of io_uring_register(2). Each documents the kernel opcode it uses and the errnos a
// caller can meet; the raw `Ring.register(_:argument:count:)` remains for anything else.

/// `struct io_uring_rsrc_register` (`IORING_REGISTER_FILES2` / `BUFFERS2`).
///
/// Kernel ABI: `include/uapi/linux/io_uring.h`, layout as of Linux 6.18 (since 5.13).
@frozen @usableFromInline
struct ResourceRegister {
    var count: UInt32 = 0
    var flags: UInt32 = 0
    var resv2: UInt64 = 0
    var data: UInt64 = 0
    var tags: UInt64 = 0
}

/// `struct io_uring_rsrc_update2` (`IORING_REGISTER_FILES_UPDATE2` / `BUFFERS_UPDATE`).
///
/// Kernel ABI: `include/uapi/linux/io_uring.h`, layout as of Linux 6.18 (since 5.13).
@frozen @usableFromInline
struct ResourceUpdate2 {
    var offset: UInt32 = 0
    var resv: UInt32 = 0
    var data: UInt64 = 0
    var tags: UInt64 = 0
    var count: UInt32 = 0
    var resv2: UInt32 = 0
}

/// One rule for `IORING_REGISTER_RESTRICTIONS` (`struct io_uring_restriction`, 16 bytes).
///
/// Kernel ABI: `include/uapi/linux/io_uring.h`, layout as of Linux 6.18 (since 5.10).
public struct Restriction: Sendable, Equatable {
    var kind: UInt16
    var value: UInt8

    /// `IORING_RESTRICTION_REGISTER_OP`: allow this register opcode.
    public static func allowRegister(_ op: RegisterOpcode) -> Restriction {
        Restriction(kind: 0, value: UInt8(op.rawValue))
    }
    /// `IORING_RESTRICTION_SQE_OP`: allow this submission opcode.
    public static func allowOperation(_ op: Opcode) -> Restriction { Restriction(kind: 1, value: op.rawValue) }
    /// `IORING_RESTRICTION_SQE_FLAGS_ALLOWED`: these SQE flags may be used.
    public static func allowFlags(_ flags: SQEFlags) -> Restriction { Restriction(kind: 2, value: flags.rawValue) }
    /// `IORING_RESTRICTION_SQE_FLAGS_REQUIRED`: these SQE flags must be set on every entry.
    public static func requireFlags(_ flags: SQEFlags) -> Restriction { Restriction(kind: 3, value: flags.rawValue) }
}

extension Ring {
    @inline(__always)
    func registerValue<T>(_ opcode: RegisterOpcode, _ value: inout T, count: UInt32 = 1) throws(Errno) -> Int32 {
        let result = withUnsafeMutablePointer(to: &value) { pointer in
            Result { () throws(Errno) -> Int32 in try register(opcode, argument: pointer, count: count) }
        }
        return try result.get()
    }

    // MARK: Buffers

    /// `IORING_REGISTER_BUFFERS`: pins `buffers` for `readFixed`/`writeFixed` (index = position).
    /// The memory stays pinned until `unregisterBuffers()`; keep it allocated until then.
    /// Errors: `ENOMEM` (over `RLIMIT_MEMLOCK`), `EBUSY` (already registered), `EINVAL`/`EFAULT`.
    public func registerBuffers(_ buffers: UnsafeBufferPointer<iovec>) throws(Errno) {
        try register(.registerBuffers, argument: buffers.baseAddress, count: UInt32(buffers.count))
    }

    /// `IORING_REGISTER_BUFFERS2`: a table of `count` buffers with `tags` (a tag is posted as a
    /// completion with `user_data` = tag when its buffer is released), or a sparse table of empty
    /// slots when `buffers` is nil (`IORING_RSRC_REGISTER_SPARSE`).
    public func registerBuffers(
        _ buffers: UnsafeBufferPointer<iovec>?, count: UInt32, tags: UnsafeBufferPointer<UInt64>? = nil
    ) throws(Errno) {
        var reg = ResourceRegister()
        reg.count = count
        if let buffers { reg.data = UInt64(UInt(bitPattern: buffers.baseAddress)) } else { reg.flags = 1 }
        if let tags { reg.tags = UInt64(UInt(bitPattern: tags.baseAddress)) }
        _ = try registerValue(.registerBuffers2, &reg, count: UInt32(MemoryLayout<ResourceRegister>.size))
    }

    /// `IORING_REGISTER_BUFFERS_UPDATE`: replaces buffers from slot `offset`. Returns slots updated.
    @discardableResult
    public func updateBuffers(
        at offset: UInt32, _ buffers: UnsafeBufferPointer<iovec>, tags: UnsafeBufferPointer<UInt64>? = nil
    ) throws(Errno) -> Int {
        var update = ResourceUpdate2()
        update.offset = offset
        update.data = UInt64(UInt(bitPattern: buffers.baseAddress))
        if let tags { update.tags = UInt64(UInt(bitPattern: tags.baseAddress)) }
        update.count = UInt32(buffers.count)
        return Int(
            try registerValue(.registerBuffersUpdate, &update, count: UInt32(MemoryLayout<ResourceUpdate2>.size)))
    }

    /// `IORING_UNREGISTER_BUFFERS`. `ENXIO` if none are registered.
    public func unregisterBuffers() throws(Errno) {
        try register(.unregisterBuffers, argument: nil, count: 0)
    }

    // MARK: Files

    /// `IORING_REGISTER_FILES`: a fixed-file table (`-1` entries are empty slots). Entries using
    /// it set `.fixedFile` and put the slot in `fd`. `EMFILE` past `RLIMIT_NOFILE`, `EBUSY` if a
    /// table exists.
    public func registerFiles(_ fds: UnsafeBufferPointer<Int32>) throws(Errno) {
        try register(.registerFiles, argument: fds.baseAddress, count: UInt32(fds.count))
    }

    /// `IORING_REGISTER_FILES2` with `IORING_RSRC_REGISTER_SPARSE`: `count` empty slots, filled
    /// later by `updateFiles`, `_direct` opens/accepts, or `MSG_RING` fd passing.
    public func registerFiles(sparse count: UInt32) throws(Errno) {
        var reg = ResourceRegister()
        reg.count = count
        reg.flags = 1
        _ = try registerValue(.registerFiles2, &reg, count: UInt32(MemoryLayout<ResourceRegister>.size))
    }

    /// `IORING_REGISTER_FILES_UPDATE2`: replaces slots from `offset` (`-1` clears). Returns slots updated.
    @discardableResult
    public func updateFiles(at offset: UInt32, _ fds: UnsafeBufferPointer<Int32>) throws(Errno) -> Int {
        var update = ResourceUpdate2()
        update.offset = offset
        update.data = UInt64(UInt(bitPattern: fds.baseAddress))
        update.count = UInt32(fds.count)
        return Int(try registerValue(.registerFilesUpdate2, &update, count: UInt32(MemoryLayout<ResourceUpdate2>.size)))
    }

    /// `IORING_UNREGISTER_FILES`. `ENXIO` if no table is registered.
    public func unregisterFiles() throws(Errno) {
        try register(.unregisterFiles, argument: nil, count: 0)
    }

    /// `IORING_REGISTER_FILE_ALLOC_RANGE`: slots the kernel may pick for `.allocateFixedSlot`.
    public func setFileAllocationRange(offset: UInt32, length: UInt32) throws(Errno) {
        var range: (UInt32, UInt32, UInt64) = (offset, length, 0)  // struct io_uring_file_index_range
        _ = try registerValue(.registerFileAllocRange, &range, count: 0)
    }

    // MARK: Event notification, credentials, restrictions

    /// `IORING_REGISTER_EVENTFD` (or `_ASYNC`: only completions that did not finish inline):
    /// the kernel writes to `eventFD` when completions are posted.
    public func registerEventFD(_ eventFD: FileDescriptor, asyncOnly: Bool = false) throws(Errno) {
        var fd = eventFD.rawValue
        _ = try registerValue(asyncOnly ? .registerEventFDAsync : .registerEventFD, &fd)
    }

    /// `IORING_UNREGISTER_EVENTFD`.
    public func unregisterEventFD() throws(Errno) {
        try register(.unregisterEventFD, argument: nil, count: 0)
    }

    /// `IORING_REGISTER_PERSONALITY`: records the caller's credentials; returns the id to put in
    /// `SubmissionEntry.personality`.
    public func registerPersonality() throws(Errno) -> UInt16 {
        UInt16(truncatingIfNeeded: try register(.registerPersonality, argument: nil, count: 0))
    }

    /// `IORING_UNREGISTER_PERSONALITY`.
    public func unregisterPersonality(_ id: UInt16) throws(Errno) {
        try register(.unregisterPersonality, argument: nil, count: UInt32(id))
    }

    /// `IORING_REGISTER_RESTRICTIONS`: only on a ring created `.disabled`, before `enable()`.
    /// Afterwards anything not allowed fails with `EACCES`. `EBUSY` if restrictions exist.
    public func registerRestrictions(_ rules: [Restriction]) throws(Errno) {
        // struct io_uring_restriction: u16 opcode, u8 value, u8 resv, u32 resv2[3].
        var raw = [UInt8](repeating: 0, count: rules.count * 16)
        for (i, rule) in rules.enumerated() {
            raw[i * 16] = UInt8(truncatingIfNeeded: rule.kind)
            raw[i * 16 + 1] = UInt8(truncatingIfNeeded: rule.kind >> 8)
            raw[i * 16 + 2] = rule.value
        }
        let result = raw.withUnsafeBytes { bytes in
            Result { () throws(Errno) -> Int32 in
                try register(.registerRestrictions, argument: bytes.baseAddress, count: UInt32(rules.count))
            }
        }
        _ = try result.get()
    }

    // MARK: io-wq, cancellation, NAPI, clock

    /// `IORING_REGISTER_IOWQ_MAX_WORKERS`: caps bounded (disk) and unbounded (network, etc.)
    /// io-wq workers; 0 leaves a value unchanged. Returns the previous limits.
    @discardableResult
    public func setIOWorkerLimits(bounded: UInt32 = 0, unbounded: UInt32 = 0) throws(Errno) -> (
        bounded: UInt32, unbounded: UInt32
    ) {
        var values: (UInt32, UInt32) = (bounded, unbounded)
        _ = try registerValue(.registerIOWQMaxWorkers, &values, count: 2)
        return values
    }

    /// `IORING_REGISTER_IOWQ_AFF`: io-wq workers run only on `cpus`.
    public func setIOWorkerAffinity(cpus: [Int]) throws(Errno) {
        var mask = [UInt64](repeating: 0, count: 16)  // a 1024-bit cpu_set_t
        for cpu in cpus where cpu >= 0 && cpu < 1024 { mask[cpu / 64] |= 1 << UInt64(cpu % 64) }
        let result = mask.withUnsafeBytes { bytes in
            Result { () throws(Errno) -> Int32 in
                try register(.registerIOWQAffinity, argument: bytes.baseAddress, count: UInt32(bytes.count))
            }
        }
        _ = try result.get()
    }

    /// `IORING_UNREGISTER_IOWQ_AFF`.
    public func clearIOWorkerAffinity() throws(Errno) {
        try register(.unregisterIOWQAffinity, argument: nil, count: 0)
    }

    /// `IORING_REGISTER_SYNC_CANCEL`: cancels matching requests and waits (up to `timeout`) until
    /// they are gone. Keys as for `SubmissionEntry.cancel`. `ENOENT` if nothing matched,
    /// `ETIME` on timeout.
    public func cancelSynchronously(
        userData: UInt64 = 0, fd: FileDescriptor? = nil, opcode: Opcode? = nil, flags: CancelFlags = [],
        timeout: Duration? = nil
    ) throws(Errno) {
        // struct io_uring_sync_cancel_reg: addr u64, fd s32, flags u32, timeout (2 × s64),
        // opcode u8, pad[7], pad2[3] × u64 = 64 bytes.
        var raw = [UInt64](repeating: 0, count: 8)
        raw[0] = userData
        var f = flags
        if fd != nil { f.insert(.fd) }
        if opcode != nil { f.insert(.opcode) }
        raw[1] = UInt64(UInt32(bitPattern: fd?.rawValue ?? -1)) | UInt64(f.rawValue) << 32
        let ts = timeout.map(KernelTimespec.init) ?? KernelTimespec(seconds: -1, nanoseconds: -1)
        raw[2] = UInt64(bitPattern: ts.seconds)
        raw[3] = UInt64(bitPattern: ts.nanoseconds)
        raw[4] = UInt64(opcode?.rawValue ?? 0)
        let result = raw.withUnsafeBytes { bytes in
            Result { () throws(Errno) -> Int32 in
                try register(.registerSyncCancel, argument: bytes.baseAddress, count: 1)
            }
        }
        _ = try result.get()
    }

    /// `IORING_REGISTER_NAPI`: busy-poll network receive queues for `busyPollTimeout` microseconds.
    public func registerNAPI(busyPollTimeout microseconds: UInt32, preferBusyPoll: Bool = false) throws(Errno) {
        // struct io_uring_napi: busy_poll_to u32, prefer_busy_poll u8, opcode u8, pad[2], op_param u32, resv u32.
        var raw: (UInt32, UInt8, UInt8, UInt16, UInt32, UInt32) = (microseconds, preferBusyPoll ? 1 : 0, 0, 0, 0, 0)
        _ = try registerValue(.registerNAPI, &raw, count: 1)
    }

    /// `IORING_UNREGISTER_NAPI`.
    public func unregisterNAPI() throws(Errno) {
        var raw: (UInt32, UInt8, UInt8, UInt16, UInt32, UInt32) = (0, 0, 0, 0, 0, 0)
        _ = try registerValue(.unregisterNAPI, &raw, count: 1)
    }

    /// `IORING_REGISTER_CLOCK`: the clock for wait timeouts (`CLOCK_MONOTONIC` or `CLOCK_BOOTTIME`).
    public func setWaitClock(_ clock: Int32) throws(Errno) {
        var raw: (UInt32, UInt32, UInt32, UInt32) = (UInt32(bitPattern: clock), 0, 0, 0)
        _ = try registerValue(.registerClock, &raw, count: 0)
    }

    /// `IORING_REGISTER_PROBE`: the opcodes this kernel supports.
    public func supportedOpcodes() throws(Errno) -> Set<Opcode> {
        let (_, raw) = try Probe.opcodes(of: self)
        return Set(raw.map(Opcode.init(rawValue:)))
    }
}
