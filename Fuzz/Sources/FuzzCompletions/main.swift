// Target 3: completion decoding. Arbitrary CQE bytes (flags, buffer ids, F_MORE, 32-byte and
// mixed-size entries, any user data) in a simulated CQ: draining must deliver exactly what a
// model of the format says, in order, never read past the tail, and leave the head at the tail.
import FuzzSupport
import Glibc
@testable import Ring

exit(runFuzzer { data, size in fuzzCompletions(UnsafeRawPointer(data), size) })

/// The symbol libFuzzer's own tools look for; the driver above calls the same function.
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafeRawPointer?, _ size: Int) -> Int32 {
    fuzzCompletions(data, size)
}

func fuzzCompletions(_ data: UnsafeRawPointer?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    let mode: UInt8 = input.next()
    let big = mode % 3 == 1  // CQE32
    let mixed = mode % 3 == 2  // CQE_MIXED
    let entries = UInt32(1) << (1 + input.next(UInt8.self) % 6)  // 2 ... 64
    let start: UInt32 = input.next()
    var p = RingParameters()
    p.sqEntries = 1
    p.cqEntries = entries
    p.features = Features.singleMmap.rawValue
    p.flags = big ? SetupFlags.cqe32.rawValue : 0
    p.sqOffsets.tail = 4; p.sqOffsets.ringMask = 8; p.sqOffsets.ringEntries = 12; p.sqOffsets.flags = 16
    p.sqOffsets.dropped = 20; p.sqOffsets.array = 24
    p.cqOffsets.head = 32; p.cqOffsets.tail = 36; p.cqOffsets.ringMask = 40; p.cqOffsets.ringEntries = 44
    p.cqOffsets.overflow = 48; p.cqOffsets.flags = 52; p.cqOffsets.cqes = 64
    guard let layout = try? RingLayout(p) else { fatalError("valid parameters rejected") }
    let memory = UnsafeMutableRawPointer.allocate(byteCount: layout.cqRingSize, alignment: 64)
    memory.initializeMemory(as: UInt8.self, repeating: 0, count: layout.cqRingSize)
    defer { memory.deallocate() }
    let slotSize = big ? 32 : 16
    // Publish up to `entries` slots of fuzzer bytes.
    let published = UInt32(input.next(UInt8.self)) % (entries + 1)
    for i in 0..<published {
        let slot = memory + 64 + Int((start &+ i) & (entries - 1)) * slotSize
        for b in 0..<slotSize { slot.storeBytes(of: input.next(UInt8.self), toByteOffset: b, as: UInt8.self) }
    }
    memory.storeBytes(of: start, toByteOffset: 32, as: UInt32.self)
    memory.storeBytes(of: start &+ published, toByteOffset: 36, as: UInt32.self)

    // The model: walk the published slots the way the format defines them.
    var model: [(UInt64, Int32, UInt32, UInt64, UInt64)] = []
    var index: UInt32 = 0
    while index < published {
        let slot = memory + 64 + Int((start &+ index) & (entries - 1)) * slotSize
        let flags = slot.load(fromByteOffset: 12, as: UInt32.self)
        var extra = (UInt64(0), UInt64(0))
        var width: UInt32 = 1
        if big {
            extra = (slot.load(fromByteOffset: 16, as: UInt64.self), slot.load(fromByteOffset: 24, as: UInt64.self))
        } else if mixed && flags & CQEFlags.big.rawValue != 0 && published - index >= 2 {
            let next = memory + 64 + Int((start &+ index &+ 1) & (entries - 1)) * slotSize
            extra = (next.load(as: UInt64.self), next.load(fromByteOffset: 8, as: UInt64.self))
            width = 2
        }
        index += width
        if mixed && flags & CQEFlags.skip.rawValue != 0 { continue }
        model.append((slot.load(as: UInt64.self), slot.load(fromByteOffset: 8, as: Int32.self), flags, extra.0, extra.1))
    }

    var cq = CompletionQueue(ring: memory, layout: layout, mixed: mixed)
    var got: [Completion] = []
    while true {
        let limit = Int(input.next(UInt8.self) % 8) + 1
        let n = cq.drain(limit: limit) { got.append($0) }
        check(n <= limit, "drain delivered more than its limit")
        if n == 0 { break }
    }
    check(got.count == model.count, "delivered \(got.count), model \(model.count)")
    for (c, m) in zip(got, model) {
        check(c.userData == m.0 && c.result == m.1 && c.rawFlags == m.2 && c.extra1 == m.3 && c.extra2 == m.4,
              "completion differs from its slot")
        // Decoding helpers agree with the raw flags.
        check((c.bufferID != nil) == (m.2 & CQEFlags.buffer.rawValue != 0), "bufferID presence")
        if let id = c.bufferID { check(UInt32(id) == m.2 >> 16, "buffer id decode") }
        check(c.hasMore == (m.2 & CQEFlags.more.rawValue != 0), "F_MORE decode")
    }
    check(memory.load(fromByteOffset: 32, as: UInt32.self) == start &+ published, "head not at tail after draining")
    return 0
}
