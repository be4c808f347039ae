import Glibc
import Synchronization
public import SystemPackage

/// How to set up a ring. The defaults suit most programs: a plain ring with a CQ twice the size
/// of the SQ, its fd registered with itself for cheaper `io_uring_enter` calls.
public struct RingOptions: Sendable {
    /// Setup flags (`IORING_SETUP_*`). Flags that the fields below imply (`cqSize`,
    /// `sqAffinity`, `attachWQ`) are added automatically.
    public var flags: SetupFlags = []
    /// CQ size (`IORING_SETUP_CQSIZE`); nil lets the kernel pick twice the SQ size.
    public var completionEntries: UInt32? = nil
    /// With `.sqPoll`: how long the poll thread spins before sleeping (`sq_thread_idle`).
    public var sqThreadIdle: Duration? = nil
    /// With `.sqPoll`: the CPU to pin the poll thread to (`IORING_SETUP_SQ_AFF`).
    public var sqThreadCPU: UInt32? = nil
    /// Share the io-wq backend of this ring (`IORING_SETUP_ATTACH_WQ`).
    public var attachWorkQueueOf: FileDescriptor? = nil
    /// Register the ring fd with the creating thread (`IORING_REGISTER_RING_FDS`, Linux 5.18) and
    /// enter it with `IORING_ENTER_REGISTERED_RING`, which skips the fd lookup on every
    /// `io_uring_enter`. Off by default, as in liburing.
    ///
    /// The registration belongs to the creating thread and holds a reference to the ring: the
    /// kernel frees the ring only when that thread drops the registration (or exits). Calls from
    /// other threads use the plain fd automatically. Drop such a ring on the thread that created
    /// it; dropped elsewhere, its requests are still cancelled at once (when the ring's policy
    /// lets another thread do that: not under `.singleIssuer` or restrictions), and the creating
    /// thread removes the registration the next time it creates or drops a `Ring` (kernels with
    /// `IORING_REGISTER_USE_REGISTERED_RING`, 6.3+), or when it exits.
    public var registerRingFD: Bool = false
    /// Answer as this older kernel would (see `KernelEmulation`): a testing aid. Defaults to
    /// `SWIFT_RING_EMULATE_KERNEL`; nil (the usual case) uses the running kernel as it is.
    public var emulatedKernel: KernelVersion? = KernelEmulation.fromEnvironment

    /// Options with these setup flags and every other setting at its default.
    public init(flags: SetupFlags = []) { self.flags = flags }
}

/// Why a ring could not be created: the kernel's errno and a sentence naming the cause.
public struct RingSetupError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The errno from `io_uring_setup(2)`, `mmap(2)` or `io_uring_register(2)`.
    public var errno: Errno
    /// What the errno means for this call, in words an operator can act on.
    public var explanation: String

    /// A setup failure with its errno and a sentence naming the cause.
    public init(errno: Errno, explanation: String) {
        self.errno = errno
        self.explanation = explanation
    }

    /// "io_uring setup failed (<errno>): <explanation>".
    public var description: String { "io_uring setup failed (\(errno)): \(explanation)" }
}

/// An io_uring instance: the ring fd, its mapped SQ and CQ, and the calls that drive them.
///
/// A `Ring` is `~Copyable`: one owner at a time, so no two threads can touch the unsynchronised
/// local indices together. `deinit` unmaps the rings, then closes the fd; the kernel cancels
/// and reaps whatever is still in flight.
///
/// Typical use:
/// ```swift
/// var ring = try Ring(entries: 64)
/// guard ring.push(.nop().userData(1)) else { /* SQ full: submit first */ }
/// _ = try ring.submitAndWait(1)
/// ring.forEachCompletion { print($0.userData, $0.result) }
/// ```
public struct Ring: ~Copyable, @unchecked Sendable {
    /// The ring's file descriptor.
    public let fd: FileDescriptor
    /// The parameters the kernel returned from setup (sizes, offsets, features).
    public private(set) var parameters: RingParameters
    /// The setup flags in force.
    public let setupFlags: SetupFlags
    /// What this kernel's io_uring offers.
    public let features: Features
    /// The older kernel this ring answers as (`RingOptions.emulatedKernel`), or nil.
    public let emulatedKernel: KernelVersion?

    @usableFromInline var sq: SubmissionQueue
    @usableFromInline var cq: CompletionQueue

    /// The registered ring index, or -1 when the fd is not registered.
    @usableFromInline let registeredIndex: Int32
    /// The thread that registered the index (a never-reused token, see `Syscall.threadToken`):
    /// registered ring fds are per thread.
    @usableFromInline let registeringThread: UInt64

    private var mappings: Mappings
    /// Set when a resize left the mappings stale (see `resize`): every enter then throws this.
    @usableFromInline var unusable: Errno? = nil
    /// Tests: make the next resize fail after the kernel swapped the rings.
    var failNextResizeMapping = false

    /// Largest SQ the kernel accepts without `.clamp` (`IORING_MAX_ENTRIES`).
    public static let maximumEntries: UInt32 = 32768
    /// Largest CQ the kernel accepts without `.clamp` (`IORING_MAX_CQ_ENTRIES`).
    public static let maximumCompletionEntries: UInt32 = 65536

    /// Creates a ring with room for `entries` submissions (rounded up to a power of two).
    ///
    /// Errors (all `RingSetupError`, with the cause in `explanation`):
    /// - `EINVAL`: `entries` is 0, negative, above `maximumEntries` without `.clamp`, or the
    ///   flags are unknown to this kernel or an invalid combination.
    /// - `ENOSYS`: no io_uring in this kernel, or a seccomp filter (e.g. Docker's default) hides it.
    /// - `EPERM`: `kernel.io_uring_disabled` forbids it, or a seccomp/LSM policy refuses it.
    /// - `ENOMEM`: the rings do not fit the locked-memory limit or kernel memory.
    /// - `EMFILE`/`ENFILE`: no file descriptor left.
    public init(entries: Int, options: RingOptions = RingOptions()) throws(RingSetupError) {
        guard entries >= 0, entries <= Int(UInt32.max) else {
            throw RingSetupError(
                errno: .invalidArgument,
                explanation: "entries \(entries) does not fit the kernel's 32-bit entry count")
        }
        var p = RingParameters()
        var flags = options.flags
        if let cqEntries = options.completionEntries {
            flags.insert(.cqSize)
            p.cqEntries = cqEntries
        }
        if let idle = options.sqThreadIdle {
            let ms = idle.components.seconds * 1000 + idle.components.attoseconds / 1_000_000_000_000_000
            p.sqThreadIdle = UInt32(clamping: max(0, ms))
        }
        if let cpu = options.sqThreadCPU {
            flags.insert(.sqAffinity)
            p.sqThreadCPU = cpu
        }
        if let wq = options.attachWorkQueueOf {
            flags.insert(.attachWQ)
            p.wqFD = UInt32(bitPattern: wq.rawValue)
        }
        p.flags = flags.rawValue

        let emulated = KernelEmulation.effective(options.emulatedKernel)
        if let emulated, let needed = flags.newestIntroduced, needed > emulated {
            let newer = SetupFlags.allNamed.filter {
                flags.contains($0.flag) && ($0.flag.introduced ?? needed) > emulated
            }
            throw RingSetupError(
                errno: .invalidArgument,
                explanation: newer.map { "\($0.kernelName) needs Linux \($0.flag.introduced ?? needed)" }.joined(
                    separator: ", ")
                    + " (emulating Linux \(emulated))")
        }

        let ringFD: Int32
        do {
            ringFD = try Syscall.setup(entries: UInt32(entries), parameters: &p)
        } catch {
            throw RingSetupError(
                errno: error, explanation: Ring.explainSetupFailure(error, entries: entries, options: options))
        }

        // From here on every failure must close the fd and unmap what was mapped.
        let layout: RingLayout
        do {
            layout = try RingLayout(p)
        } catch {
            Glibc.close(ringFD)
            throw RingSetupError(errno: .invalidArgument, explanation: "kernel returned an unusable layout: \(error)")
        }

        let mapped: Mappings
        do {
            mapped = try Mappings(ringFD: ringFD, layout: layout, parameters: p)
        } catch {
            Glibc.close(ringFD)
            throw error
        }

        fd = FileDescriptor(rawValue: ringFD)
        parameters = p
        if let emulated {
            p.features &= Features.reported(by: emulated).rawValue
        }
        emulatedKernel = emulated
        setupFlags = SetupFlags(rawValue: p.flags)
        features = Features(rawValue: p.features)
        mappings = mapped
        sq = SubmissionQueue(ring: mapped.sqRing, sqes: mapped.sqes, layout: layout)
        cq = CompletionQueue(ring: mapped.cqRing, layout: layout, mixed: setupFlags.contains(.cqeMixed))
        registeringThread = Syscall.threadToken
        OrphanedRingRegistrations.releaseThisThreads(through: ringFD)
        if options.registerRingFD && !setupFlags.contains(.registeredFDOnly)
            && !Ring.refuses(.registerRingFDs, emulating: emulated)
        {
            registeredIndex = Ring.registerSelf(ringFD)
        } else {
            registeredIndex = -1
        }
    }

    /// Tears the ring down wherever it is dropped: nothing it had in flight runs on afterwards.
    ///
    /// Closing the fd alone is not enough when something else still holds the ring (a thread's
    /// registration of it, a `BufferRing`, a descriptor duplicated by the program): the kernel
    /// keeps such a ring alive, and an armed read on it would go on consuming data. So the ring
    /// first cancels everything in flight and waits until those requests are gone
    /// (`IORING_REGISTER_SYNC_CANCEL`, Linux 6.0; best effort: a `.singleIssuer` ring dropped
    /// off its thread, or a restricted ring, refuses it, and so do older kernels, where closing
    /// the last reference still cancels everything, only not before `deinit` returns).
    deinit {
        try? cancelSynchronously(flags: .any, timeout: .seconds(5))
        if registeredIndex >= 0 {
            if Syscall.threadToken == registeringThread {
                // Drop this thread's registration, which would keep the ring alive until the
                // thread exits.
                var update = ResourceUpdate()
                update.offset = UInt32(registeredIndex)
                _ = try? Syscall.register(
                    fd.rawValue, opcode: RegisterOpcode.unregisterRingFDs.rawValue, argument: &update, count: 1)
            } else {
                // Only the registering thread can remove its registration: leave it a note.
                OrphanedRingRegistrations.add(thread: registeringThread, index: registeredIndex)
            }
        }
        OrphanedRingRegistrations.releaseThisThreads(through: fd.rawValue)
        mappings.unmap()
        Glibc.close(fd.rawValue)
    }

    /// `IORING_REGISTER_RESIZE_RINGS`: gives the ring a new SQ of `entries` and CQ of
    /// `completionEntries` (nil: twice the SQ), keeping queued submissions and unread completions.
    /// Entries pushed so far are published first. The kernel resizes only `.deferTaskRun` rings
    /// (`EINVAL` otherwise) and refuses sizes that cannot hold what is pending (`EOVERFLOW`).
    ///
    /// Only rings created with `.noSQArray`: kernel 6.18 does not report where the new SQ index
    /// array lives after a resize (it returns offset 0), so a ring with an array throws
    /// `EOPNOTSUPP` here rather than guess. When the kernel refuses, the ring is unchanged.
    ///
    /// The kernel swaps the rings before this maps the new ones. Should that mapping fail (out of
    /// memory or address space), the old mappings no longer reach the kernel: the error is
    /// thrown and the ring is left unusable, every later submit or wait throwing `EBADFD`
    /// (drop it). Nothing is freed under the kernel: the old mappings stay until the ring is
    /// dropped.
    public mutating func resize(entries: UInt32, completionEntries: UInt32? = nil) throws(Errno) {
        guard setupFlags.contains(.noSQArray) else { throw .notSupported }
        if Ring.refuses(.registerResizeRings, emulating: emulatedKernel) { throw .invalidArgument }
        _ = sq.flush()
        var p = RingParameters()
        p.sqEntries = entries
        if let completionEntries {
            p.cqEntries = completionEntries
            p.flags = SetupFlags.cqSize.rawValue
        }
        _ = try withUnsafeMutablePointer(to: &p) { pointer throws(Errno) in
            try Syscall.register(
                fd.rawValue, opcode: RegisterOpcode.registerResizeRings.rawValue, argument: pointer, count: 1)
        }
        // The kernel wrote back the new sizes and offsets; the flags that shape the rings are
        // the ring's own.
        p.flags = setupFlags.rawValue
        p.features = features.rawValue
        let layout: RingLayout
        let mapped: Mappings
        do {
            if failNextResizeMapping {
                failNextResizeMapping = false
                throw RingSetupError(errno: .noMemory, explanation: "injected by a test")
            }
            layout = try RingLayout(p)
            mapped = try Mappings(ringFD: fd.rawValue, layout: layout, parameters: p)
        } catch {
            let errno = (error as? RingSetupError)?.errno ?? .invalidArgument
            unusable = Errno(rawValue: EBADFD)
            throw errno
        }
        mappings.unmap()
        mappings = mapped
        parameters.sqEntries = p.sqEntries
        parameters.cqEntries = p.cqEntries
        parameters.sqOffsets = p.sqOffsets
        parameters.cqOffsets = p.cqOffsets
        sq = SubmissionQueue(ring: mapped.sqRing, sqes: mapped.sqes, layout: layout)
        cq = CompletionQueue(ring: mapped.cqRing, layout: layout, mixed: setupFlags.contains(.cqeMixed))
    }

    /// Registers the ring fd with itself; returns the index, or -1 if the kernel says no
    /// (older kernels): the ring then simply enters with its plain fd.
    private static func registerSelf(_ ringFD: Int32) -> Int32 {
        var update = ResourceUpdate()
        update.offset = UInt32.max  // -1: let the kernel pick a free slot
        update.data = UInt64(UInt32(bitPattern: ringFD))
        guard
            let n = try? Syscall.register(
                ringFD, opcode: RegisterOpcode.registerRingFDs.rawValue, argument: &update, count: 1), n == 1
        else { return -1 }
        OrphanedRingRegistrations.watchThisThread()
        return Int32(bitPattern: update.offset)
    }

    /// Whether `io_uring_enter` uses the registered ring index (false on other threads).
    public var usesRegisteredRingFD: Bool {
        registeredIndex >= 0 && Syscall.threadToken == registeringThread
    }

    // MARK: Submission

    /// Number of SQ slots.
    public var submissionCapacity: Int { Int(sq.capacity) }
    /// Number of CQ slots.
    public var completionCapacity: Int { Int(cq.capacity) }
    /// Free SQ slots right now.
    public var submissionSpace: Int { Int(sq.space) }
    /// Entries pushed but not yet consumed by the kernel.
    public var pendingSubmissions: Int { Int(sq.pending) }

    /// Copies `entry` into the next SQ slot. Returns false, writing nothing, when the SQ is full:
    /// call `submit()` (and reap completions if the kernel is backed up), then push again.
    ///
    /// Nothing reaches the kernel until `submit()`; push many entries, then submit once.
    ///
    /// Under SQPOLL, "full" does not mean completions are on their way: the poll thread posts a
    /// batch's completions before it advances the SQ head, so an application can reap all of
    /// them and still find the SQ full for a moment. Wait for completions only when it has
    /// unreaped requests in flight; otherwise `submit()` and push again.
    @inlinable
    public mutating func push(_ entry: SubmissionEntry) -> Bool {
        guard let slot = sq.nextSlot() else { return false }
        slot.storeBytes(of: entry, as: SubmissionEntry.self)
        if sq.entryShift == 7 {
            // SQE128: the second half is command data; hand it out zeroed.
            (slot + 64).initializeMemory(as: UInt8.self, repeating: 0, count: 64)
        }
        return true
    }

    /// Like `push(_:)` for a 128-byte entry (`IORING_SETUP_SQE128` rings, e.g. `URING_CMD`):
    /// `command` fills the 64 bytes after the entry (shorter input is zero-padded). Returns false
    /// when the SQ is full; throws `EINVAL` on a ring without `.sqe128` or for more than 64 bytes.
    public mutating func push(_ entry: SubmissionEntry, command: UnsafeRawBufferPointer) throws(Errno) -> Bool {
        guard sq.entryShift == 7, command.count <= 64 else { throw .invalidArgument }
        guard let slot = sq.nextSlot() else { return false }
        slot.storeBytes(of: entry, as: SubmissionEntry.self)
        (slot + 64).initializeMemory(as: UInt8.self, repeating: 0, count: 64)
        if let base = command.baseAddress, command.count > 0 {
            (slot + 64).copyMemory(from: base, byteCount: command.count)
        }
        return true
    }

    /// Hands pushed entries to the kernel without waiting. Returns how many it consumed.
    ///
    /// One `io_uring_enter` for the whole batch; none at all under SQPOLL unless the poll thread
    /// sleeps. Fewer than pushed (a short submit) means an entry failed early: its error is in
    /// its completion, and the rest stay queued for the next call. See `submitAndWait` for errors.
    @inlinable @discardableResult
    public mutating func submit() throws(Errno) -> Int {
        try enter(waitFor: 0, timeout: nil)
    }

    /// Submits pushed entries and waits until at least `count` completions are ready, or the
    /// timeout passes (then it returns normally: check the CQ). Returns the number submitted.
    ///
    /// `EINTR` is retried here. Errors a caller can meet:
    /// - `EAGAIN`: the kernel could not allocate request memory: reap completions, retry.
    /// - `EBUSY`: completions are backed up in the kernel (CQ overflow): reap, then retry.
    /// - `EBADF`/`EBADFD`/`EOPNOTSUPP`: the ring fd is not usable (a bug or a closed ring).
    /// - `ENXIO`: the ring is shutting down. `EEXIST`: another thread submits on a
    ///   `SINGLE_ISSUER` ring. `EBADFD` also means a `.disabled` ring was not enabled.
    @inlinable @discardableResult
    public mutating func submitAndWait(_ count: Int, timeout: Duration? = nil) throws(Errno) -> Int {
        try enter(waitFor: UInt32(clamping: count), timeout: timeout)
    }

    /// Waits for `count` completions without submitting anything new (queued entries are still
    /// flushed). Same errors as `submitAndWait`.
    @inlinable
    public mutating func wait(for count: Int = 1, timeout: Duration? = nil) throws(Errno) {
        _ = try enter(waitFor: UInt32(clamping: count), timeout: timeout)
    }

    /// `io_uring_enter` calls made through this value (for "system calls per operation").
    public internal(set) var enterCalls = 0

    @usableFromInline
    mutating func enter(waitFor minComplete: UInt32, timeout: Duration?) throws(Errno) -> Int {
        if let unusable { throw unusable }
        let pending = sq.flush()
        var flags: UInt32 = 0
        var toSubmit = pending
        if setupFlags.contains(.sqPoll) {
            // The poll thread consumes the SQ by itself. Full fence: our tail store must be
            // visible before we read NEED_WAKEUP, pairing with the barrier the kernel places
            // between setting the flag and its last look at the tail before sleeping.
            atomicMemoryFence(ordering: .sequentiallyConsistent)
            if pending > 0 && sq.ringFlags.contains(.needWakeup) {
                flags |= EnterFlags.sqWakeup.rawValue
            }
            toSubmit = 0
        }
        if minComplete > 0 || setupFlags.contains(.ioPoll) || completionsNeedFlush {
            flags |= EnterFlags.getEvents.rawValue
        }
        if flags == 0 && toSubmit == 0 {
            return Int(pending)  // nothing to tell the kernel (SQPOLL awake, or nothing queued)
        }

        var flagsWithTarget = flags
        let useRegistered = usesRegisteredRingFD
        let target = useRegistered ? registeredIndex : fd.rawValue
        if useRegistered { flagsWithTarget |= EnterFlags.registeredRing.rawValue }
        if let timeout {
            return try enter(
                target, toSubmit: toSubmit, pending: pending, minComplete: minComplete, flags: flagsWithTarget,
                timeout: timeout)
        }
        // The common call: no timeout, so no argument block, no deadline, nothing to recompute
        // after a signal (EINTR: nothing was consumed; the same call is correct again).
        while true {
            enterCalls &+= 1
            let result = Syscall.enter(
                target, toSubmit: toSubmit, minComplete: minComplete, flags: flagsWithTarget, argument: nil,
                argumentSize: 0)
            if result >= 0 { return setupFlags.contains(.sqPoll) ? Int(pending) : Int(result) }
            if result != -EINTR { throw Errno(rawValue: -result) }
        }
    }

    /// `enter` with a timeout (`IORING_ENTER_EXT_ARG`). A relative timeout is measured from this
    /// call: after a signal (EINTR) the wait resumes with what is left, so a stream of signals
    /// cannot stretch it.
    @usableFromInline
    mutating func enter(
        _ target: Int32, toSubmit: UInt32, pending: UInt32, minComplete: UInt32, flags: UInt32, timeout: Duration
    ) throws(Errno) -> Int {
        guard features.contains(.extArg) else { throw .notSupported }
        var argument = GetEventsArgument()
        var timespec = KernelTimespec(timeout)
        let deadline = ContinuousClock.now + timeout
        let flags = flags | EnterFlags.extArg.rawValue | EnterFlags.getEvents.rawValue
        while true {
            enterCalls &+= 1
            let result: Int32 = withUnsafeMutablePointer(to: &timespec) { ts in
                argument.timespec = UInt64(UInt(bitPattern: ts))
                return withUnsafePointer(to: &argument) { arg in
                    Syscall.enter(
                        target, toSubmit: toSubmit, minComplete: minComplete, flags: flags,
                        argument: arg, argumentSize: MemoryLayout<GetEventsArgument>.size)
                }
            }
            if result >= 0 {
                return setupFlags.contains(.sqPoll) ? Int(pending) : Int(result)
            }
            if result == -EINTR {
                // A signal arrived; nothing was consumed, so the same call is correct, with the
                // time that is left.
                let left = deadline - .now
                if left <= .zero { return 0 }
                timespec = KernelTimespec(left)
                continue
            }
            if result == -ETIME { return 0 }  // the wait ended by timeout and nothing was submitted
            throw Errno(rawValue: -result)
        }
    }

    /// Whether the kernel holds completions or completion work that only an enter with
    /// `GETEVENTS` will deliver (CQ overflow, or pending task work).
    @inlinable
    public var completionsNeedFlush: Bool {
        !sq.ringFlags.isDisjoint(with: [.cqOverflow, .taskRun])
    }

    // MARK: Completion

    /// Completions ready to read without entering the kernel.
    public var readyCompletions: Int { Int(cq.ready) }

    /// Completions the kernel had to drop because the CQ was full. Always 0 on kernels with
    /// `IORING_FEAT_NODROP`, which keep overflowed completions and deliver them later.
    public var droppedCompletions: Int { Int(cq.droppedCount) }

    /// Times `forEachCompletion` found completions waiting in the kernel's overflow list (the CQ
    /// was full when they were posted) and entered the kernel to bring them in.
    public var overflowFlushes: Int { overflowFlushCount }
    @usableFromInline var overflowFlushCount = 0

    /// SQ entries the kernel dropped as invalid (a bad index in the SQ array).
    public var droppedSubmissions: Int { Int(sq.dropped.pointee.load(ordering: .relaxed)) }

    /// The kernel-written SQ ring flags (`IORING_SQ_*`).
    public var submissionRingFlags: SQRingFlags { sq.ringFlags }

    /// Calls `body` for each ready completion, in order, up to `limit`, then releases those slots
    /// with a single head store. Returns the number delivered.
    ///
    /// When the kernel signals an overflow backlog or pending completion work (see
    /// `completionsNeedFlush`) and the CQ has room, this enters the kernel to bring them in, so
    /// no completion is left behind; otherwise it makes no system call.
    @inlinable @discardableResult
    public mutating func forEachCompletion(limit: Int = .max, _ body: (Completion) -> Void) -> Int {
        var delivered = cq.drain(limit: limit, body)
        while delivered < limit && completionsNeedFlush {
            if sq.ringFlags.contains(.cqOverflow) { overflowFlushCount &+= 1 }
            // Ask the kernel to move overflowed entries / run task work, then drain again.
            if (try? flushCompletions()) == nil { break }
            let more = cq.drain(limit: limit - delivered, body)
            if more == 0 { break }
            delivered += more
        }
        return delivered
    }

    /// Copies out the next completion, if one is ready (without entering the kernel).
    @inlinable
    public mutating func nextCompletion() -> Completion? {
        var found: Completion? = nil
        _ = cq.drain(limit: 1) { found = $0 }
        return found
    }

    /// Enters the kernel only to run pending completion work and move overflowed completions into
    /// the CQ (`io_uring_enter` with `GETEVENTS` and nothing to wait for).
    public mutating func flushCompletions() throws(Errno) {
        if let unusable { throw unusable }
        let useRegistered = usesRegisteredRingFD
        var flags = EnterFlags.getEvents.rawValue
        if useRegistered { flags |= EnterFlags.registeredRing.rawValue }
        let target = useRegistered ? registeredIndex : fd.rawValue
        while true {
            let result = Syscall.enter(
                target, toSubmit: 0, minComplete: 0, flags: flags, argument: nil, argumentSize: 0)
            if result >= 0 { return }
            if result == -Errno.interrupted.rawValue { continue }
            throw Errno(rawValue: -result)
        }
    }

    // MARK: Registration

    /// Calls `io_uring_register(2)` on this ring. The raw form: `argument` must point at what the
    /// opcode expects (see io_uring_register(2)). Returns the kernel's non-negative result.
    @discardableResult
    public func register(_ opcode: RegisterOpcode, argument: UnsafeRawPointer?, count: UInt32) throws(Errno) -> Int32 {
        if Ring.refuses(opcode, emulating: emulatedKernel) { throw .invalidArgument }
        return try Syscall.register(fd.rawValue, opcode: opcode.rawValue, argument: argument, count: count)
    }

    /// Whether a kernel of `emulated` would refuse `opcode` (it did not know it yet).
    package static func refuses(_ opcode: RegisterOpcode, emulating emulated: KernelVersion?) -> Bool {
        guard let emulated, let introduced = opcode.introduced else { return false }
        return introduced > emulated
    }

    /// Enables a ring created with `.disabled` (`IORING_REGISTER_ENABLE_RINGS`).
    public func enable() throws(Errno) {
        try register(.registerEnableRings, argument: nil, count: 0)
    }

    // MARK: Diagnostics

    static func explainSetupFailure(_ error: Errno, entries: Int, options: RingOptions) -> String {
        switch error {
        case .invalidArgument:
            if entries == 0 { return "entries must be at least 1" }
            if entries > Int(maximumEntries) && !options.flags.contains(.clamp) {
                return "entries \(entries) is above the kernel maximum \(maximumEntries); pass .clamp to cap it"
            }
            if let cq = options.completionEntries, cq > maximumCompletionEntries, !options.flags.contains(.clamp) {
                return "completion entries \(cq) is above the kernel maximum \(maximumCompletionEntries); pass .clamp"
            }
            if let cq = options.completionEntries, Int(cq) < entries {
                return "completion entries \(cq) is smaller than entries \(entries)"
            }
            return
                "the kernel rejected the setup flags \(options.flags): unknown to this kernel, or a combination it forbids "
                + "(e.g. DEFER_TASKRUN needs SINGLE_ISSUER, TASKRUN_FLAG needs COOP_TASKRUN or DEFER_TASKRUN)"
        case .noFunction:
            return "the kernel has no io_uring (built without CONFIG_IO_URING) or a seccomp filter hides "
                + "io_uring_setup, as Docker's default profile does"
        case .notPermitted:
            switch KernelSettings.ioUringDisabled {
            case 2?: return "kernel.io_uring_disabled=2: io_uring is disabled for every process on this host"
            case 1?:
                return
                    "kernel.io_uring_disabled=1: only CAP_SYS_ADMIN or members of kernel.io_uring_group may create rings"
            default:
                if options.flags.contains(.sqPoll) {
                    return "SQPOLL was refused: this kernel or policy requires privileges for a poll thread"
                }
                return "refused by policy: a seccomp filter or security module blocks io_uring_setup"
            }
        case .noMemory:
            return "not enough memory for rings of this size: raise RLIMIT_MEMLOCK (ulimit -l) or use fewer entries"
        case .tooManyOpenFiles, .tooManyOpenFilesInSystem:
            return "no file descriptor left for the ring"
        case .badFileDescriptor, .noSuchAddressOrDevice:
            return "the ring to attach to (attachWorkQueueOf) is not an io_uring fd"
        case .badAddress:
            return "the kernel could not read the setup parameters"
        default:
            return "io_uring_setup(2) failed"
        }
    }
}

/// Host settings that decide whether io_uring is allowed.
public enum KernelSettings {
    /// `kernel.io_uring_disabled` (0 allowed, 1 restricted to a group, 2 disabled), or nil when
    /// the sysctl does not exist (kernels before 6.6) or cannot be read.
    public static var ioUringDisabled: Int? {
        readInteger("/proc/sys/kernel/io_uring_disabled")
    }

    /// Reads a small integer file such as a sysctl under /proc/sys.
    public static func readInteger(_ path: String) -> Int? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 64)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        let text = String(decoding: buffer.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return Int(text.trimmingCharacters(in: " \n\t"))
    }
}

extension String {
    fileprivate func trimmingCharacters(in set: String) -> String {
        var s = Substring(self)
        while let c = s.first, set.contains(c) { s = s.dropFirst() }
        while let c = s.last, set.contains(c) { s = s.dropLast() }
        return String(s)
    }
}

/// The three (or two, with single mmap) shared mappings of a ring, checked against the layout.
struct Mappings {
    let ring: UnsafeMutableRawPointer
    let ringSize: Int
    let cq: UnsafeMutableRawPointer?
    let cqSize: Int
    let sqes: UnsafeMutableRawPointer
    let sqesSize: Int

    var sqRing: UnsafeMutableRawPointer { ring }
    var cqRing: UnsafeMutableRawPointer { cq ?? ring }

    /// Maps the rings of `ringFD` and checks the sizes the kernel wrote into them.
    init(ringFD: Int32, layout: RingLayout, parameters p: RingParameters) throws(RingSetupError) {
        func map(_ size: Int, _ offset: Int64, _ what: String) throws(RingSetupError) -> UnsafeMutableRawPointer {
            let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, ringFD, Int(offset))
            guard let address, address != UnsafeMutableRawPointer(bitPattern: -1) else {
                throw RingSetupError(
                    errno: Syscall.currentErrno(),
                    explanation:
                        "mmap of the \(what) failed; ENOMEM here usually means RLIMIT_MEMLOCK or memory is short")
            }
            return address
        }
        let ring = try map(layout.sqRingSize, RingLayout.sqRingMmapOffset, "SQ ring")
        var cq: UnsafeMutableRawPointer? = nil
        do {
            if !layout.singleMmap { cq = try map(layout.cqRingSize, RingLayout.cqRingMmapOffset, "CQ ring") }
        } catch {
            munmap(ring, layout.sqRingSize)
            throw error
        }
        let sqes: UnsafeMutableRawPointer
        do {
            sqes = try map(layout.sqesSize, RingLayout.sqesMmapOffset, "SQE array")
        } catch {
            if let cq { munmap(cq, layout.cqRingSize) }
            munmap(ring, layout.sqRingSize)
            throw error
        }
        self.ring = ring
        self.ringSize = layout.sqRingSize
        self.cq = cq
        self.cqSize = layout.cqRingSize
        self.sqes = sqes
        self.sqesSize = layout.sqesSize
        // The mask and entry words are written by the kernel at setup and never change.
        let cqRing = cq ?? ring
        func word(_ base: UnsafeMutableRawPointer, _ offset: UInt32) -> UInt32 {
            base.load(fromByteOffset: Int(offset), as: UInt32.self)
        }
        do {
            try layout.checkMappedValues(
                sqMask: word(ring, p.sqOffsets.ringMask), sqCount: word(ring, p.sqOffsets.ringEntries),
                cqMask: word(cqRing, p.cqOffsets.ringMask), cqCount: word(cqRing, p.cqOffsets.ringEntries))
        } catch {
            unmap()
            throw RingSetupError(errno: .invalidArgument, explanation: "mapped ring disagrees with setup: \(error)")
        }
    }

    func unmap() {
        munmap(sqes, sqesSize)
        if let cq { munmap(cq, cqSize) }
        munmap(ring, ringSize)
    }
}
