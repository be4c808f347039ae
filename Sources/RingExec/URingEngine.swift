import CSyscalls
import Glibc
import Ring
import SystemPackage

/// The io_uring engine: one ring, created on the loop thread (the only thread that may submit to
/// it). Other threads wake it through an eventfd whose read is kept armed in the ring; another
/// ring's loop thread can wake it with `IORING_OP_MSG_RING` instead, which costs that thread no
/// system call of its own.
///
/// The ring takes the best shape the kernel accepts (`shapes`), and every kernel feature the
/// engine relies on beyond Linux 5.6 is asked for, not assumed: without it the engine falls back
/// (see `adaptations`, reported in `EngineSelection`) instead of failing on an older kernel.
final class URingEngine: IOEngine {
    /// Loop-thread state, never accessed overlapping: no dynamic exclusivity checks (they showed
    /// up in profiles of every push and reap).
    @exclusivity(unchecked) var ring: Ring
    private let wakeFD: Int32
    private let wakeBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
    @exclusivity(unchecked) private var wakeArmed = false
    /// Pushed entries beyond this many go to the kernel at once (see `RingExecutor.init`).
    let submitBatch: Int

    /// What the kernel offers, asked once at setup.
    let opcodes: Set<UInt8>
    /// `opcodes` as a bitmap, for the check on every awaited operation.
    private let opcodeBits: (UInt64, UInt64, UInt64, UInt64)
    /// `IORING_OP_MSG_RING` (5.18) and `IOSQE_CQE_SKIP_SUCCESS` (5.17): wake-ups of other rings
    /// without a system call. Otherwise other executors write this one's eventfd.
    let canMessage: Bool
    /// `IORING_ASYNC_CANCEL_ANY` (5.19): one entry cancels everything in flight. Otherwise
    /// `cancelAll` cancels each operation it knows by its token (`tokensInFlight`).
    let canCancelAny: Bool
    /// `IORING_FEAT_EXT_ARG` (5.11): waits carry their timeout. Otherwise a timed wait arms a
    /// `TIMEOUT` entry of its own (`armWaitTimeout`).
    let hasTimedWaits: Bool
    /// `IORING_ACCEPT_MULTISHOT` (5.19). The probe cannot ask for a flag, so `IORING_OP_SOCKET`,
    /// of the same release, stands for it.
    let supportsMultishotAccept: Bool
    /// Multishot `RECV` (6.0) selecting from a registered buffer ring (5.19); `IORING_OP_SEND_ZC`,
    /// of the same release, stands for the flag.
    let supportsMultishotReceive: Bool
    /// Receive bundles (`IORING_FEAT_RECVSEND_BUNDLE`, 6.10): a multishot receive fills several
    /// buffers of its ring per completion.
    let receivesBundles: Bool
    /// `IORING_OP_BIND` and `IORING_OP_LISTEN` (6.11). Otherwise plain system calls, which do
    /// not block.
    let supportsBindAndListen: Bool
    /// `IORING_SEND_ZC_REPORT_USAGE` (6.2): a zero-copy send's notification says whether the
    /// kernel copied after all. Earlier kernels refuse the flag with `EINVAL`; the probe cannot
    /// ask for a flag, so the release (emulated or running) decides.
    let reportsZeroCopyUsage: Bool
    /// What this engine does differently on this kernel, and why (for `EngineSelection`).
    let adaptations: [String]

    /// Without `canCancelAny`: the tokens prepared and not yet finally completed.
    private var tokensInFlight: Set<UInt64> = []
    /// Without `hasTimedWaits`: wait timeouts in flight and the earliest of their deadlines.
    private(set) var waitTimeoutsInFlight = 0
    private var waitTimeoutDeadline = ContinuousClock.Instant.now
    /// Two slots, used in turn: the kernel copies a timespec while it prepares the entry during
    /// the submit, so a slot is free again once the entry naming it has been submitted.
    private let waitTimespecs = UnsafeMutablePointer<KernelTimespec>.allocate(capacity: 2)
    private var nextWaitTimespec = 0

    var kind: EngineKind { .ioURing }
    var systemCalls: Int { ring.enterCalls }

    /// Ring shapes, best first: each needs a newer kernel than the next.
    /// - `SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG` (6.1): completions are processed only when
    ///   the loop asks for them, with no interrupts of the loop thread.
    /// - `COOP_TASKRUN|TASKRUN_FLAG` (5.19): completion work waits for the loop's next system
    ///   call instead of interrupting it; the ring's flags say when there is some.
    /// - plain: the kernel interrupts the loop thread to finish completions.
    static let shapes: [SetupFlags] = [
        [.singleIssuer, .deferTaskRun, .taskRunFlag], [.coopTaskRun, .taskRunFlag], [],
    ]

    /// The setup flags the kernel accepted.
    var ringFlags: SetupFlags { ring.setupFlags }

    init(entries: Int, submitBatch: Int, emulating: KernelVersion? = KernelEmulation.fromEnvironment)
        throws(EngineError)
    {
        self.submitBatch = max(submitBatch, 1)
        var notes: [String] = []
        do {
            ring = try Self.makeRing(entries: entries, emulating: emulating, shapes: Self.shapes[...], notes: &notes)
        } catch {
            wakeBuffer.deallocate()
            waitTimespecs.deallocate()
            throw error
        }
        let fd = cs_eventfd(0)
        guard fd >= 0 else {
            wakeBuffer.deallocate()
            waitTimespecs.deallocate()
            throw .unavailable(engine: .ioURing, reason: "eventfd failed: \(Errno(rawValue: -fd))")
        }
        wakeFD = fd
        // IORING_REGISTER_PROBE (5.6) is the floor: without it nothing can be asked.
        do {
            opcodes = try Probe.opcodes(of: ring).1
        } catch {
            Glibc.close(fd)
            wakeBuffer.deallocate()
            waitTimespecs.deallocate()
            throw .unavailable(
                engine: .ioURing,
                reason: "IORING_REGISTER_PROBE failed (\(error)): the executor needs Linux 5.6 or later")
        }
        var bits: [UInt64] = [0, 0, 0, 0]
        for op in opcodes { bits[Int(op) >> 6] |= 1 << UInt64(op & 63) }
        opcodeBits = (bits[0], bits[1], bits[2], bits[3])
        let features = ring.features
        hasTimedWaits = features.contains(.extArg)
        canMessage = opcodes.contains(Opcode.msgRing.rawValue) && features.contains(.cqeSkip)
        canCancelAny = Self.acceptsCancelAny(&ring)
        supportsMultishotAccept = opcodes.contains(Opcode.socket.rawValue)
        supportsMultishotReceive =
            opcodes.contains(Opcode.sendZC.rawValue)
            && !Ring.refuses(.registerBufferRing, emulating: ring.emulatedKernel)
        receivesBundles = supportsMultishotReceive && features.contains(.recvSendBundle)
        supportsBindAndListen = opcodes.contains(Opcode.bind.rawValue) && opcodes.contains(Opcode.listen.rawValue)
        reportsZeroCopyUsage =
            opcodes.contains(Opcode.sendZC.rawValue)
            && (ring.emulatedKernel ?? KernelVersion.running).map { $0 >= KernelVersion(6, 2) } == true
        let fallbacks: [(offered: Bool, note: String)] = [
            (
                ring.usesRegisteredRingFD,
                "ring fd not registered (IORING_REGISTER_RING_FDS needs Linux 5.18): each enter looks the fd up"
            ),
            (hasTimedWaits, "no IORING_FEAT_EXT_ARG (Linux 5.11): timed waits arm a TIMEOUT entry"),
            (canMessage, "no IORING_OP_MSG_RING (Linux 5.18): other executors wake this one through its eventfd"),
            (canCancelAny, "no IORING_ASYNC_CANCEL_ANY (Linux 5.19): shutdown cancels operations one by one"),
            (supportsBindAndListen, "no IORING_OP_BIND/LISTEN (Linux 6.11): bind and listen are plain system calls"),
            (
                opcodes.contains(Opcode.socket.rawValue),
                "no IORING_OP_SOCKET (Linux 5.19): socket() is a plain system call"
            ),
            (
                opcodes.contains(Opcode.shutdown.rawValue),
                "no IORING_OP_SHUTDOWN (Linux 5.11): shutdown() is a plain system call"
            ),
            (supportsMultishotAccept, "no multishot accept (Linux 5.19): connections() accepts one at a time"),
            (
                supportsMultishotReceive,
                "no multishot receive into a buffer ring (Linux 6.0): messages() receives one at a time"
            ),
        ]
        notes += fallbacks.filter { !$0.offered }.map(\.note)
        adaptations = notes
    }

    /// Creates the ring with the first shape the kernel accepts; `EINVAL` (a flag it does not
    /// know) moves on to the next shape, anything else is final.
    private static func makeRing(
        entries: Int, emulating: KernelVersion?, shapes: ArraySlice<SetupFlags>, notes: inout [String]
    ) throws(EngineError) -> Ring {
        let shape = shapes.first ?? []
        var options = RingOptions(flags: shape)
        options.completionEntries = UInt32(clamping: max(entries, 1) * 4)
        options.registerRingFD = true  // created, driven and dropped on the loop thread only
        options.emulatedKernel = emulating
        do {
            return try Ring(entries: entries, options: options)
        } catch {
            guard error.errno == .invalidArgument, shapes.count > 1 else {
                throw .unavailable(engine: .ioURing, reason: error.description)
            }
            let needs = shape.newestIntroduced.map { ", needs Linux \($0)" } ?? ""
            notes.append("ring shape \(shape) refused (\(error.errno)\(needs))")
            return try makeRing(entries: entries, emulating: emulating, shapes: shapes.dropFirst(), notes: &notes)
        }
    }

    /// Asks the kernel whether `IORING_ASYNC_CANCEL_ANY` works: on an idle ring a kernel that
    /// knows the flag finds nothing (`ENOENT`); one that does not refuses it (`EINVAL`).
    private static func acceptsCancelAny(_ ring: inout Ring) -> Bool {
        if let emulated = ring.emulatedKernel, emulated < KernelVersion(5, 19) { return false }
        guard ring.push(SubmissionEntry.cancelAny().userData(ReservedToken.probe)) else { return false }
        _ = try? ring.submitAndWait(1, timeout: .seconds(5))
        var accepted = false
        ring.forEachCompletion { completion in
            if completion.userData == ReservedToken.probe { accepted = completion.result != -EINVAL }
        }
        return accepted
    }

    deinit {
        Glibc.close(wakeFD)
        wakeBuffer.deallocate()  // `close()` made sure the kernel let go of it
        waitTimespecs.deallocate()  // the kernel copied each one while its entry was submitted
    }

    /// The ring's own fd, the target of `MSG_RING` wake-ups from other rings.
    var ringFD: FileDescriptor { ring.fd }

    func supports(_ entry: SubmissionEntry) -> Bool { true }  // the kernel decides (-EINVAL)

    /// Whether the kernel's probe lists `opcode` (thread-safe: fixed at setup).
    func offers(_ opcode: Opcode) -> Bool {
        let word: UInt64
        switch opcode.rawValue >> 6 {
        case 0: word = opcodeBits.0
        case 1: word = opcodeBits.1
        case 2: word = opcodeBits.2
        default: word = opcodeBits.3
        }
        return word & (1 << UInt64(opcode.rawValue & 63)) != 0
    }

    var submissionCapacity: Int { ring.submissionCapacity - 1 }

    /// One slot stays reserved for the wake-up read while it is not armed: a loop that filled
    /// the SQ with work and then slept without it could not be woken by other threads.
    var submissionSpace: Int { ring.submissionSpace - (wakeArmed ? 0 : 1) }

    func prepare(_ entry: SubmissionEntry, token: UInt64) -> Bool {
        armWake()
        guard ring.push(entry.userData(token)) else { return false }
        if !canCancelAny { tokensInFlight.insert(token) }
        // Never inside a linked chain: the kernel ends a chain at the end of a submit call
        // (io_submit_state_end in io_uring/io_uring.c), so the rest would run unlinked.
        let linked = entry.sqeFlags.contains(.link) || entry.sqeFlags.contains(.hardLink)
        if ring.pendingSubmissions >= submitBatch && !linked {
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
        guard !canCancelAny else {
            _ = ring.push(.cancelAny().userData(ReservedToken.ignored))
            return
        }
        // One cancel per operation; what does not fit now is asked again on the loop's next call.
        for token in tokensInFlight {
            guard submissionSpace > 0 else { return }
            _ = ring.push(.cancel(userData: token).userData(ReservedToken.ignored))
        }
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
    @exclusivity(unchecked) var failedMessages: [UInt64] = []

    func submit(wait: Bool, timeout: Duration?) {
        armWake()
        // EINTR is retried inside; EAGAIN/EBUSY mean "reap, then retry", which the loop does.
        if wait {
            if let timeout, !hasTimedWaits {
                // Hand over what is queued first, so the SQ has room for the timeout entry.
                _ = try? ring.submit()
                armWaitTimeout(timeout)
                _ = try? ring.submitAndWait(1)
            } else {
                _ = try? ring.submitAndWait(1, timeout: timeout)
            }
        } else {
            _ = try? ring.submit()
        }
    }

    /// Kernels without `EXT_ARG`: makes sure a `TIMEOUT` entry ends the coming wait by
    /// `timeout`. One armed earlier that expires no later serves; a later one is removed first,
    /// so at most one is in flight apart from those being removed.
    private func armWaitTimeout(_ timeout: Duration) {
        let deadline = ContinuousClock.now + timeout
        if waitTimeoutsInFlight > 0 {
            if waitTimeoutDeadline <= deadline { return }
            guard submissionSpace >= 2 else { return }  // the wait still ends at the later deadline
            _ = ring.push(.timeoutRemove(target: ReservedToken.waitTimeout).userData(ReservedToken.ignored))
        }
        guard submissionSpace >= 1 else { return }
        let slot = waitTimespecs + nextWaitTimespec
        nextWaitTimespec ^= 1
        slot.initialize(to: KernelTimespec(timeout))
        if ring.push(SubmissionEntry.timeout(slot).userData(ReservedToken.waitTimeout)) {
            waitTimeoutsInFlight += 1
            waitTimeoutDeadline = deadline
        }
    }

    func reap(_ body: (UInt64, Int32, UInt32) -> Void) {
        ring.forEachCompletion { completion in
            let token = completion.userData
            if !canCancelAny && completion.rawFlags & CQEFlags.more.rawValue == 0 {
                tokensInFlight.remove(token)
            }
            if token >= ReservedToken.limit {
                if token & Self.messageTag == 0 {
                    body(token, completion.result, completion.rawFlags)
                } else if completion.result < 0 {
                    failedMessages.append(token & ~Self.messageTag)
                }
            } else if token == ReservedToken.wake {
                wakeArmed = false
            } else if token == ReservedToken.waitTimeout {
                waitTimeoutsInFlight -= 1
            }
        }
    }

    func wake() {
        var one: UInt64 = 1
        _ = Glibc.write(wakeFD, &one, 8)  // EAGAIN (counter full) still leaves it readable
    }

    func close() {
        // Drain the armed wake read so the kernel lets go of `wakeBuffer` before it is freed.
        // The cancel may not fit at once (a full queue): each round's submit makes room, and
        // it is pushed again until it is in.
        var cancelQueued = false
        while wakeArmed {
            if !cancelQueued {
                cancelQueued = ring.push(.cancel(userData: ReservedToken.wake).userData(ReservedToken.ignored))
            }
            submit(wait: true, timeout: .milliseconds(100))  // without EXT_ARG too
            reap { _, _, _ in }
        }
    }
}
