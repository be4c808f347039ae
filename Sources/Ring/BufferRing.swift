import Glibc
import Synchronization
public import SystemPackage

/// A provided-buffer ring (`IORING_REGISTER_PBUF_RING`): a group of equal-size buffers the kernel
/// picks from for operations flagged `IOSQE_BUFFER_SELECT` (recv, read, multishot variants).
///
/// This type owns both the ring memory and the buffers. A completion with `Completion.bufferID`
/// hands that buffer to the application; give it back with `recycle(_:)` when done, or the group
/// runs dry and operations fail with `-ENOBUFS`. With `incremental` consumption
/// (`IOU_PBUF_RING_INC`) the kernel may use one buffer for several completions; recycle it only
/// after a completion without `CQEFlags.bufferMore`.
///
/// Shared words: the ring's `tail` (a `UInt16` at byte 14) is written only by us, with a release
/// store after the entries it publishes; the kernel keeps its head privately. With incremental
/// consumption the kernel also advances the address and length of the entry it is filling.
///
/// Lifetime: the buffer ring holds its own descriptor of the `Ring` (a duplicate), so it always
/// unregisters from the ring it was registered with, even when it outlives the `Ring` value
/// and the ring's fd number has been reused; the kernel keeps the ring until this value is
/// dropped too. If the kernel refuses the unregistration (a `.singleIssuer` ring dropped off its
/// thread, a restricted ring), the buffers are deliberately leaked rather than freed under a
/// kernel that may still write into them.
public struct BufferRing: ~Copyable {
    /// The buffer group id (`buf_group` in entries that select from this ring).
    public let group: UInt16
    /// Number of buffers (a power of two).
    public let count: Int
    /// Size of each buffer in bytes.
    public let bufferSize: Int

    private let ringFD: Int32
    /// The ring emulates a kernel without `IORING_REGISTER_PBUF_STATUS` (see `KernelEmulation`).
    private let refusesStatus: Bool
    private let ringMemory: UnsafeMutableRawPointer
    private let ringMemorySize: Int
    private let buffers: UnsafeMutableRawPointer
    private let tail: UnsafeMutablePointer<Atomic<UInt16>>
    private let mask: UInt16
    /// The tail we will publish next; only we touch it.
    private var localTail: UInt16
    /// Incremental rings: bytes of each buffer already delivered by earlier completions (the
    /// next completion's data starts there). Heap memory so `bytes(of:)` can stay non-mutating.
    private let consumed: UnsafeMutablePointer<UInt32>?
    /// Which buffer each ring entry was last given (indexed by entry), and the free-running ring
    /// position each buffer was last given at (indexed by id): a bundle completion names only its
    /// first buffer, and the rest are the entries after that one's (see `bundle(of:)`).
    private let idAtEntry: UnsafeMutablePointer<UInt16>
    private let positionOfID: UnsafeMutablePointer<UInt16>

    /// Registers a ring of `count` buffers (rounded up to a power of two, at most 32768) of
    /// `bufferSize` bytes as group `group`, all initially available to the kernel.
    /// Errors: `EINVAL` (bad size, group already exists), `ENOMEM`, `EEXIST` (group in use).
    public init(
        ring: borrowing Ring, group: UInt16, count: Int, bufferSize: Int, incremental: Bool = false
    ) throws(Errno) {
        guard count > 0, count <= 32768, bufferSize > 0, bufferSize <= Int(UInt32.max) else { throw .invalidArgument }
        if Ring.refuses(.registerBufferRing, emulating: ring.emulatedKernel) { throw .invalidArgument }
        if incremental, let emulated = ring.emulatedKernel, emulated < BufferRing.incrementalIntroduced {
            throw .invalidArgument
        }
        var entries = 1
        while entries < count { entries <<= 1 }
        let ringBytes = max(entries * 16, Int(sysconf(Int32(_SC_PAGESIZE))))
        guard let memory = mmap(nil, ringBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            memory != UnsafeMutableRawPointer(bitPattern: -1)
        else { throw Syscall.currentErrno() }
        // Our own reference to the ring, so deinit reaches this ring whatever happens to `ring`.
        let ringFD = fcntl(ring.fd.rawValue, F_DUPFD_CLOEXEC, 0)
        guard ringFD >= 0 else {
            let error = Syscall.currentErrno()
            munmap(memory, ringBytes)
            throw error
        }
        let storage = UnsafeMutableRawPointer.allocate(byteCount: entries * bufferSize, alignment: 4096)

        // struct io_uring_buf_reg: ring_addr u64, ring_entries u32, bgid u16, flags u16, resv.
        var reg: (UInt64, UInt32, UInt16, UInt16, UInt64, UInt64, UInt64) = (
            UInt64(UInt(bitPattern: memory)), UInt32(entries), group, incremental ? 2 : 0, 0, 0, 0
        )
        do {
            _ = try withUnsafeMutablePointer(to: &reg) { pointer throws(Errno) in
                try Syscall.register(
                    ringFD, opcode: RegisterOpcode.registerBufferRing.rawValue, argument: pointer, count: 1)
            }
        } catch {
            Glibc.close(ringFD)
            munmap(memory, ringBytes)
            storage.deallocate()
            throw error
        }
        self.group = group
        self.count = entries
        self.bufferSize = bufferSize
        self.ringFD = ringFD
        refusesStatus = Ring.refuses(.registerBufferRingStatus, emulating: ring.emulatedKernel)
        if incremental {
            consumed = .allocate(capacity: entries)
            consumed!.initialize(repeating: 0, count: entries)
        } else {
            consumed = nil
        }
        idAtEntry = .allocate(capacity: entries)
        idAtEntry.initialize(repeating: 0, count: entries)
        positionOfID = .allocate(capacity: entries)
        positionOfID.initialize(repeating: 0, count: entries)
        ringMemory = memory
        ringMemorySize = ringBytes
        buffers = storage
        tail = (memory + 14).bindMemory(to: Atomic<UInt16>.self, capacity: 1)
        mask = UInt16(entries - 1)
        localTail = 0
        for id in 0..<entries { stage(UInt16(id)) }
        publish()
    }

    deinit {
        var reg: (UInt64, UInt32, UInt16, UInt16, UInt64, UInt64, UInt64) = (0, 0, group, 0, 0, 0, 0)
        let unregistered =
            (try? withUnsafeMutablePointer(to: &reg) { pointer throws(Errno) in
                try Syscall.register(
                    ringFD, opcode: RegisterOpcode.unregisterBufferRing.rawValue, argument: pointer, count: 1)
            }) != nil
        Glibc.close(ringFD)
        consumed?.deallocate()
        idAtEntry.deallocate()
        positionOfID.deallocate()
        // Still registered means the kernel may still pick these buffers: keep the memory.
        guard unregistered else { return }
        munmap(ringMemory, ringMemorySize)
        buffers.deallocate()
    }

    /// The memory of buffer `id` (all `bufferSize` bytes; a completion's result says how many
    /// were filled).
    public func buffer(_ id: UInt16) -> UnsafeMutableRawBufferPointer {
        precondition(Int(id) < count, "buffer id \(id) is outside this ring of \(count)")
        return UnsafeMutableRawBufferPointer(start: buffers + Int(id) * bufferSize, count: bufferSize)
    }

    /// The bytes a completion delivered from this ring (nil if it carried no buffer).
    ///
    /// With incremental consumption several completions share one buffer, each continuing where
    /// the previous one ended: call this once for every completion from the ring, in the order
    /// they were reaped, so it can follow the buffer's fill position (a completion without
    /// `CQEFlags.bufferMore` ends the buffer; `recycle(_:)` starts it over).
    public func bytes(of completion: Completion) -> UnsafeRawBufferPointer? {
        guard let id = completion.bufferID, completion.result > 0, Int(id) < count else { return nil }
        var start = 0
        if let consumed {
            start = Int(consumed[Int(id)])
            consumed[Int(id)] = completion.flags.contains(.bufferMore) ? UInt32(start) + UInt32(completion.result) : 0
        }
        let length = min(Int(completion.result), bufferSize - min(start, bufferSize))
        return UnsafeRawBufferPointer(start: buffers + Int(id) * bufferSize + start, count: length)
    }

    /// The buffers a bundle completion (`SendReceiveFlags.bundle`, Linux 6.10) filled, in order,
    /// with the bytes each holds. The kernel reports only the first buffer's id: a bundle takes
    /// consecutive ring entries from the one that held it, each filled whole but the last, so
    /// they are the next `result / bufferSize` (rounded up) entries in the order they were given
    /// to the kernel. Those entries cannot have been given out again before the completion is
    /// handled: every buffer is then in use, so the ring holds fewer than `count` entries. A
    /// completion that fits one buffer gives that buffer alone. Not for incremental rings (their
    /// buffers are partly consumed; use `bytes(of:)`). Recycle every id afterwards.
    public func bundle(of completion: Completion) -> [(id: UInt16, bytes: UnsafeRawBufferPointer)] {
        precondition(consumed == nil, "bundle(of:) is not for incremental rings")
        guard let first = completion.bufferID, completion.result > 0, Int(first) < count else { return [] }
        var left = Int(completion.result)
        var position = positionOfID[Int(first)]
        var filled: [(id: UInt16, bytes: UnsafeRawBufferPointer)] = []
        filled.reserveCapacity((left + bufferSize - 1) / bufferSize)
        while left > 0 {
            let id = idAtEntry[Int(position & mask)]
            let length = min(left, bufferSize)
            filled.append((id, UnsafeRawBufferPointer(start: buffers + Int(id) * bufferSize, count: length)))
            left -= length
            position &+= 1
        }
        return filled
    }

    /// Gives buffer `id` back to the kernel.
    public mutating func recycle(_ id: UInt16) {
        precondition(Int(id) < count, "buffer id \(id) is outside this ring of \(count)")
        stage(id)
        publish()
    }

    /// Gives several buffers back with one tail store.
    public mutating func recycle<S: Sequence<UInt16>>(_ ids: S) {
        for id in ids {
            precondition(Int(id) < count, "buffer id \(id) is outside this ring of \(count)")
            stage(id)
        }
        publish()
    }

    /// Writes one entry at the local tail. Entry 0's last two bytes are the shared tail word, so
    /// only addr, len and bid (bytes 0..<14) are written.
    private mutating func stage(_ id: UInt16) {
        consumed?[Int(id)] = 0
        idAtEntry[Int(localTail & mask)] = id
        positionOfID[Int(id)] = localTail
        let entry = ringMemory + Int(localTail & mask) * 16
        entry.storeBytes(of: UInt64(UInt(bitPattern: buffers + Int(id) * bufferSize)), as: UInt64.self)
        entry.storeBytes(of: UInt32(bufferSize), toByteOffset: 8, as: UInt32.self)
        entry.storeBytes(of: id, toByteOffset: 12, as: UInt16.self)
        localTail &+= 1  // wrapping: a free-running 16-bit index, as the kernel's
    }

    private func publish() {
        // Release: the entries written above are visible before the kernel sees the new tail.
        tail.pointee.store(localTail, ordering: .releasing)
    }

    /// `IORING_REGISTER_PBUF_STATUS`: the kernel's head; `localTail - head` buffers are available.
    public func kernelHead() throws(Errno) -> UInt16 {
        if refusesStatus { throw .invalidArgument }
        var status = [UInt32](repeating: 0, count: 10)  // struct io_uring_buf_status
        status[0] = UInt32(group)
        let result = status.withUnsafeMutableBytes { bytes in
            Result { () throws(Errno) -> Int32 in
                try Syscall.register(
                    ringFD, opcode: RegisterOpcode.registerBufferRingStatus.rawValue, argument: bytes.baseAddress,
                    count: 1)
            }
        }
        _ = try result.get()
        return UInt16(truncatingIfNeeded: status[1])
    }

    /// Buffers currently available to the kernel.
    public func availableCount() throws(Errno) -> Int {
        Int(localTail &- (try kernelHead()))  // wrapping 16-bit distance
    }
}
