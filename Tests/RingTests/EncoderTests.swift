import Glibc
import SystemPackage
import Testing

@testable import Ring

/// Tier 1: encoders compared byte for byte with entries written field by field from the kernel's
/// documented layout (io_uring_enter(2) and the uapi header).
@Suite(.timeLimit(.minutes(1))) struct EncoderTests {
    /// The 64 raw bytes of an entry.
    static func bytes(_ e: SubmissionEntry) -> [UInt8] {
        withUnsafeBytes(of: e) { Array($0) }
    }

    /// Builds expected bytes from (offset, value, width) triples on a zeroed 64-byte entry.
    static func golden(_ fields: [(Int, UInt64, Int)]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: 64)
        for (offset, value, width) in fields {
            for i in 0..<width { out[offset + i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
        }
        return out
    }

    @Test func nopIsAllZeroButFd() {
        // NOP carries fd -1 like every fd-less opcode; everything else is zero.
        #expect(Self.bytes(.nop()) == Self.golden([(4, 0xFFFF_FFFF, 4)]))
        #expect(
            Self.bytes(.nop().userData(0x1122_3344_5566_7788))
                == Self.golden([
                    (4, 0xFFFF_FFFF, 4), (32, 0x1122_3344_5566_7788, 8),
                ]))
        #expect(Self.bytes(.nop().flags([.link, .skipSuccess])) == Self.golden([(1, 0x44, 1), (4, 0xFFFF_FFFF, 4)]))
    }

    @Test func readAndWrite() {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { buffer.deallocate() }
        let address = UInt64(UInt(bitPattern: buffer.baseAddress))
        let read = SubmissionEntry.read(FileDescriptor(rawValue: 7), into: buffer, offset: 8192, flags: .noWait)
        #expect(
            Self.bytes(read)
                == Self.golden([
                    (0, 22, 1), (4, 7, 4), (8, 8192, 8), (16, address, 8), (24, 4096, 4), (28, 0x08, 4),
                ]))
        let write = SubmissionEntry.write(
            FileDescriptor(rawValue: 9), from: UnsafeRawBufferPointer(buffer), offset: .max)
        #expect(
            Self.bytes(write)
                == Self.golden([
                    (0, 23, 1), (4, 9, 4), (8, .max, 8), (16, address, 8), (24, 4096, 4),
                ]))
    }

    @Test func vectored() {
        let vecs = UnsafeMutableBufferPointer<iovec>.allocate(capacity: 3)
        defer { vecs.deallocate() }
        let address = UInt64(UInt(bitPattern: vecs.baseAddress))
        let readv = SubmissionEntry.readv(FileDescriptor(rawValue: 3), UnsafeBufferPointer(vecs), offset: 12)
        #expect(Self.bytes(readv) == Self.golden([(0, 1, 1), (4, 3, 4), (8, 12, 8), (16, address, 8), (24, 3, 4)]))
        let writev = SubmissionEntry.writev(
            FileDescriptor(rawValue: 4), UnsafeBufferPointer(vecs), offset: 0, flags: [.dataSync, .append])
        #expect(Self.bytes(writev) == Self.golden([(0, 2, 1), (4, 4, 4), (16, address, 8), (24, 3, 4), (28, 0x12, 4)]))
    }

    @Test func fsync() {
        #expect(Self.bytes(.fsync(FileDescriptor(rawValue: 5))) == Self.golden([(0, 3, 1), (4, 5, 4)]))
        #expect(
            Self.bytes(.fsync(FileDescriptor(rawValue: 5), flags: .dataSync, offset: 4096, length: 512))
                == Self.golden([(0, 3, 1), (4, 5, 4), (8, 4096, 8), (24, 512, 4), (28, 1, 4)]))
    }

    @Test func timeoutsAndCancel() {
        var ts = KernelTimespec(seconds: 1, nanoseconds: 5)
        withUnsafePointer(to: &ts) { p in
            let address = UInt64(UInt(bitPattern: p))
            #expect(
                Self.bytes(.timeout(p, completionCount: 3, flags: [.absolute, .bootTime]))
                    == Self.golden([
                        (0, 11, 1), (4, 0xFFFF_FFFF, 4), (8, 3, 8), (16, address, 8), (24, 1, 4), (28, 5, 4),
                    ]))
            #expect(
                Self.bytes(.linkTimeout(p))
                    == Self.golden([(0, 15, 1), (4, 0xFFFF_FFFF, 4), (16, address, 8), (24, 1, 4)]))
        }
        #expect(
            Self.bytes(.timeoutRemove(target: 99))
                == Self.golden([(0, 12, 1), (4, 0xFFFF_FFFF, 4), (16, 99, 8)]))
        #expect(
            Self.bytes(.cancel(userData: 0xABCD, flags: .all))
                == Self.golden([(0, 14, 1), (4, 0xFFFF_FFFF, 4), (16, 0xABCD, 8), (28, 1, 4)]))
        #expect(
            Self.bytes(.cancel(fd: FileDescriptor(rawValue: 6)))
                == Self.golden([(0, 14, 1), (4, 6, 4), (28, 2, 4)]))
        #expect(Self.bytes(.cancelAny()) == Self.golden([(0, 14, 1), (4, 0xFFFF_FFFF, 4), (28, 5, 4)]))
    }

    @Test func timespecFromDuration() {
        #expect(KernelTimespec(.milliseconds(1500)) == KernelTimespec(seconds: 1, nanoseconds: 500_000_000))
        #expect(KernelTimespec(.seconds(-3)) == KernelTimespec(seconds: 0, nanoseconds: 0))
        #expect(KernelTimespec(.zero) == KernelTimespec(seconds: 0, nanoseconds: 0))
    }

    @Test func completionDecoding() {
        let c = Completion(
            userData: 5, result: -9, flags: CQEFlags.buffer.rawValue | CQEFlags.more.rawValue | (77 << 16))
        #expect(c.bufferID == 77)
        #expect(c.hasMore)
        #expect(c.error == .badFileDescriptor)
        #expect(Completion(userData: 0, result: 3, flags: 7 << 16).bufferID == nil)
    }
}
