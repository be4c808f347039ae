import Ring

/// One awaited ring operation. Its address (retained while the kernel may use it) is the
/// request's `user_data`: the record is released only after its completion has been reaped, so
/// the address cannot be reused while a completion or a cancel for it can still arrive.
///
/// Every field is touched only on the executor's loop thread, except `continuation`, which is set
/// by the awaiting task before the submission request is enqueued (the queue's lock orders it).
final class Operation: @unchecked Sendable {
    var continuation: UnsafeContinuation<Int32, Never>?
    var entry: SubmissionEntry
    /// Set on the loop when a cancel request arrives.
    var cancelRequested = false
    /// Pushed into the SQ: a completion will come.
    var submitted = false
    /// Its task has been resumed.
    var completed = false

    init(_ entry: SubmissionEntry) {
        self.entry = entry
    }

    /// The `user_data` that names this record. Values 0…15 are reserved for the executor itself.
    var token: UInt64 { UInt64(UInt(bitPattern: Unmanaged.passUnretained(self).toOpaque())) }

    static func from(token: UInt64) -> Unmanaged<Operation> {
        Unmanaged<Operation>.fromOpaque(UnsafeRawPointer(bitPattern: UInt(token))!)
    }
}

/// Reserved `user_data` values (operation records are heap addresses, never this small).
enum ReservedToken {
    /// The armed eventfd read that wakes the loop.
    static let wake: UInt64 = 1
    /// Cancel requests: their own completions carry nothing we need.
    static let cancel: UInt64 = 2
    static let limit: UInt64 = 16
}
