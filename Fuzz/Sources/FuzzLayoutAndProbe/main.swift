// Target 5 (of the list): probe replies and io_uring_params. Arbitrary bytes as an
// IORING_REGISTER_PROBE reply must decode without reading out of bounds (ASan watches); arbitrary
// parameters must either be rejected or describe mappings that contain every word the ring uses.
import FuzzSupport
import Glibc
import Ring

exit(runFuzzer { data, size in fuzzLayoutAndProbe(UnsafeRawPointer(data), size) })

/// The symbol libFuzzer's own tools look for; the driver above calls the same function.
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafeRawPointer?, _ size: Int) -> Int32 {
    fuzzLayoutAndProbe(data, size)
}

func fuzzLayoutAndProbe(_ data: UnsafeRawPointer?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let selector: UInt8 = input.next()
    if selector & 1 == 0 {
        let reply = input.rest()
        // Copy into an exactly sized allocation so any over-read is caught.
        let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: reply.count, alignment: 8)
        defer { copy.deallocate() }
        copy.copyMemory(from: reply)
        let (last, ops) = Probe.parseProbeReply(UnsafeRawBufferPointer(copy))
        check(reply.count >= 16 || (last == 0 && ops.isEmpty), "short reply produced results")
        if reply.count >= 16 {
            check(last == Int(reply[0]), "last_op decode")
            let listed = min(Int(reply[1]), (reply.count - 16) / 8)
            let claimed = (0..<listed).filter { reply[16 + 8 * $0 + 2] & 1 != 0 }.map { reply[16 + 8 * $0] }
            check(ops == Set(claimed), "supported set differs from the reply")
        }
        return 0
    }
    var p = RingParameters()
    p.sqEntries = input.next(); p.cqEntries = input.next(); p.flags = input.next(); p.features = input.next()
    p.sqOffsets.head = input.next(); p.sqOffsets.tail = input.next(); p.sqOffsets.ringMask = input.next()
    p.sqOffsets.ringEntries = input.next(); p.sqOffsets.flags = input.next(); p.sqOffsets.dropped = input.next()
    p.sqOffsets.array = input.next()
    p.cqOffsets.head = input.next(); p.cqOffsets.tail = input.next(); p.cqOffsets.ringMask = input.next()
    p.cqOffsets.ringEntries = input.next(); p.cqOffsets.overflow = input.next(); p.cqOffsets.cqes = input.next()
    p.cqOffsets.flags = input.next()
    guard let layout = try? RingLayout(p) else { return 0 }
    check(layout.sqEntries > 0 && layout.sqEntries & (layout.sqEntries - 1) == 0, "sq entries accepted: \(layout.sqEntries)")
    check(layout.cqEntries > 0 && layout.cqEntries & (layout.cqEntries - 1) == 0, "cq entries accepted: \(layout.cqEntries)")
    let sqWords = [p.sqOffsets.head, p.sqOffsets.tail, p.sqOffsets.ringMask, p.sqOffsets.ringEntries,
                   p.sqOffsets.flags, p.sqOffsets.dropped]
    for w in sqWords { check(Int(w) + 4 <= layout.sqRingSize && w % 4 == 0, "sq word \(w) outside \(layout.sqRingSize)") }
    let cqWords = [p.cqOffsets.head, p.cqOffsets.tail, p.cqOffsets.ringMask, p.cqOffsets.ringEntries,
                   p.cqOffsets.overflow, p.cqOffsets.flags]
    for w in cqWords { check(Int(w) + 4 <= layout.cqRingSize && w % 4 == 0, "cq word \(w) outside \(layout.cqRingSize)") }
    check(Int(p.cqOffsets.cqes) + Int(layout.cqEntries) * layout.cqeSize <= layout.cqRingSize, "cqes outside the CQ mapping")
    if layout.hasSQArray {
        check(Int(p.sqOffsets.array) + Int(layout.sqEntries) * 4 <= layout.sqRingSize, "array outside the SQ mapping")
        check(sqWords.allSatisfy { Int($0) + 4 <= Int(p.sqOffsets.array) }, "array overlaps the header")
    }
    check(layout.sqesSize == Int(layout.sqEntries) * layout.sqeSize, "SQE array size")
    return 0
}
