import CSyscalls
import Glibc
import Ring
import Synchronization
import SystemPackage

/// glibc's POSIX aio: reads and writes go out in batches with `lio_listio`, fsync with
/// `aio_fsync`; glibc's helper threads perform them (requests on one file descriptor run one at
/// a time, which is why this engine stays near the disk's single-request rate at any depth).
///
/// Waiting: with requests in glibc's hands the loop blocks in `aio_suspend` on the middle request
/// of each descriptor's queue; other threads end that wait with a signal to the loop thread
/// (`cs_aio_wake_signal`). With nothing in flight it blocks in `ppoll` on an eventfd that other
/// threads write. No wake-up ever occupies one of glibc's helper threads: an `aio_read` kept
/// armed on a blocking eventfd did, and with one helper (`tunePOSIXAIO(threads: 1)`) or 20
/// executors (glibc's default pool) no I/O could run at all. NOP completes at once and
/// timeouts are kept by the engine.
final class PosixAIOEngine: IOEngine {
    private let capacity: Int
    private let blocks: UnsafeMutablePointer<aiocb>
    private var tokens: [UInt64]
    private var inUse: [Bool]
    private var freeSlots: [Int]
    /// Slots handed to glibc and not yet reaped, oldest first.
    private var inFlight: [Int] = []
    /// Scratch for `submit(wait:)`: per descriptor, its requests in flight and how many of them
    /// the scan has passed.
    private var perDescriptor: [Int32: (count: Int, passed: Int)] = [:]
    /// Read/write slots prepared since the last `lio_listio`.
    private var batch: [UnsafeMutablePointer<aiocb>?] = []
    /// NOP, timers, refused submissions, cancels.
    private var local = LocalCompletions()
    /// Written by `wake()`; the loop sleeps on it in `ppoll` when nothing is in flight.
    private let wakeFD: Int32
    /// The loop thread's kernel id and the signal that ends its `aio_suspend` (-1: the signal
    /// is taken by the program, so the loop waits in short slices instead).
    private let loopThreadID: Int32
    private let wakeSignal: Int32
    /// Dekker pair between `wake()` and the loop (both sequentially consistent): a waker sets
    /// `wakeRequested` then reads `inSuspend`; the loop sets `inSuspend` then reads
    /// `wakeRequested`. Either the loop sees the request and does not block, or the waker sees
    /// the loop blocking and signals it. (A signal that lands after that check but before glibc
    /// blocks is lost; `suspendSlice` bounds what that costs.)
    private let wakeRequested = Atomic<Bool>(false)
    private let inSuspend = Atomic<Bool>(false)
    /// The longest single `aio_suspend` while requests are in flight.
    private var suspendSlice: Duration { wakeSignal >= 0 ? .milliseconds(10) : .milliseconds(1) }
    /// Scratch list for `aio_suspend`.
    private var waitList: [UnsafePointer<aiocb>?] = []

    var kind: EngineKind { .posixAIO }
    /// glibc calls that may enter the kernel (lio_listio, aio_fsync, aio_suspend) and the loop's
    /// own waits on the wake fd; glibc's helper threads make the actual I/O system calls.
    private(set) var systemCalls = 0

    /// Created on the loop thread: it records that thread's id and unblocks the wake signal there
    /// (a thread inherits its creator's mask, and some runtimes' workers block everything).
    init(entries: Int) throws(EngineError) {
        capacity = max(entries, 1)
        let fd = cs_eventfd(0)  // non-blocking: only the loop reads it, after ppoll
        guard fd >= 0 else {
            throw .unavailable(engine: .posixAIO, reason: "eventfd failed: \(Errno(rawValue: -fd))")
        }
        wakeFD = fd
        loopThreadID = cs_gettid()
        wakeSignal = cs_aio_wake_signal()
        if wakeSignal >= 0 {
            var unblock = sigset_t()
            sigemptyset(&unblock)
            sigaddset(&unblock, wakeSignal)
            pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        }
        blocks = .allocate(capacity: capacity)
        blocks.initialize(repeating: aiocb(), count: capacity)
        tokens = Array(repeating: 0, count: capacity)
        inUse = Array(repeating: false, count: capacity)
        freeSlots = Array((0..<capacity).reversed())
        inFlight.reserveCapacity(capacity)
        waitList.reserveCapacity(capacity + 1)
    }

    deinit {
        Glibc.close(wakeFD)
        blocks.deallocate()
    }

    /// glibc's tuning knobs (`aio_init(3)`): at most `threads` helper threads, a request table
    /// sized for `requests`, idle helpers exit after `idleSeconds`. Effective only before the
    /// process's first aio request.
    static func tune(threads: Int, requests: Int, idleSeconds: Int) {
        cs_aio_init(Int32(clamping: threads), Int32(clamping: requests), Int32(clamping: idleSeconds))
    }

    func supports(_ entry: SubmissionEntry) -> Bool {
        guard entry.sqeFlags.isSubset(of: [.async]) else { return false }
        switch entry.op {
        // POSIX aio has no per-request RWF_* flags and no file-position mode.
        case .read, .write: return entry.opFlags == 0 && entry.off != SubmissionEntry.currentPosition
        case .nop, .fsync: return true
        case .timeout: return entry.off == 0
        default: return false
        }
    }

    /// glibc's helper threads take requests one by one; there is no kernel batch to split.
    var submitBatch: Int { .max }

    var submissionCapacity: Int { capacity }
    var submissionSpace: Int { freeSlots.count }

    func prepare(_ entry: SubmissionEntry, token: UInt64) -> Bool {
        if local.take(entry, token: token) { return true }
        guard let slot = freeSlots.popLast() else { return false }
        let block = blocks + slot
        block.initialize(to: aiocb())
        block.pointee.aio_fildes = entry.fd
        block.pointee.aio_sigevent.sigev_notify = Int32(SIGEV_NONE)
        tokens[slot] = token
        inUse[slot] = true
        switch entry.op {
        case .read, .write:
            block.pointee.aio_lio_opcode = Int32(entry.op == .read ? LIO_READ : LIO_WRITE)
            block.pointee.aio_buf = UnsafeMutableRawPointer(bitPattern: UInt(entry.addr))
            block.pointee.aio_nbytes = Int(entry.len)
            block.pointee.aio_offset = Int(bitPattern: UInt(entry.off))
            batch.append(block)
        case .fsync:
            let dataOnly = entry.opFlags & FsyncFlags.dataSync.rawValue != 0
            if aio_fsync(dataOnly ? O_DSYNC : O_SYNC, block) != 0 {
                local.post(token, -cs_errno())
                release(slot)
            } else {
                inFlight.append(slot)
            }
        default:
            release(slot)
            local.post(token, -EOPNOTSUPP)
        }
        return true
    }

    private func release(_ slot: Int) {
        inUse[slot] = false
        freeSlots.append(slot)
    }

    func cancel(token: UInt64) -> Bool {
        if local.cancelTimer(token) { return true }
        if let index = batch.firstIndex(where: { tokens[$0! - blocks] == token }) {
            let slot = batch.remove(at: index)! - blocks
            release(slot)
            local.post(token, -ECANCELED)
            return true
        }
        for slot in inFlight where tokens[slot] == token {
            // AIO_CANCELED: it now reports ECANCELED; AIO_NOTCANCELED: it will finish. Either way
            // the reap below sees it only when glibc is done with the buffer.
            _ = aio_cancel(blocks[slot].aio_fildes, blocks + slot)
        }
        return true
    }

    func cancelAll() {
        local.cancelAllTimers()
        for block in batch { _ = cancel(token: tokens[block! - blocks]) }
        for slot in inFlight { _ = aio_cancel(blocks[slot].aio_fildes, blocks + slot) }
    }

    private func flush() {
        guard !batch.isEmpty else { return }
        // Requests glibc refused carry their error in the control block (aio_error), so a
        // failed call needs no special path: the reap scan reports each block.
        systemCalls += 1
        _ = batch.withUnsafeMutableBufferPointer {
            lio_listio(Int32(LIO_NOWAIT), $0.baseAddress!, Int32($0.count), nil)
        }
        for block in batch { inFlight.append(block! - blocks) }
        batch.removeAll(keepingCapacity: true)
    }

    func submit(wait: Bool, timeout: Duration?) {
        flush()
        guard wait, local.isEmpty else { return }
        // glibc runs one descriptor's requests one at a time, oldest first, and a helper thread
        // that completes a request someone waits on must wake that thread (a futex wake: an
        // IPI to a sleeping vCPU here) before it starts the next one. So wait on the middle of
        // each descriptor's queue, not on everything: the helper runs through the first half
        // without waking anyone and the loop reaps them in one go. One request in flight: that
        // one. Measured at 32 in flight (BENCHMARKS.md): 2 -> 0.13 waits per operation, ~+12%
        // IOPS, p99 19 ms -> 1.6 ms.
        waitList.removeAll(keepingCapacity: true)
        perDescriptor.removeAll(keepingCapacity: true)
        for slot in inFlight { perDescriptor[blocks[slot].aio_fildes, default: (0, 0)].count += 1 }
        for slot in inFlight {
            let fd = blocks[slot].aio_fildes
            let (count, passed) = perDescriptor[fd]!
            if passed == (count - 1) / 2 { waitList.append(UnsafePointer(blocks + slot)) }
            perDescriptor[fd]!.passed = passed + 1
        }
        let limit = shorter(timeout, local.untilNextTimer())
        if waitList.isEmpty {
            waitForWake(limit)
            return
        }
        inSuspend.store(true, ordering: .sequentiallyConsistent)
        if !wakeRequested.exchange(false, ordering: .sequentiallyConsistent) {
            systemCalls += 1
            var spec = timespec(shorter(limit, suspendSlice)!)
            _ = aio_suspend(waitList, Int32(waitList.count), &spec)  // EINTR: woken
        }
        inSuspend.store(false, ordering: .relaxed)
    }

    /// Nothing in glibc's hands: sleep on the eventfd itself until `wake()` or `limit`.
    private func waitForWake(_ limit: Duration?) {
        var poll = pollfd(fd: wakeFD, events: Int16(POLLIN), revents: 0)
        systemCalls += 1
        var milliseconds: Int32 = -1
        if let limit {
            // Rounded up: waking early for a timer would only spin.
            let (seconds, attoseconds) = max(limit, .zero).components
            let rounded = seconds * 1000 + (attoseconds + 999_999_999_999_999) / 1_000_000_000_000_000
            milliseconds = Int32(clamping: rounded)
        }
        _ = Glibc.poll(&poll, 1, milliseconds)
        if poll.revents != 0 {
            var count: UInt64 = 0
            _ = Glibc.read(wakeFD, &count, 8)  // non-blocking: resets the counter
        }
        wakeRequested.store(false, ordering: .relaxed)
    }

    func reap(_ body: (UInt64, Int32, UInt32) -> Void) {
        // Compact in place, keeping the order (the wait above relies on oldest-first).
        var kept = 0
        for index in inFlight.indices {
            let slot = inFlight[index]
            let block = blocks + slot
            let error = aio_error(block)
            if error == EINPROGRESS {
                inFlight[kept] = slot
                kept += 1
                continue
            }
            let returned = aio_return(block)
            let result = error == 0 ? Int32(clamping: returned) : -error
            let token = tokens[slot]
            release(slot)
            body(token, result, 0)
        }
        inFlight.removeLast(inFlight.count - kept)
        local.deliver(body)
    }

    func wake() {
        wakeRequested.store(true, ordering: .sequentiallyConsistent)
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)  // EAGAIN (counter full) still leaves it readable
        if wakeSignal >= 0 && inSuspend.load(ordering: .sequentiallyConsistent) {
            // By kernel thread id: the loop thread is alive while it can be in aio_suspend.
            _ = cs_tgkill(loopThreadID, wakeSignal)
        }
    }

    /// Nothing of ours is left in glibc's hands once nothing is in flight.
    func close() {}
}

extension RingExecutor {
    /// glibc's POSIX aio tuning (`aio_init(3)`): at most `threads` helper threads, a request
    /// table sized for `requests`, idle helpers exit after `idleSeconds`. Call it before the
    /// first POSIX aio executor starts; later calls have no effect.
    public static func tunePOSIXAIO(threads: Int, requests: Int, idleSeconds: Int = 1) {
        PosixAIOEngine.tune(threads: threads, requests: requests, idleSeconds: idleSeconds)
    }
}
