import CKernelHeader
import Testing

@testable import Ring

/// Tier 1: the Swift ABI against the system's <linux/io_uring.h> (which is older than the kernel:
/// it defines a subset, and every value it does define must match ours).
@Suite(.timeLimit(.minutes(1))) struct ABITests {
    static func headerTable(_ fetch: (UnsafeMutablePointer<Int>) -> UnsafePointer<kh_entry>?) -> [String: UInt64] {
        var count = 0
        guard let base = fetch(&count) else { return [:] }
        var table: [String: UInt64] = [:]
        for i in 0..<count {
            table[String(cString: base[i].name)] = UInt64(base[i].value)
        }
        return table
    }

    /// Every constant this package names, by kernel name.
    static var ours: [String: UInt64] {
        var table: [String: UInt64] = [:]
        func add<F: KernelFlags>(_: F.Type) {
            for (flag, name) in F.allNamed { table[name] = UInt64(flag.rawValue) }
        }
        for (op, name) in Opcode.allKnown { table[name] = UInt64(op.rawValue) }
        for (op, name) in RegisterOpcode.allKnown { table[name] = UInt64(op.rawValue) }
        add(SQEFlags.self); add(SetupFlags.self); add(EnterFlags.self); add(Features.self)
        add(CQEFlags.self); add(SQRingFlags.self); add(CQRingFlags.self); add(FsyncFlags.self)
        add(TimeoutFlags.self); add(CancelFlags.self)
        table["IORING_CQE_BUFFER_SHIFT"] = UInt64(CQEFlags.bufferIDShift)
        table["IORING_OFF_SQ_RING"] = UInt64(RingLayout.sqRingMmapOffset)
        table["IORING_OFF_CQ_RING"] = UInt64(RingLayout.cqRingMmapOffset)
        table["IORING_OFF_SQES"] = UInt64(RingLayout.sqesMmapOffset)
        return table
    }

    @Test func constantsMatchSystemHeader() {
        let header = Self.headerTable { kh_constants($0) }
        let ours = Self.ours
        #expect(header.count >= 139, "the Debian 12 header defines 139 of these constants")
        for (name, value) in header.sorted(by: { $0.key < $1.key }) {
            #expect(ours[name] == value, "\(name): header \(value), ours \(String(describing: ours[name]))")
        }
    }

    @Test func opcodeTableIsDenseAndComplete() {
        #expect(Opcode.allKnown.count == 63)  // 0 NOP ... 62 PIPE on kernel 6.18
        for (index, entry) in Opcode.allKnown.enumerated() {
            #expect(Int(entry.opcode.rawValue) == index, "\(entry.kernelName) out of order")
        }
        #expect(Opcode.pipe.kernelName == "IORING_OP_PIPE")
        #expect(Opcode(rawValue: 200).kernelName == "IORING_OP_200")
        for (index, entry) in RegisterOpcode.allKnown.enumerated() {
            #expect(Int(entry.opcode.rawValue) == index, "\(entry.kernelName) out of order")
        }
    }

    @Test func layoutMatchesSystemHeader() {
        let h = Self.headerTable { kh_layout($0) }
        typealias S = SubmissionEntry
        let mine: [String: Int?] = [
            "sizeof io_uring_sqe": MemoryLayout<S>.size,
            "io_uring_sqe.opcode": MemoryLayout<S>.offset(of: \.opcode),
            "io_uring_sqe.flags": MemoryLayout<S>.offset(of: \.flags),
            "io_uring_sqe.ioprio": MemoryLayout<S>.offset(of: \.ioprio),
            "io_uring_sqe.fd": MemoryLayout<S>.offset(of: \.fd),
            "io_uring_sqe.off": MemoryLayout<S>.offset(of: \.off),
            "io_uring_sqe.addr2": MemoryLayout<S>.offset(of: \.off),
            "io_uring_sqe.addr": MemoryLayout<S>.offset(of: \.addr),
            "io_uring_sqe.splice_off_in": MemoryLayout<S>.offset(of: \.addr),
            "io_uring_sqe.len": MemoryLayout<S>.offset(of: \.len),
            "io_uring_sqe.rw_flags": MemoryLayout<S>.offset(of: \.opFlags),
            "io_uring_sqe.fsync_flags": MemoryLayout<S>.offset(of: \.opFlags),
            "io_uring_sqe.poll32_events": MemoryLayout<S>.offset(of: \.opFlags),
            "io_uring_sqe.timeout_flags": MemoryLayout<S>.offset(of: \.opFlags),
            "io_uring_sqe.cancel_flags": MemoryLayout<S>.offset(of: \.opFlags),
            "io_uring_sqe.user_data": MemoryLayout<S>.offset(of: \.userData),
            "io_uring_sqe.buf_index": MemoryLayout<S>.offset(of: \.bufIndex),
            "io_uring_sqe.buf_group": MemoryLayout<S>.offset(of: \.bufIndex),
            "io_uring_sqe.personality": MemoryLayout<S>.offset(of: \.personality),
            "io_uring_sqe.splice_fd_in": MemoryLayout<S>.offset(of: \.spliceFdIn),
            "io_uring_sqe.file_index": MemoryLayout<S>.offset(of: \.spliceFdIn),
            "io_uring_sqe.addr3": MemoryLayout<S>.offset(of: \.addr3),
            // The kernel's CQE is the first 16 bytes of our Completion; CompletionQueue reads the
            // fields at these offsets, which this pins.
            "sizeof io_uring_cqe": 16,
            "io_uring_cqe.user_data": 0,
            "io_uring_cqe.res": 8,
            "io_uring_cqe.flags": 12,
            "sizeof io_uring_params": MemoryLayout<RingParameters>.size,
            "io_uring_params.sq_entries": MemoryLayout<RingParameters>.offset(of: \.sqEntries),
            "io_uring_params.cq_entries": MemoryLayout<RingParameters>.offset(of: \.cqEntries),
            "io_uring_params.flags": MemoryLayout<RingParameters>.offset(of: \.flags),
            "io_uring_params.sq_thread_cpu": MemoryLayout<RingParameters>.offset(of: \.sqThreadCPU),
            "io_uring_params.sq_thread_idle": MemoryLayout<RingParameters>.offset(of: \.sqThreadIdle),
            "io_uring_params.features": MemoryLayout<RingParameters>.offset(of: \.features),
            "io_uring_params.wq_fd": MemoryLayout<RingParameters>.offset(of: \.wqFD),
            "io_uring_params.resv": MemoryLayout<RingParameters>.offset(of: \.resv0),
            "io_uring_params.sq_off": MemoryLayout<RingParameters>.offset(of: \.sqOffsets),
            "io_uring_params.cq_off": MemoryLayout<RingParameters>.offset(of: \.cqOffsets),
            "sizeof io_sqring_offsets": MemoryLayout<SQRingOffsets>.size,
            "io_sqring_offsets.head": MemoryLayout<SQRingOffsets>.offset(of: \.head),
            "io_sqring_offsets.tail": MemoryLayout<SQRingOffsets>.offset(of: \.tail),
            "io_sqring_offsets.ring_mask": MemoryLayout<SQRingOffsets>.offset(of: \.ringMask),
            "io_sqring_offsets.ring_entries": MemoryLayout<SQRingOffsets>.offset(of: \.ringEntries),
            "io_sqring_offsets.flags": MemoryLayout<SQRingOffsets>.offset(of: \.flags),
            "io_sqring_offsets.dropped": MemoryLayout<SQRingOffsets>.offset(of: \.dropped),
            "io_sqring_offsets.array": MemoryLayout<SQRingOffsets>.offset(of: \.array),
            "io_sqring_offsets.resv1": MemoryLayout<SQRingOffsets>.offset(of: \.resv1),
            "sizeof io_cqring_offsets": MemoryLayout<CQRingOffsets>.size,
            "io_cqring_offsets.head": MemoryLayout<CQRingOffsets>.offset(of: \.head),
            "io_cqring_offsets.tail": MemoryLayout<CQRingOffsets>.offset(of: \.tail),
            "io_cqring_offsets.ring_mask": MemoryLayout<CQRingOffsets>.offset(of: \.ringMask),
            "io_cqring_offsets.ring_entries": MemoryLayout<CQRingOffsets>.offset(of: \.ringEntries),
            "io_cqring_offsets.overflow": MemoryLayout<CQRingOffsets>.offset(of: \.overflow),
            "io_cqring_offsets.cqes": MemoryLayout<CQRingOffsets>.offset(of: \.cqes),
            "io_cqring_offsets.flags": MemoryLayout<CQRingOffsets>.offset(of: \.flags),
            "io_cqring_offsets.resv1": MemoryLayout<CQRingOffsets>.offset(of: \.resv1),
            "sizeof io_uring_getevents_arg": MemoryLayout<GetEventsArgument>.size,
            "io_uring_getevents_arg.sigmask": MemoryLayout<GetEventsArgument>.offset(of: \.sigmask),
            "io_uring_getevents_arg.sigmask_sz": MemoryLayout<GetEventsArgument>.offset(of: \.sigmaskSize),
            "io_uring_getevents_arg.ts": MemoryLayout<GetEventsArgument>.offset(of: \.timespec),
            "sizeof io_uring_rsrc_update": MemoryLayout<ResourceUpdate>.size,
            "io_uring_rsrc_update.offset": MemoryLayout<ResourceUpdate>.offset(of: \.offset),
            "io_uring_rsrc_update.resv": MemoryLayout<ResourceUpdate>.offset(of: \.resv),
            "io_uring_rsrc_update.data": MemoryLayout<ResourceUpdate>.offset(of: \.data),
        ]
        #expect(h.count == mine.count, "every header layout entry has a Swift counterpart")
        for (name, value) in h.sorted(by: { $0.key < $1.key }) {
            let swiftValue = mine[name] ?? nil
            #expect(
                swiftValue.map(UInt64.init) == value,
                "\(name): header \(value), Swift \(String(describing: swiftValue))")
        }
        #expect(MemoryLayout<SubmissionEntry>.size == 64)
        #expect(MemoryLayout<RingParameters>.size == 120)
        #expect(MemoryLayout<KernelTimespec>.size == 16)
    }

    @Test func flagDescriptionsNameBits() {
        #expect(SQEFlags([.link, .async]).description == "IOSQE_IO_LINK|IOSQE_ASYNC")
        #expect(SetupFlags(rawValue: 1 << 31).description == "0x80000000")
        #expect(SQEFlags().description == "[]")
    }
}
