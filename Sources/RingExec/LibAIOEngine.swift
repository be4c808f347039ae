import CSyscalls
import Glibc
import Ring
import Synchronization
import SystemPackage

/// The kernel's `struct iocb` (linux/aio_abi.h, little endian), 64 bytes; libaio passes it
/// through unchanged. A test checks every offset against the system header.
///
/// Kernel ABI: `include/uapi/linux/aio_abi.h`, layout as of Linux 6.18 (unchanged since 2.6;
/// `aio_rw_flags` since 4.13).
struct AIOControlBlock {
    var data: UInt64 = 0  // aio_data: returned in the event (our token)
    var key: UInt32 = 0  // aio_key: set by the kernel
    var rwFlags: UInt32 = 0  // aio_rw_flags: RWF_*
    var opcode: UInt16 = 0  // aio_lio_opcode: IOCB_CMD_*
    var priority: Int16 = 0  // aio_reqprio
    var fd: UInt32 = 0  // aio_fildes
    var buffer: UInt64 = 0  // aio_buf (iovec array for the vectored commands, events for poll)
    var bytes: UInt64 = 0  // aio_nbytes (iovec count for the vectored commands)
    var offset: Int64 = 0  // aio_offset
    var reserved2: UInt64 = 0
    var flags: UInt32 = 0  // aio_flags: IOCB_FLAG_*
    var resultFD: UInt32 = 0  // aio_resfd: eventfd signalled on completion with IOCB_FLAG_RESFD

    static let commandRead: UInt16 = 0  // IOCB_CMD_PREAD
    static let commandWrite: UInt16 = 1  // IOCB_CMD_PWRITE
    static let commandFsync: UInt16 = 2  // IOCB_CMD_FSYNC
    static let commandFdatasync: UInt16 = 3  // IOCB_CMD_FDSYNC
    static let commandPoll: UInt16 = 5  // IOCB_CMD_POLL
    static let commandReadv: UInt16 = 7  // IOCB_CMD_PREADV
    static let commandWritev: UInt16 = 8  // IOCB_CMD_PWRITEV
    static let flagResultFD: UInt32 = 1 << 0  // IOCB_FLAG_RESFD
}

/// The kernel's `struct io_event`, 32 bytes.
///
/// Kernel ABI: `include/uapi/linux/aio_abi.h`, unchanged since Linux 2.6.
struct AIOEvent {
    var data: UInt64 = 0
    var object: UInt64 = 0
    var result: Int64 = 0
    var result2: Int64 = 0
}

/// libaio's five entry points, resolved from `libaio.so.1` or `libaio.so.1t64` at run time
/// (`LibAIOLibrary`) so the package builds, and the other engines work, on machines without
/// libaio. libaio returns `-errno` directly.
struct LibAIO: @unchecked Sendable {
    typealias Setup = @convention(c) (Int32, UnsafeMutablePointer<OpaquePointer?>) -> Int32
    typealias Destroy = @convention(c) (OpaquePointer?) -> Int32
    // Swift structs are not C types, so control blocks and events pass as raw pointers.
    typealias Submit = @convention(c) (OpaquePointer?, Int, UnsafeMutablePointer<UnsafeMutableRawPointer?>) -> Int32
    typealias Cancel = @convention(c) (OpaquePointer?, UnsafeMutableRawPointer, UnsafeMutableRawPointer) -> Int32
    typealias GetEvents =
        @convention(c) (OpaquePointer?, Int, Int, UnsafeMutableRawPointer, UnsafeMutablePointer<timespec>?) -> Int32

    /// The file name that loaded (one of `LibAIOLibrary.candidateNames`).
    let libraryName: String
    let setup: Setup
    let destroy: Destroy
    let submit: Submit
    let cancel: Cancel
    let getEvents: GetEvents
}

/// The header of the completion ring the kernel maps at the address `io_setup` returns (the
/// aio context): `struct aio_ring` in fs/aio.c. Not in the uapi headers, but libaio and fio
/// read it from user space, and the kernel keeps it stable for them; trusted only when `magic`
/// matches.
struct AIORingHeader {
    var id: UInt32
    var entries: UInt32  // nr
    var head: UInt32  // next event to read (advanced by io_getevents)
    var tail: UInt32  // next event the kernel writes
    var magic: UInt32
    static let expectedMagic: UInt32 = 0xA10A_10A1  // AIO_RING_MAGIC
}

/// Linux native AIO through libaio. The loop blocks in `io_getevents`, which returns with the
/// completions themselves (two system calls per operation at depth 1, like fio's libaio
/// engine). Other threads wake it through an eventfd: a poll request for it
/// (`IOCB_CMD_POLL`) stays armed in the same context, so a write to the eventfd completes it
/// and ends the wait. NOP completes at once and timeouts are kept by the engine (native AIO
/// has neither).
final class LibAIOEngine: IOEngine {
    private let aio: LibAIO
    private var context: OpaquePointer?
    private let capacity: Int
    /// The armed poll on `eventFD`; not one of `blocks`.
    private let wakeBlock: UnsafeMutablePointer<AIOControlBlock>
    private var wakeArmed = false
    /// Events `submit(wait:)` received and `reap` has not delivered yet.
    private var waitedEvents = 0
    /// At most this many control blocks per `io_submit` (see `RingExecutor.init`).
    let submitBatch: Int
    private let blocks: UnsafeMutablePointer<AIOControlBlock>
    private let events: UnsafeMutablePointer<AIOEvent>
    private var inUse: [Bool]
    private var freeSlots: [Int]
    /// Prepared, not yet accepted by `io_submit`.
    private var queued: [UnsafeMutableRawPointer?] = []
    /// NOP, timers, refused submissions, cancels.
    private var local = LocalCompletions()
    private let eventFD: Int32

    var kind: EngineKind { .libaio }
    private(set) var systemCalls = 0

    init(entries: Int, submitBatch: Int) throws(EngineError) {
        self.submitBatch = max(submitBatch, 1)
        let aio: LibAIO
        switch LibAIO.shared {
        case .success(let loaded): aio = loaded
        case .failure(let error): throw error
        }
        self.aio = aio
        capacity = max(entries, 1)
        var context: OpaquePointer?
        // One more than the operations: the wake-up poll is always in flight.
        let result = aio.setup(Int32(clamping: capacity + 1), &context)
        guard result == 0 else {
            let errno = Errno(rawValue: -result)
            var reason = "io_setup failed: \(errno)"
            if errno == .resourceTemporarilyUnavailable {
                let limit = KernelSettings.readInteger("/proc/sys/fs/aio-max-nr").map(String.init) ?? "?"
                let used = KernelSettings.readInteger("/proc/sys/fs/aio-nr").map(String.init) ?? "?"
                reason +=
                    " (the system-wide limit fs.aio-max-nr=\(limit) is reached: aio-nr=\(used); raise it with sysctl)"
            } else if errno == .noFunction || errno == .notPermitted {
                reason += " (the system call is blocked, e.g. by a seccomp profile)"
            }
            throw .unavailable(engine: .libaio, reason: reason)
        }
        self.context = context
        let fd = cs_eventfd(0)
        guard fd >= 0 else {
            _ = aio.destroy(context)
            throw .unavailable(engine: .libaio, reason: "eventfd failed: \(Errno(rawValue: -fd))")
        }
        eventFD = fd
        blocks = .allocate(capacity: capacity)
        blocks.initialize(repeating: AIOControlBlock(), count: capacity)
        events = .allocate(capacity: capacity + 1)
        events.initialize(repeating: AIOEvent(), count: capacity + 1)
        inUse = Array(repeating: false, count: capacity)
        freeSlots = Array((0..<capacity).reversed())
        queued.reserveCapacity(capacity + 1)
        var wake = AIOControlBlock()
        wake.data = ReservedToken.wake
        wake.opcode = AIOControlBlock.commandPoll
        wake.fd = UInt32(fd)
        wake.buffer = UInt64(POLLIN)
        wakeBlock = .allocate(capacity: 1)
        wakeBlock.initialize(to: wake)
        // Arm it now: a kernel without aio poll (before 4.18) cannot wake this loop.
        var armed: UnsafeMutableRawPointer? = UnsafeMutableRawPointer(wakeBlock)
        let submitted = aio.submit(context, 1, &armed)
        guard submitted == 1 else {
            let reason =
                "io_submit of the wake-up poll failed: \(Errno(rawValue: submitted < 0 ? -submitted : EIO)) (aio poll needs Linux 4.18)"
            _ = aio.destroy(context)
            self.context = nil
            throw .unavailable(engine: .libaio, reason: reason)
        }
        wakeArmed = true
    }

    deinit {
        if context != nil { _ = aio.destroy(context) }
        Glibc.close(eventFD)
        blocks.deallocate()
        events.deallocate()
        wakeBlock.deallocate()  // io_destroy has finished with it
    }

    func supports(_ entry: SubmissionEntry) -> Bool {
        // Links, drains, fixed files and buffer selection are io_uring concepts.
        let allowed: SQEFlags = [.async]
        guard entry.sqeFlags.isSubset(of: allowed) else { return false }
        switch entry.op {
        // Native AIO has no file-position mode: -1 reaches the kernel as an offset (EINVAL).
        case .read, .write, .readv, .writev: return entry.off != SubmissionEntry.currentPosition
        case .nop, .fsync: return true
        case .pollAdd: return entry.len == 0  // one-shot only
        case .timeout: return entry.off == 0  // time only, no completion counts
        default: return false
        }
    }

    var submissionCapacity: Int { capacity }
    var submissionSpace: Int { freeSlots.count }

    func prepare(_ entry: SubmissionEntry, token: UInt64) -> Bool {
        if local.take(entry, token: token) { return true }
        guard let slot = freeSlots.popLast() else { return false }
        var block = AIOControlBlock()
        block.data = token
        block.fd = UInt32(bitPattern: entry.fd)
        switch entry.op {
        case .read, .write, .readv, .writev:
            block.opcode =
                switch entry.op {
                case .read: AIOControlBlock.commandRead
                case .write: AIOControlBlock.commandWrite
                case .readv: AIOControlBlock.commandReadv
                default: AIOControlBlock.commandWritev
                }
            block.buffer = entry.addr
            block.bytes = UInt64(entry.len)
            block.offset = Int64(bitPattern: entry.off)
            block.rwFlags = entry.opFlags
        case .fsync:
            let dataOnly = entry.opFlags & FsyncFlags.dataSync.rawValue != 0
            block.opcode = dataOnly ? AIOControlBlock.commandFdatasync : AIOControlBlock.commandFsync
        case .pollAdd:
            block.opcode = AIOControlBlock.commandPoll
            block.buffer = UInt64(entry.opFlags)
        default:
            freeSlots.append(slot)
            local.post(token, -EOPNOTSUPP)
            return true
        }
        blocks[slot] = block
        inUse[slot] = true
        queued.append(UnsafeMutableRawPointer(blocks + slot))
        if queued.count >= submitBatch { flush() }
        return true
    }

    private func release(_ block: UnsafeMutableRawPointer) {
        let slot = block.assumingMemoryBound(to: AIOControlBlock.self) - blocks
        inUse[slot] = false
        freeSlots.append(slot)
    }

    func cancel(token: UInt64) -> Bool {
        if token == ReservedToken.wake { return true }  // the engine's own poll is not cancelled
        if local.cancelTimer(token) { return true }
        if let index = queued.firstIndex(where: { $0!.load(as: UInt64.self) == token }) {
            release(queued.remove(at: index)!)
            local.post(token, -ECANCELED)
            return true
        }
        for slot in 0..<capacity where inUse[slot] && blocks[slot].data == token {
            // Only some commands (poll) can be cancelled; either way the event still arrives
            // through the completion ring, which is what the executor waits for.
            var ignored = AIOEvent()
            _ = aio.cancel(context, UnsafeMutableRawPointer(blocks + slot), &ignored)
        }
        return true
    }

    func cancelAll() {
        local.cancelAllTimers()
        for block in queued { _ = cancel(token: block!.load(as: UInt64.self)) }
        for slot in 0..<capacity where inUse[slot] { _ = cancel(token: blocks[slot].data) }
    }

    private func flush() {
        while !queued.isEmpty {
            // io_submit plugs the block layer for the whole call, like io_uring_enter.
            let count = min(queued.count, submitBatch)
            let result = queued.withUnsafeMutableBufferPointer { aio.submit(context, count, $0.baseAddress!) }
            systemCalls += 1
            if result > 0 {
                queued.removeFirst(Int(result))
            } else if result == -EAGAIN {
                return  // out of kernel resources: retry after some complete
            } else {
                // The first block was refused (e.g. a bad fd): complete it with the error.
                let refused = queued.removeFirst()!
                if refused == UnsafeMutableRawPointer(wakeBlock) {
                    wakeArmed = false  // tried again at the next submit
                    continue
                }
                local.post(refused.load(as: UInt64.self), result == 0 ? -EIO : result)
                release(refused)
            }
        }
    }

    /// Whether the kernel has posted completions nobody has read yet (no system call).
    private var completionsReady: Bool {
        guard let context else { return false }
        let raw = UnsafeMutableRawPointer(context)
        guard
            raw.load(fromByteOffset: MemoryLayout<AIORingHeader>.offset(of: \.magic)!, as: UInt32.self)
                == AIORingHeader.expectedMagic
        else { return true }  // not the layout we know: let io_getevents decide (reap only)
        // Both indices change under us (the kernel moves `tail`, io_getevents moves `head`), so
        // read them as atomics. Relaxed is enough: the events themselves are read by the
        // io_getevents call this answer leads to, not here.
        let head = (raw + MemoryLayout<AIORingHeader>.offset(of: \.head)!).assumingMemoryBound(to: Atomic<UInt32>.self)
        let tail = (raw + MemoryLayout<AIORingHeader>.offset(of: \.tail)!).assumingMemoryBound(to: Atomic<UInt32>.self)
        return head.pointee.load(ordering: .relaxed) != tail.pointee.load(ordering: .relaxed)
    }

    func submit(wait: Bool, timeout: Duration?) {
        if !wakeArmed {
            queued.append(UnsafeMutableRawPointer(wakeBlock))
            wakeArmed = true
        }
        flush()
        guard wait, local.isEmpty, waitedEvents == 0 else { return }
        // Block until at least one completion (an operation's, or the wake-up poll's); with some
        // already posted, this returns them at once. (No peek at the ring header here: a layout
        // we do not recognise must not turn the wait into a spin.) Should the poll not be armed
        // (io_submit refused it), look for remote work every 10 ms.
        let limit = shorter(shorter(timeout, local.untilNextTimer()), wakeArmed ? nil : .milliseconds(10))
        var deadline = limit.map { timespec($0) } ?? timespec()
        let count = withUnsafeMutablePointer(to: &deadline) { pointer in
            aio.getEvents(context, 1, capacity + 1, UnsafeMutableRawPointer(events), limit == nil ? nil : pointer)
        }
        systemCalls += 1
        waitedEvents = max(Int(count), 0)  // -EINTR: the loop simply comes back
    }

    func reap(_ body: (UInt64, Int32, UInt32) -> Void) {
        var count = waitedEvents
        waitedEvents = 0
        var zero = timespec()
        while true {
            if count == 0 {
                guard completionsReady else { break }
                count = max(Int(aio.getEvents(context, 0, capacity + 1, UnsafeMutableRawPointer(events), &zero)), 0)
                systemCalls += 1
                guard count > 0 else { break }
            }
            for index in 0..<count {
                let event = events[index]
                if event.data == ReservedToken.wake {
                    // Reset the eventfd, then re-arm the poll with the next submit: a wake-up
                    // written after this read completes the new poll at once.
                    var counter: UInt64 = 0
                    _ = Glibc.read(eventFD, &counter, 8)
                    systemCalls += 1
                    wakeArmed = false
                    continue
                }
                release(UnsafeMutableRawPointer(bitPattern: UInt(event.object))!)
                body(event.data, Int32(clamping: event.result), 0)
            }
            count = 0
        }
        local.deliver(body)
    }

    func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(eventFD, &one, 8)
    }

    func close() {
        if context != nil { _ = aio.destroy(context) }  // waits for anything still in the kernel
        context = nil
    }
}
