import CSyscalls
import Glibc
import Ring
import SystemPackage

/// The io_uring engine: one ring with `SINGLE_ISSUER | DEFER_TASKRUN | TASKRUN_FLAG`, created on
/// the loop thread (the only thread that may submit to it). Other threads wake it through an
/// eventfd whose read is kept armed in the ring; another ring's loop thread can wake it with
/// `IORING_OP_MSG_RING` instead, which costs that thread no system call of its own.
final class URingEngine: IOEngine {
    var ring: Ring
    private let wakeFD: Int32
    private let wakeBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
    private var wakeArmed = false
    /// Pushed entries beyond this many go to the kernel at once (see `RingExecutor.init`).
    let submitBatch: Int

    var kind: EngineKind { .ioURing }
    var systemCalls: Int { ring.enterCalls }

    init(entries: Int, submitBatch: Int) throws(EngineError) {
        self.submitBatch = max(submitBatch, 1)
        var options = RingOptions(flags: [.singleIssuer, .deferTaskRun, .taskRunFlag])
        options.completionEntries = UInt32(clamping: max(entries, 1) * 4)
        options.registerRingFD = true  // created, driven and dropped on the loop thread only
        do {
            ring = try Ring(entries: entries, options: options)
        } catch {
            wakeBuffer.deallocate()
            throw .unavailable(engine: .ioURing, reason: error.description)
        }
        let fd = cs_eventfd(0)
        guard fd >= 0 else {
            wakeBuffer.deallocate()
            throw .unavailable(engine: .ioURing, reason: "eventfd failed: \(Errno(rawValue: -fd))")
        }
        wakeFD = fd
    }

    deinit {
        Glibc.close(wakeFD)
        wakeBuffer.deallocate()  // `close()` made sure the kernel let go of it
    }

    /// The ring's own fd, the target of `MSG_RING` wake-ups from other rings.
    var ringFD: FileDescriptor { ring.fd }

    func supports(_ entry: SubmissionEntry) -> Bool { true }  // the kernel decides (-EINVAL)

    var submissionCapacity: Int { ring.submissionCapacity - 1 }

    /// One slot stays reserved for the wake-up read while it is not armed: a loop that filled
    /// the SQ with work and then slept without it could not be woken by other threads.
    var submissionSpace: Int { ring.submissionSpace - (wakeArmed ? 0 : 1) }

    func prepare(_ entry: SubmissionEntry, token: UInt64) -> Bool {
        armWake()
        guard ring.push(entry.userData(token)) else { return false }
        if ring.pendingSubmissions >= submitBatch {
            // Hand this batch over now: the block layer holds a submit call's requests until the
            // call ends, so smaller calls reach the disk sooner. EAGAIN/EBUSY leave the entries
            // queued for the loop's own submit.
            _ = try? ring.submit()
        }
        return true
    }

    private func armWake() {
        guard !wakeArmed else { return }
        let read = SubmissionEntry.read(FileDescriptor(rawValue: wakeFD), into: wakeBuffer, offset: 0)
        wakeArmed = ring.push(read.userData(ReservedToken.wake))
    }

    func cancel(token: UInt64) -> Bool {
        armWake()
        return submissionSpace > 0 && ring.push(.cancel(userData: token).userData(ReservedToken.ignored))
    }

    func cancelAll() {
        _ = ring.push(.cancelAny().userData(ReservedToken.ignored))
    }

    /// Posts a completion to another ring (its loop wakes if it waits); no system call here, it
    /// goes with this loop's next submit. False when the SQ is full. `token` (from
    /// `messageToken`) comes back only if the kernel refuses the message (`skipSuccess`); in
    /// io_uring/msg_ring.c: `-EBADFD` (the fd is not a ring, or a disabled one), `-ENOMEM` (no
    /// request for a `DEFER_TASKRUN` target, which ours are), `-EOVERFLOW` (another target's CQ
    /// could not take the entry). `reap` then collects it in `failedMessages`.
    func message(_ target: FileDescriptor, token: UInt64) -> Bool {
        armWake()
        guard submissionSpace > 0 else { return false }
        let entry = SubmissionEntry.messageRing(target, result: 0, userData: ReservedToken.ignored)
        return ring.push(entry.userData(token).flags(.skipSuccess))
    }

    /// Tokens with this bit name a wake-up message's target (its `wakeID`), not an operation
    /// record: user-space addresses never have it set.
    static let messageTag: UInt64 = 1 << 63

    static func messageToken(_ wakeID: UInt64) -> UInt64 { messageTag | wakeID }

    /// `wakeID`s of targets whose wake-up message failed, since the loop last looked.
    var failedMessages: [UInt64] = []

    func submit(wait: Bool, timeout: Duration?) {
        armWake()
        // EINTR is retried inside; EAGAIN/EBUSY mean "reap, then retry", which the loop does.
        if wait {
            _ = try? ring.submitAndWait(1, timeout: timeout)
        } else {
            _ = try? ring.submit()
        }
    }

    func reap(_ body: (UInt64, Int32, UInt32) -> Void) {
        ring.forEachCompletion { completion in
            let token = completion.userData
            if token >= ReservedToken.limit {
                if token & Self.messageTag == 0 {
                    body(token, completion.result, completion.rawFlags)
                } else if completion.result < 0 {
                    failedMessages.append(token & ~Self.messageTag)
                }
            } else if token == ReservedToken.wake {
                wakeArmed = false
            }
        }
    }

    func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)  // EAGAIN (counter full) still leaves it readable
    }

    func close() {
        // Drain the armed wake read so the kernel lets go of `wakeBuffer` before it is freed.
        guard wakeArmed else { return }
        _ = ring.push(.cancel(userData: ReservedToken.wake).userData(ReservedToken.ignored))
        while wakeArmed {
            _ = try? ring.submitAndWait(1, timeout: .milliseconds(100))
            reap { _, _, _ in }
        }
    }
}
