import Glibc
import Ring
import Synchronization

/// Memory the executor lends the kernel for its own calls (`read(upTo:)`, `write(bytes:)`,
/// socket addresses, timeouts), with a debugging mode that catches the kernel touching it after
/// it was released.
///
/// Normally this is `malloc` and `free`. With `SWIFT_RING_GUARD_MEMORY=1` in the environment (or
/// `GuardedMemory.enabled` set by a test) every block gets pages of its own; when released, it is
/// filled with a canary byte, made `PROT_NONE` and parked instead of freed. A late kernel copy
/// from or to it then fails with `EFAULT` (the kernel's copy routines check the protection) or
/// faults in user space, and a late DMA write (O_DIRECT into pages the kernel pinned before the
/// protection changed) is caught when the parked block's canary is checked. The oldest parked
/// blocks are checked and unmapped once more than `parkLimit` wait; `checkParked()` checks all.
///
/// Off, it costs one relaxed atomic load per allocation.
enum GuardedMemory {
    /// Read once from the environment; tests may switch it (blocks allocated while it was on are
    /// still released the guarded way).
    static let enabled = Atomic<Bool>(getenv("SWIFT_RING_GUARD_MEMORY").map { String(cString: $0) != "0" } ?? false)
    /// Canary bytes found changed in parked blocks: a write that came after the release.
    static let lateWrites = Atomic<Int>(0)
    static let parkLimit = 4096
    static let canary: UInt8 = 0xA5

    private static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))
    private static let lock = Lock()
    /// Guarded blocks in use (their base addresses), to tell them apart from malloc'd ones.
    nonisolated(unsafe) private static var live: Set<UInt> = []
    /// Released blocks, oldest first.
    nonisolated(unsafe) private static var parked: [UnsafeMutableRawBufferPointer] = []

    /// `byteCount` bytes (at least 1) aligned to `alignment` (at most a page).
    static func allocate(byteCount: Int, alignment: Int = 16) -> UnsafeMutableRawBufferPointer {
        guard enabled.load(ordering: .relaxed) else {
            return .allocate(byteCount: max(byteCount, 1), alignment: alignment)
        }
        let size = (max(byteCount, 1) + pageSize - 1) / pageSize * pageSize
        guard let base = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
            base != MAP_FAILED
        else {
            return .allocate(byteCount: max(byteCount, 1), alignment: alignment)  // out of maps: plain
        }
        lock.withLock { _ = live.insert(UInt(bitPattern: base)) }
        return UnsafeMutableRawBufferPointer(start: base, count: max(byteCount, 1))
    }

    /// Releases a block from `allocate`; call it only once the kernel is done with it.
    static func release(_ block: UnsafeMutableRawBufferPointer) {
        guard let base = block.baseAddress else { return }
        let guarded = lock.withLock { live.remove(UInt(bitPattern: base)) != nil }
        guard guarded else {
            block.deallocate()
            return
        }
        let size = (block.count + pageSize - 1) / pageSize * pageSize
        let pages = UnsafeMutableRawBufferPointer(start: base, count: size)
        pages.initializeMemory(as: UInt8.self, repeating: canary)
        mprotect(base, size, PROT_NONE)
        let evicted = lock.withLock { () -> [UnsafeMutableRawBufferPointer] in
            parked.append(pages)
            guard parked.count > parkLimit else { return [] }
            let oldest = Array(parked.prefix(parked.count - parkLimit))
            parked.removeFirst(oldest.count)
            return oldest
        }
        for pages in evicted { check(pages) }
    }

    /// Checks and unmaps every parked block; returns how many of them had been written to after
    /// their release (also added to `lateWrites`).
    @discardableResult
    static func checkParked() -> Int {
        let all = lock.withLock { () -> [UnsafeMutableRawBufferPointer] in
            defer { parked.removeAll() }
            return parked
        }
        return all.reduce(0) { $0 + (check($1) ? 1 : 0) }
    }

    /// Whether the block's canary was disturbed; unmaps it.
    @discardableResult
    private static func check(_ pages: UnsafeMutableRawBufferPointer) -> Bool {
        mprotect(pages.baseAddress, pages.count, PROT_READ)
        let disturbed = pages.contains { $0 != canary }
        if disturbed { lateWrites.add(1, ordering: .relaxed) }
        munmap(pages.baseAddress, pages.count)
        return disturbed
    }
}
