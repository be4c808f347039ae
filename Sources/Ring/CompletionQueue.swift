public import Synchronization

/// The application's view of the mapped completion queue.
///
/// Ownership of the words (io_uring(7), "Completion queue"):
/// - `tail` is written only by the kernel after it has filled a CQE; we load it with acquire
///   ordering so the CQE contents are visible before we read them.
/// - `head` is written only by us; a release store tells the kernel we are done reading every
///   slot before it, so it may reuse them.
/// - `overflow` counts completions dropped for lack of space (kernels without NODROP only).
/// - `flags` (`IORING_CQ_*`) is written by us.
@usableFromInline
struct CompletionQueue {
    @usableFromInline let head: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline let tail: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline let overflow: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline let flags: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline let entries: UnsafeMutableRawPointer
    @usableFromInline let mask: UInt32
    @usableFromInline let capacity: UInt32
    /// log2 of the entry size: 4 (16 bytes) or 5 (`CQE32`).
    @usableFromInline let entryShift: UInt32
    /// `IORING_SETUP_CQE_MIXED`: entries flagged `IORING_CQE_F_32` take two slots.
    @usableFromInline let mixed: Bool

    init(ring: UnsafeMutableRawPointer, layout: RingLayout, mixed: Bool) {
        let o = layout.cqOffsets
        let word = { (offset: UInt32) in sharedWord(ring, offset) }
        head = word(o.head)
        tail = word(o.tail)
        overflow = word(o.overflow)
        flags = word(o.flags)
        entries = ring + Int(o.cqes)
        capacity = layout.cqEntries
        mask = layout.cqEntries - 1
        entryShift = layout.cqeSize == 32 ? 5 : 4
        self.mixed = mixed
    }

    /// Completions ready to read.
    @inlinable var ready: UInt32 {
        // Acquire pairs with the kernel's release of `tail` after writing the CQEs.
        tail.pointee.load(ordering: .acquiring) &- head.pointee.load(ordering: .relaxed)  // wrapping
    }

    /// Reads up to `limit` completions in place, in order, and stores the head once at the end.
    /// Only the slots between head and the acquired tail are read: reading past the tail is
    /// impossible by construction.
    @inlinable
    mutating func drain(limit: Int, _ body: (Completion) -> Void) -> Int {
        // Relaxed: only this thread writes `head`.
        var index = head.pointee.load(ordering: .relaxed)
        let end = tail.pointee.load(ordering: .acquiring)
        var remaining = end &- index  // wrapping: slots the kernel has published
        var delivered = 0
        while remaining > 0 && delivered < limit {
            let slot = entries + Int((index & mask) << entryShift)
            let userData = slot.load(as: UInt64.self)
            let result = slot.load(fromByteOffset: 8, as: Int32.self)
            let rawFlags = slot.load(fromByteOffset: 12, as: UInt32.self)
            var completion = Completion(userData: userData, result: result, flags: rawFlags)
            var width: UInt32 = 1
            if entryShift == 5 {
                completion.extra1 = slot.load(fromByteOffset: 16, as: UInt64.self)
                completion.extra2 = slot.load(fromByteOffset: 24, as: UInt64.self)
            } else if mixed && rawFlags & CQEFlags.big.rawValue != 0 && remaining >= 2 {
                // A 32-byte entry in a mixed ring spans this slot and the next (never wraps:
                // the kernel pads with a SKIP entry instead).
                width = 2
                let next = entries + Int(((index &+ 1) & mask) << entryShift)  // wrapping index
                completion.extra1 = next.load(as: UInt64.self)
                completion.extra2 = next.load(fromByteOffset: 8, as: UInt64.self)
            }
            index &+= width  // wrapping: free-running index
            remaining -= width
            if mixed && rawFlags & CQEFlags.skip.rawValue != 0 { continue }  // padding, no request
            body(completion)
            delivered += 1
        }
        // Release: our loads of the slots above complete before the kernel may overwrite them.
        head.pointee.store(index, ordering: .releasing)
        return delivered
    }

    /// Completions the kernel dropped because the CQ was full (only without `IORING_FEAT_NODROP`).
    @inlinable var droppedCount: UInt32 { overflow.pointee.load(ordering: .relaxed) }
}
