import Glibc
import Ring
import Synchronization

/// One awaited operation: a single entry, a linked chain of up to 16 entries, or a multishot
/// request. Its `token` (the `user_data` of its first entry; entry `i` of a chain carries
/// `token + i`) is the record's address, 16-byte aligned, with the low bits of its `generation`
/// in bits 57…62. The record is retained while the engine may use it and released only after its
/// last completion has been reaped, so no completion can name a record that is gone.
///
/// Records of single-entry operations are reused (`RingExecutor.takeRecord`/`recycle`): each
/// reuse bumps `generation`, so a cancel asked for an earlier use — a kernel `ASYNC_CANCEL` still
/// in the submission queue, or a task's cancel request still queued for the loop — names a token
/// or a generation the record no longer has, and misses it.
///
/// Every field is touched only on the executor's loop thread, except `continuation`, which the
/// awaiting task sets before the submission request is enqueued (the queue's lock, or running on
/// the loop thread itself, orders it). The fields skip dynamic exclusivity checks: they are loop
/// state, never accessed overlapping.
final class Operation: @unchecked Sendable {
    @exclusivity(unchecked) var continuation: UnsafeContinuation<Int32, Never>?
    @exclusivity(unchecked) var entry: SubmissionEntry
    /// Entries after `entry` in a linked chain (the caller set `.link` on all but the last).
    @exclusivity(unchecked) var chain: [SubmissionEntry] = []
    /// Chain results by position, filled as completions arrive.
    @exclusivity(unchecked) var results: [Int32] = []
    /// Completions still expected before the task resumes.
    @exclusivity(unchecked) var pending = 1
    /// Multishot: called on the loop thread with each completion's result and flags. The task
    /// (if any) resumes with the last one, which lacks `CQEFlags.more`.
    @exclusivity(unchecked) var onEach: ((Int32, UInt32) -> Void)?
    /// A zero-copy send (`RingExecutor.sendZeroCopy`): its first completion carries the send's
    /// result and, with `F_MORE`, promises a notification (`F_NOTIF`) for when the kernel stops
    /// reading the buffer. The task resumes only at the completion without `F_MORE`, with the
    /// send's result; the notification's result is kept beside it.
    @exclusivity(unchecked) var awaitsNotification = false
    @exclusivity(unchecked) var sendResult: Int32 = 0
    /// The send's own completion has come and promised the notification: only the kernel's
    /// release of the buffer is left, which no cancel can hurry (it waits for the bytes to
    /// leave the socket, so for a peer that reads).
    @exclusivity(unchecked) var sendCompleted = false
    @exclusivity(unchecked) var notificationResult: Int32?
    /// A `Task.sleep` timer armed through the scheduling hooks: shutdown fires these at once
    /// instead of waiting for them (the sleeping task resumes early).
    @exclusivity(unchecked) var isSchedulerTimer = false
    /// For a scheduler timer: the sleeping task (retained), watched for cancellation.
    @exclusivity(unchecked) var sleepingTask: UnsafeMutableRawPointer?
    /// A chain whose outcome, for the statistics, is its last entry's (a close behind the cancel
    /// that clears its descriptor), not its first's. Chains are never pooled.
    @exclusivity(unchecked) var countsLastEntry = false
    /// A multishot stream's request: shutdown cancels it when it starts, instead of waiting.
    @exclusivity(unchecked) var endsAtShutdown = false
    /// Set on the loop when a cancel request arrives.
    @exclusivity(unchecked) var cancelRequested = false
    /// Handed to the engine: completions will come.
    @exclusivity(unchecked) var submitted = false
    /// Its task has been resumed.
    @exclusivity(unchecked) var completed = false
    /// Set while the record is one request of `RingExecutor.perform(_:)`'s batch: its result
    /// goes to the batch, whose task resumes when the last one finishes. Unretained: the
    /// awaiting task holds the batch until every record has finished, then clears this.
    @exclusivity(unchecked) var batch: Unmanaged<Batch>?
    @exclusivity(unchecked) var batchIndex = 0
    /// Neighbours in the executor's list of operations handed to the engine and not finished
    /// (`RingExecutor.inFlightOperations()`), and when it was handed over (monotonic
    /// nanoseconds, read once per loop tick). Unowned: the loop retains every record in that
    /// list, and unlinks it before releasing it.
    @exclusivity(unchecked) unowned(unsafe) var newer: Operation?
    @exclusivity(unchecked) unowned(unsafe) var older: Operation?
    @exclusivity(unchecked) var submittedAt: UInt64 = 0
    /// The name of the task that handed the record over (`Task(name:)`), read in that task
    /// before the hand-over, whose lock or loop-thread order publishes it to the loop; nil for
    /// unnamed tasks. Only `inFlightOperations()` reads it.
    @exclusivity(unchecked) var taskName: String?
    /// Which use of this record this is (see the type's comment); bumped by `reuse`.
    @exclusivity(unchecked) private(set) var generation: UInt32 = 0
    /// Stored (release) by the loop just before it resumes the task, loaded (acquire) by the task
    /// right after: the explicit edge that orders the loop's writes (results, flags) before the
    /// task's reads, visible to ThreadSanitizer, which cannot see through a continuation.
    let handoff = Atomic<Bool>(false)

    init(_ entry: SubmissionEntry) {
        self.entry = entry
        precondition(Self.address(of: self) & ~Self.addressBits == 0, "a record above the 128 PiB mark")
    }

    /// Prepares a finished single-entry record for its next operation. Only the loop thread
    /// reuses records, and only when nothing else holds one (`isKnownUniquelyReferenced`).
    func reuse(_ entry: SubmissionEntry) {
        self.entry = entry
        pending = 1
        cancelRequested = false
        submitted = false
        completed = false
        taskName = nil
        generation &+= 1  // wraps after 2^32 uses; tokens keep its low 6 bits
        handoff.store(false, ordering: .relaxed)  // the previous task has loaded it already
    }

    /// Whether this record can serve another operation as it is: one entry, no stream or timer
    /// state.
    var isReusable: Bool {
        chain.isEmpty && onEach == nil && !awaitsNotification && !isSchedulerTimer && sleepingTask == nil
            && !endsAtShutdown
            && continuation == nil && batch == nil
    }

    /// Number of entries: 1, or the chain's length.
    var entryCount: Int { 1 + chain.count }

    /// The `user_data` that names this record's current use. Values 0…15 are reserved for the
    /// engines; bit 63 for wake-up messages (`URingEngine.messageTag`).
    var token: UInt64 { Self.address(of: self) | UInt64(generation & Self.generationMask) << Self.generationShift }

    /// Splits a completion's `user_data` into its record and the entry's position in a chain.
    /// Traps if the record has moved on to another use since: that completion would belong to an
    /// operation that has already finished, and the executor never recycles a record before its
    /// last completion.
    static func from(token: UInt64) -> (Unmanaged<Operation>, Int) {
        let record = Unmanaged<Operation>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(address(inToken: token)))!)
        let generation = UInt32(truncatingIfNeeded: token >> generationShift) & generationMask
        precondition(
            record._withUnsafeGuaranteedRef { $0.generation & generationMask } == generation,
            "a completion for an earlier use of a reused operation record")
        return (record, Int(token & UInt64(maximumChain - 1)))
    }

    /// The record address a token names, whatever its generation.
    static func address(inToken token: UInt64) -> UInt64 { token & addressBits & ~UInt64(maximumChain - 1) }

    /// The longest chain whose positions fit in an address's alignment bits.
    static let maximumChain = 16

    /// User-space addresses fit in 57 bits (x86-64 with five-level paging; 48 on arm64), so bits
    /// 57…62 of a token are free for the generation.
    private static let addressBits: UInt64 = (1 << 57) - 1
    private static let generationShift: UInt64 = 57
    private static let generationMask: UInt32 = 0x3F

    private static func address(of record: Operation) -> UInt64 {
        UInt64(UInt(bitPattern: Unmanaged.passUnretained(record).toOpaque()))
    }
}

/// The waiting side of a batch (`RingExecutor.perform(_:)`): one continuation for many records.
/// Loop-thread state like `Operation`, except `continuation`, set before the records are
/// enqueued.
final class Batch: @unchecked Sendable {
    /// Resumed with false when the batch finished, true when the executor refused it.
    @exclusivity(unchecked) var continuation: UnsafeContinuation<Bool, Never>?
    /// Results by position; `-ECANCELED` until a request's completion arrives.
    @exclusivity(unchecked) var results: [Int32]
    /// Requests not finished yet.
    @exclusivity(unchecked) var remaining: Int
    /// The batch's counterpart of `Operation.handoff`.
    let handoff = Atomic<Bool>(false)

    init(count: Int) {
        results = Array(repeating: -ECANCELED, count: count)
        remaining = count
    }
}

/// How many completions the kernel posts for one entry, as far as the executor must know to keep
/// its record alive exactly that long (kernel 6.18's rules; see `shape(of:)`).
enum CompletionShape: Equatable {
    /// Exactly one completion: what `submit(_:)` and `submitChain` await.
    case one
    /// Completions with `F_MORE` until one without: what `multishot(_:)` streams.
    case multishot
    /// Zero-copy send: the result with `F_MORE`, then a notification (`F_NOTIF`) once the kernel
    /// stops reading the buffer.
    case zeroCopy
    /// No completion on success (`IOSQE_CQE_SKIP_SUCCESS`), or a completion or a change for
    /// someone else's request (`MSG_RING` posting a `user_data` of its choice, a poll update
    /// that rewrites another request's `user_data` or makes it multishot). The executor cannot
    /// tell when (or whether) such an entry is done with its record.
    case unmanageable

    /// Reads the opcode, the SQE flags and the opcode-specific multishot bits (which live in
    /// `len` for polls, `ioprio` for accept and receives, the flags union for timeouts and
    /// `URING_CMD`, and in the opcode itself for `READ_MULTISHOT` and `RECV_ZC`).
    static func of(_ entry: SubmissionEntry) -> CompletionShape {
        if entry.sqeFlags.contains(.skipSuccess) { return .unmanageable }
        switch entry.op {
        case .pollAdd:
            return entry.len & PollFlags.multishot.rawValue != 0 ? .multishot : .one
        case .pollRemove:
            // An update may hand the target a new user_data or make it multishot.
            let update = PollFlags(rawValue: entry.len)
            if update.contains(.updateUserData) || update.contains(.updateEvents) && update.contains(.multishot) {
                return .unmanageable
            }
            return .one
        case .accept:
            return entry.ioprio & 1 != 0 ? .multishot : .one  // IORING_ACCEPT_MULTISHOT
        case .recv, .recvmsg:
            return entry.ioprio & SendReceiveFlags.multishot.rawValue != 0 ? .multishot : .one
        case .readMultishot, .recvZC:
            return .multishot  // RECV_ZC is multishot only (the kernel refuses it without the flag)
        case .timeout:
            return entry.opFlags & TimeoutFlags.multishot.rawValue != 0 ? .multishot : .one
        case .uringCmd:
            return entry.opFlags & (1 << 1) != 0 ? .multishot : .one  // IORING_URING_CMD_MULTISHOT
        case .sendZC, .sendmsgZC:
            return .zeroCopy
        case .msgRing:
            // Posts a completion on the target ring (possibly an executor's, under any user_data)
            // unless it only passes a file and skips the target's completion.
            let sendsFile = entry.addr == 1  // IORING_MSG_SEND_FD
            let skipsTarget = entry.opFlags & MessageRingFlags.skipTargetCompletion.rawValue != 0
            return sendsFile && skipsTarget ? .one : .unmanageable
        default:
            return .one
        }
    }
}
