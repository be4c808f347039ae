public import Synchronization

/// The application's view of the mapped submission queue.
///
/// Ownership of the words (see io_uring(7), "Submission queue"):
/// - `head` is written only by the kernel as it consumes entries; we load it with acquire
///   ordering, so the kernel's reads of a slot happen before we overwrite that slot.
/// - `tail` is written only by us; a release store publishes every SQE written before it.
/// - `flags` (`IORING_SQ_*`) and `dropped` are written only by the kernel.
/// Indices are free-running `UInt32` counters; a slot is `index & mask`, and every difference
/// of two indices uses wrapping arithmetic, so the queue works across the 2^32 wrap.
@usableFromInline
struct SubmissionQueue {
    @usableFromInline let head: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline let tail: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline let flags: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline let dropped: UnsafeMutablePointer<Atomic<UInt32>>
    @usableFromInline let entries: UnsafeMutableRawPointer
    @usableFromInline let mask: UInt32
    @usableFromInline let capacity: UInt32
    /// log2 of the entry size: 6 (64 bytes) or 7 (`SQE128`).
    @usableFromInline let entryShift: UInt32
    /// Entries handed out so far: the tail we will publish at the next flush. Only we touch it.
    @usableFromInline var localTail: UInt32
    /// The tail value last stored to the shared word, to skip redundant stores.
    @usableFromInline var publishedTail: UInt32

    init(ring: UnsafeMutableRawPointer, sqes: UnsafeMutableRawPointer, layout: RingLayout) {
        let o = layout.sqOffsets
        let word = { (offset: UInt32) in sharedWord(ring, offset) }
        head = word(o.head)
        tail = word(o.tail)
        flags = word(o.flags)
        dropped = word(o.dropped)
        entries = sqes
        capacity = layout.sqEntries
        mask = layout.sqEntries - 1
        entryShift = layout.sqeSize == 128 ? 7 : 6
        // The kernel starts both counters at 0, but read them anyway: nothing else may touch
        // them before the ring is ours, so a relaxed load is enough.
        localTail = tail.pointee.load(ordering: .relaxed)
        publishedTail = localTail
        if layout.hasSQArray {
            // With an index array, slot i of the array names the SQE the kernel reads next. We
            // always fill SQEs in ring order, so the identity map is written once, here, before
            // any tail store can publish it.
            let array = (ring + Int(o.array)).bindMemory(to: UInt32.self, capacity: Int(capacity))
            for i in 0..<capacity { array[Int(i)] = i }
        }
    }

    /// Entries handed out but not yet consumed by the kernel.
    @inlinable var pending: UInt32 {
        // Acquire pairs with the kernel's release of `head` after it has read the entries.
        localTail &- head.pointee.load(ordering: .acquiring)  // wrapping: indices are free-running
    }

    /// Free slots.
    @inlinable var space: UInt32 { capacity &- pending }

    /// The next free slot, or nil when the queue is full. The caller must write the whole entry.
    @inlinable
    mutating func nextSlot() -> UnsafeMutableRawPointer? {
        guard pending < capacity else { return nil }
        let slot = entries + Int((localTail & mask) << entryShift)
        localTail &+= 1  // wrapping: the counter is free-running
        return slot
    }

    /// Publishes every entry handed out so far; returns how many the kernel has yet to consume.
    @inlinable
    mutating func flush() -> UInt32 {
        if localTail != publishedTail {
            // Release: our SQE stores become visible to the kernel before the new tail does.
            tail.pointee.store(localTail, ordering: .releasing)
            publishedTail = localTail
        }
        return pending
    }

    /// The kernel-written `IORING_SQ_*` flags. Relaxed: callers that act on `NEED_WAKEUP` place
    /// the full fence themselves; the others only use the flags as a hint to enter the kernel.
    @inlinable var ringFlags: SQRingFlags {
        SQRingFlags(rawValue: flags.pointee.load(ordering: .relaxed))
    }
}

/// A 32-bit word of the shared ring mapping, viewed as an atomic. `RingLayout` has already checked
/// that `offset` is aligned and inside the mapping.
func sharedWord(_ base: UnsafeMutableRawPointer, _ offset: UInt32) -> UnsafeMutablePointer<Atomic<UInt32>> {
    (base + Int(offset)).bindMemory(to: Atomic<UInt32>.self, capacity: 1)
}
