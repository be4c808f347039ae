/// The memory layout of a ring, derived from the parameters the kernel returned from setup.
///
/// Pure arithmetic, no kernel: it decides how much to map and proves that every offset the kernel
/// gave lies inside the mapping before any pointer is made from it. Inconsistent parameters (an
/// offset past the end, entries that are not a power of two, a mask that does not match) are
/// rejected with `RingLayout.Invalid`, so a bad reply can never turn into a wild pointer.
public struct RingLayout: Equatable, Sendable {
    /// `IORING_OFF_SQ_RING`: mmap offset of the SQ ring (and of both rings with single mmap).
    public static let sqRingMmapOffset: Int64 = 0
    /// `IORING_OFF_CQ_RING`: mmap offset of the CQ ring.
    public static let cqRingMmapOffset: Int64 = 0x800_0000
    /// `IORING_OFF_SQES`: mmap offset of the SQE array.
    public static let sqesMmapOffset: Int64 = 0x1000_0000

    /// Submission queue entries, as the kernel sized the ring.
    public var sqEntries: UInt32
    /// Completion queue entries, as the kernel sized the ring.
    public var cqEntries: UInt32
    /// 64, or 128 with `IORING_SETUP_SQE128`.
    public var sqeSize: Int
    /// 16, or 32 with `IORING_SETUP_CQE32`.
    public var cqeSize: Int
    /// Bytes to map at `sqRingMmapOffset` (covers both rings when `singleMmap`).
    public var sqRingSize: Int
    /// Bytes to map at `cqRingMmapOffset`; unused when `singleMmap`.
    public var cqRingSize: Int
    /// Bytes to map at `sqesMmapOffset`.
    public var sqesSize: Int
    /// Both rings live in the one mapping (`IORING_FEAT_SINGLE_MMAP`).
    public var singleMmap: Bool
    /// The SQ has an index array (`IORING_SETUP_NO_SQARRAY` not set).
    public var hasSQArray: Bool
    /// Where the SQ ring fields are, as the kernel reported them.
    public var sqOffsets: SQRingOffsets
    /// Where the CQ ring fields are, as the kernel reported them.
    public var cqOffsets: CQRingOffsets

    /// Why a set of parameters cannot describe a usable ring.
    public struct Invalid: Error, Equatable, Sendable, CustomStringConvertible {
        /// Which offset or size is out of range, and its value.
        public var description: String
    }

    /// Checks the kernel's answer to `io_uring_setup` before any pointer is made from it.
    /// - Throws: `Invalid` when an offset or size does not fit the mapping it points into.
    public init(_ p: RingParameters) throws(Invalid) {
        let setup = SetupFlags(rawValue: p.flags)
        let features = Features(rawValue: p.features)
        guard p.sqEntries > 0, p.sqEntries & (p.sqEntries - 1) == 0 else {
            throw Invalid(description: "sq_entries \(p.sqEntries) is not a power of two")
        }
        guard p.cqEntries > 0, p.cqEntries & (p.cqEntries - 1) == 0 else {
            throw Invalid(description: "cq_entries \(p.cqEntries) is not a power of two")
        }
        sqEntries = p.sqEntries
        cqEntries = p.cqEntries
        sqeSize = setup.contains(.sqe128) ? 128 : 64
        cqeSize = setup.contains(.cqe32) ? 32 : 16
        hasSQArray = !setup.contains(.noSQArray)
        singleMmap = features.contains(.singleMmap)
        sqOffsets = p.sqOffsets
        cqOffsets = p.cqOffsets

        // Sizes in Int (64-bit): entries ≤ 2^31 and sizes ≤ 128, so no product overflows.
        // The SQ index array ends the SQ mapping. Without it (NO_SQARRAY) the SQ words live in
        // the same kernel structure as the CQ, so the CQ's extent bounds them.
        var cqSize = Int(p.cqOffsets.cqes) + Int(p.cqEntries) * cqeSize
        var sqSize = hasSQArray ? Int(p.sqOffsets.array) + Int(p.sqEntries) * 4 : cqSize
        if singleMmap {
            sqSize = max(sqSize, cqSize)
            cqSize = sqSize
        }
        sqRingSize = sqSize
        cqRingSize = cqSize
        sqesSize = Int(p.sqEntries) * sqeSize

        // Every 32-bit word the ring code touches must lie inside its mapping, 4-byte aligned.
        let sqWords: [(String, UInt32)] = [
            ("sq head", p.sqOffsets.head), ("sq tail", p.sqOffsets.tail),
            ("sq ring_mask", p.sqOffsets.ringMask), ("sq ring_entries", p.sqOffsets.ringEntries),
            ("sq flags", p.sqOffsets.flags), ("sq dropped", p.sqOffsets.dropped),
        ]
        for (name, offset) in sqWords {
            try Self.checkWord(name, offset, within: sqRingSize)
        }
        if hasSQArray {
            try Self.checkWord("sq array", p.sqOffsets.array, within: sqRingSize)
            // The index array follows the ring header; one that overlaps a header word would
            // have us overwrite head or tail when we fill it.
            let headerEnd = sqWords.map { Int($0.1) + 4 }.max() ?? 0
            guard Int(p.sqOffsets.array) >= headerEnd else {
                throw Invalid(description: "sq array offset \(p.sqOffsets.array) overlaps the ring header")
            }
        }
        let cqWords: [(String, UInt32)] = [
            ("cq head", p.cqOffsets.head), ("cq tail", p.cqOffsets.tail),
            ("cq ring_mask", p.cqOffsets.ringMask), ("cq ring_entries", p.cqOffsets.ringEntries),
            ("cq overflow", p.cqOffsets.overflow), ("cq flags", p.cqOffsets.flags),
        ]
        for (name, offset) in cqWords {
            try Self.checkWord(name, offset, within: cqRingSize)
        }
        guard p.cqOffsets.cqes % 8 == 0 else {
            throw Invalid(description: "cqes offset \(p.cqOffsets.cqes) is not 8-byte aligned")
        }
    }

    private static func checkWord(_ name: String, _ offset: UInt32, within size: Int) throws(Invalid) {
        guard offset % 4 == 0 else {
            throw Invalid(description: "\(name) offset \(offset) is not 4-byte aligned")
        }
        guard Int(offset) + 4 <= size else {
            throw Invalid(description: "\(name) offset \(offset) lies outside the \(size)-byte mapping")
        }
    }

    /// Checks the values the kernel wrote into the mapped ring against the parameters.
    func checkMappedValues(sqMask: UInt32, sqCount: UInt32, cqMask: UInt32, cqCount: UInt32) throws(Invalid) {
        guard sqCount == sqEntries, sqMask == sqEntries - 1 else {
            throw Invalid(description: "SQ ring says \(sqCount) entries, mask \(sqMask); setup said \(sqEntries)")
        }
        guard cqCount == cqEntries, cqMask == cqEntries - 1 else {
            throw Invalid(description: "CQ ring says \(cqCount) entries, mask \(cqMask); setup said \(cqEntries)")
        }
    }
}
