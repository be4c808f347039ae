import CKernelHeader
import Testing

@testable import RingExec

/// The libaio engine's control block and event, and FileStatus's statx offsets, against the
/// system's <linux/aio_abi.h> and <linux/stat.h>.
@Suite(.timeLimit(.minutes(3))) struct AIOABITests {
    static let header: [String: UInt64] = {
        var count = 0
        let entries = kh_aio_stat_layout(&count)!
        var table: [String: UInt64] = [:]
        for i in 0..<count { table[String(cString: entries[i].name)] = entries[i].value }
        return table
    }()

    @Test func controlBlockMatchesTheKernel() {
        let h = Self.header
        #expect(UInt64(MemoryLayout<AIOControlBlock>.size) == h["sizeof iocb"])
        let fields: [(String, PartialKeyPath<AIOControlBlock>)] = [
            ("aio_data", \.data), ("aio_key", \.key), ("aio_rw_flags", \.rwFlags), ("aio_lio_opcode", \.opcode),
            ("aio_reqprio", \.priority), ("aio_fildes", \.fd), ("aio_buf", \.buffer), ("aio_nbytes", \.bytes),
            ("aio_offset", \.offset), ("aio_flags", \.flags), ("aio_resfd", \.resultFD),
        ]
        for (name, path) in fields {
            #expect(MemoryLayout<AIOControlBlock>.offset(of: path).map(UInt64.init) == h["iocb.\(name)"], "\(name)")
        }
        #expect(UInt64(MemoryLayout<AIOEvent>.size) == h["sizeof io_event"])
        #expect(MemoryLayout<AIOEvent>.offset(of: \.result).map(UInt64.init) == h["io_event.res"])
        #expect(UInt64(AIOControlBlock.commandRead) == h["IOCB_CMD_PREAD"])
        #expect(UInt64(AIOControlBlock.commandWrite) == h["IOCB_CMD_PWRITE"])
        #expect(UInt64(AIOControlBlock.commandFsync) == h["IOCB_CMD_FSYNC"])
        #expect(UInt64(AIOControlBlock.commandFdatasync) == h["IOCB_CMD_FDSYNC"])
        #expect(UInt64(AIOControlBlock.commandPoll) == h["IOCB_CMD_POLL"])
        #expect(UInt64(AIOControlBlock.commandReadv) == h["IOCB_CMD_PREADV"])
        #expect(UInt64(AIOControlBlock.commandWritev) == h["IOCB_CMD_PWRITEV"])
        #expect(UInt64(AIOControlBlock.flagResultFD) == h["IOCB_FLAG_RESFD"])
    }

    /// FileStatus decodes at these byte offsets (see its initializer).
    @Test func statxOffsetsMatchTheKernel() {
        let h = Self.header
        #expect(h["sizeof statx"] == UInt64(FileStatus.byteCount))
        let expected: [String: UInt64] = [
            "stx_mask": 0, "stx_blksize": 4, "stx_nlink": 16, "stx_uid": 20, "stx_gid": 24, "stx_mode": 28,
            "stx_ino": 32,
            "stx_size": 40, "stx_blocks": 48, "stx_mtime": 112,
        ]
        for (name, offset) in expected { #expect(h["statx.\(name)"] == offset, "\(name)") }
        #expect(h["STATX_BASIC_STATS"] == UInt64(FileStatus.basicMask))
    }
}
