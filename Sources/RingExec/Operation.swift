import Ring
import Synchronization

/// One awaited operation: a single entry, a linked chain of up to 16 entries, or a multishot
/// request. Its address (retained while the engine may use it) is the `user_data` of its first
/// entry; entry `i` of a chain carries `address + i` (records are 16-byte aligned). The record
/// is released only after its last completion has been reaped, so the address cannot be reused
/// while a completion or a cancel can still name it.
///
/// Every field is touched only on the executor's loop thread, except `continuation`, which the
/// awaiting task sets before the submission request is enqueued (the queue's lock, or running on
/// the loop thread itself, orders it).
final class Operation: @unchecked Sendable {
    var continuation: UnsafeContinuation<Int32, Never>?
    var entry: SubmissionEntry
    /// Entries after `entry` in a linked chain (the caller set `.link` on all but the last).
    var chain: [SubmissionEntry] = []
    /// Chain results by position, filled as completions arrive.
    var results: [Int32] = []
    /// Completions still expected before the task resumes.
    var pending = 1
    /// Multishot: called on the loop thread with each completion's result and flags. The task
    /// (if any) resumes with the last one, which lacks `CQEFlags.more`.
    var onEach: ((Int32, UInt32) -> Void)?
    /// A `Task.sleep` timer armed through the scheduling hooks: shutdown fires these at once
    /// instead of waiting for them (the sleeping task resumes early).
    var isSchedulerTimer = false
    /// For a scheduler timer: the sleeping task (retained), watched for cancellation.
    var sleepingTask: UnsafeMutableRawPointer?
    /// A multishot stream's request: shutdown cancels it when it starts, instead of waiting.
    var endsAtShutdown = false
    /// Set on the loop when a cancel request arrives.
    var cancelRequested = false
    /// Handed to the engine: completions will come.
    var submitted = false
    /// Its task has been resumed.
    var completed = false
    /// Stored (release) by the loop just before it resumes the task, loaded (acquire) by the task
    /// right after: the explicit edge that orders the loop's writes (results, flags) before the
    /// task's reads, visible to ThreadSanitizer, which cannot see through a continuation.
    let handoff = Atomic<Bool>(false)

    init(_ entry: SubmissionEntry) {
        self.entry = entry
    }

    /// Number of entries: 1, or the chain's length.
    var entryCount: Int { 1 + chain.count }

    /// The `user_data` that names this record. Values 0…15 are reserved for the engines.
    var token: UInt64 { UInt64(UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque())) }

    /// Splits a completion's `user_data` into its record and the entry's position in a chain.
    static func from(token: UInt64) -> (Unmanaged<Operation>, Int) {
        let base = token & ~UInt64(Operation.maximumChain - 1)
        let record = Unmanaged<Operation>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(base))!)
        return (record, Int(token - base))
    }

    /// The longest chain whose positions fit in an address's alignment bits.
    static let maximumChain = 16
}
