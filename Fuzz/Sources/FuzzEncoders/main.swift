// Target 2: encoders. Arbitrary arguments go through the encoders; every field is read back and
// compared with where io_uring_enter(2) says the kernel looks for it, and fields the opcode does
// not use must stay zero.
import FuzzSupport
import Glibc
import Ring
import SystemPackage

exit(runFuzzer { data, size in fuzzEncoders(UnsafeRawPointer(data), size) })

/// The symbol libFuzzer's own tools look for; the driver above calls the same function.
@_cdecl("LLVMFuzzerTestOneInput")
public func testOneInput(_ data: UnsafeRawPointer?, _ size: Int) -> Int32 {
    fuzzEncoders(data, size)
}

func fuzzEncoders(_ data: UnsafeRawPointer?, _ size: Int) -> Int32 {
    var input = FuzzInput(data, size)
    while !input.isEmpty {
        let which: UInt8 = input.next()
        let fdValue: Int32 = input.next()
        let fd = FileDescriptor(rawValue: fdValue)
        let a: UInt64 = input.next()
        let b: UInt64 = input.next()
        let n: UInt32 = input.next()
        let f: UInt32 = input.next()
        let small: UInt16 = input.next()
        let pointer = UnsafeMutableRawPointer(bitPattern: UInt(a | 1))!  // never dereferenced
        let e: SubmissionEntry
        // Expected (opcode, fd, off, addr, len, opFlags, ioprio, bufIndex, fileIndex, addr3).
        var want: (UInt8, Int32, UInt64, UInt64, UInt32, UInt32, UInt16, UInt16, UInt32, UInt64)
        switch which % 14 {
        case 0:
            e = .read(fd, into: UnsafeMutableRawBufferPointer(start: pointer, count: Int(n)), offset: b,
                      flags: ReadWriteFlags(rawValue: f))
            want = (22, fdValue, b, UInt64(UInt(bitPattern: pointer)), n, f, 0, 0, 0, 0)
        case 1:
            e = .write(fd, from: UnsafeRawBufferPointer(start: pointer, count: Int(n)), offset: b)
            want = (23, fdValue, b, UInt64(UInt(bitPattern: pointer)), n, 0, 0, 0, 0, 0)
        case 2:
            let vecs = UnsafeBufferPointer<iovec>(start: UnsafePointer(OpaquePointer(pointer)), count: Int(n % 1024))
            e = .readvFixed(fd, vecs, offset: b, bufferIndex: small)
            want = (60, fdValue, b, UInt64(UInt(bitPattern: pointer)), n % 1024, 0, 0, small, 0, 0)
        case 3:
            e = .fsync(fd, flags: FsyncFlags(rawValue: f), offset: b, length: n)
            want = (3, fdValue, b, 0, n, f, 0, 0, 0, 0)
        case 4:
            e = .timeout(UnsafePointer(OpaquePointer(pointer)), completionCount: n, flags: TimeoutFlags(rawValue: f))
            want = (11, -1, UInt64(n), UInt64(UInt(bitPattern: pointer)), 1, f, 0, 0, 0, 0)
        case 5:
            e = .cancel(userData: a, flags: CancelFlags(rawValue: f))
            want = (14, -1, 0, a, 0, f, 0, 0, 0, 0)
        case 6:
            let slot = n % 1000
            e = .socket(domain: fdValue, type: Int32(bitPattern: f), protocol: Int32(bitPattern: n),
                        destination: which & 0x80 != 0 ? .fixedSlot(slot) : .descriptor)
            want = (45, fdValue, UInt64(f), 0, n, 0, 0, 0, which & 0x80 != 0 ? slot + 1 : 0, 0)
        case 7:
            e = .accept(fd, multishot: which & 0x80 != 0, destination: .allocateFixedSlot)
            want = (13, fdValue, 0, 0, 0, 0, which & 0x80 != 0 ? 1 : 0, 0, UInt32.max, 0)
        case 8:
            e = .splice(from: FileDescriptor(rawValue: Int32(bitPattern: f)), offset: a, to: fd, offset: b, length: n)
            want = (30, fdValue, b, a, n, 0, 0, 0, f, 0)
        case 9:
            e = .futexWait(pointer, expected: b, mask: a, futexFlags: f)
            want = (51, Int32(bitPattern: f), b, UInt64(UInt(bitPattern: pointer)), 0, 0, 0, 0, 0, a)
        case 10:
            e = .messageRingSendFile(fd, sourceSlot: n, destination: .fixedSlot(f % 4096), userData: b)
            want = (40, fdValue, b, 1, 0, 0, 0, 0, f % 4096 + 1, UInt64(n))
        case 11:
            e = .recv(fd, bufferGroup: small, flags: Int32(bitPattern: f), options: SendReceiveFlags(rawValue: UInt16(truncatingIfNeeded: n)))
            want = (27, fdValue, 0, 0, 0, f, UInt16(truncatingIfNeeded: n), small, 0, 0)
        case 12:
            e = .provideBuffers(pointer, length: n, count: f, group: small, firstID: UInt16(truncatingIfNeeded: b))
            want = (31, Int32(bitPattern: f), UInt64(UInt16(truncatingIfNeeded: b)), UInt64(UInt(bitPattern: pointer)), n, 0, 0, small, 0, 0)
        default:
            e = .linkat(UnsafePointer(OpaquePointer(pointer)), UnsafePointer(OpaquePointer(pointer)), flags: Int32(bitPattern: f))
            want = (39, -100, UInt64(UInt(bitPattern: pointer)), UInt64(UInt(bitPattern: pointer)), UInt32(bitPattern: -100), f, 0, 0, 0, 0)
        }
        let got = (e.opcode, e.fd, e.off, e.addr, e.len, e.opFlags, e.ioprio, e.bufIndex, e.fileIndex, e.addr3)
        check(flat(got) == flat(want), "encoder \(which % 14): got \(got), want \(want)")
        check(e.personality == 0 && e.pad2 == 0 && e.userData == 0, "reserved field set by encoder \(which % 14)")
        let expectedFlags: UInt8 = (which % 14 == 11) ? SQEFlags.bufferSelect.rawValue : 0
        check(e.flags == expectedFlags, "SQE flags \(e.flags) from encoder \(which % 14)")
        // Flags and user data added afterwards never disturb the encoded fields.
        let tagged = e.userData(a).flags(SQEFlags(rawValue: UInt8(truncatingIfNeeded: f)))
        check(tagged.userData == a && tagged.opcode == e.opcode && tagged.off == e.off, "decorating changed fields")
    }
    return 0
}

typealias Fields = (UInt8, Int32, UInt64, UInt64, UInt32, UInt32, UInt16, UInt16, UInt32, UInt64)

func flat(_ f: Fields) -> [UInt64] {
    [UInt64(f.0), UInt64(UInt32(bitPattern: f.1)), f.2, f.3, UInt64(f.4), UInt64(f.5), UInt64(f.6), UInt64(f.7), UInt64(f.8), f.9]
}
