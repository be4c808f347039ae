import Glibc

/// A Linux release, `major.minor` (the numbers io_uring's history is told in).
///
/// swift-ring never decides what to use by comparing versions: it asks the running kernel (the
/// probe, a refused setup flag, a refused register call). Versions are for people: the release
/// each opcode, flag and feature arrived in is named in errors, skips, `ring-probe` and
/// KERNELS.md, and an emulated version (`KernelEmulation`) lets tests see the fallbacks an older
/// kernel would force.
public struct KernelVersion: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// The major number (the 6 of 6.1).
    public var major: Int
    /// The minor number (the 1 of 6.1).
    public var minor: Int

    /// The release `major.minor`.
    public init(_ major: Int, _ minor: Int) {
        self.major = major
        self.minor = minor
    }

    /// Parses the leading `major.minor` of a release string such as `6.1.0-28-amd64` or `6.18`.
    public init?(release: String) {
        let numbers = release.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        guard numbers.count == 2, release.first?.isNumber == true else { return nil }
        self.init(numbers[0], numbers[1])
    }

    /// Release order: 5.19 comes before 6.1.
    public static func < (a: KernelVersion, b: KernelVersion) -> Bool {
        (a.major, a.minor) < (b.major, b.minor)
    }

    /// `major.minor`, for example `6.1`.
    public var description: String { "\(major).\(minor)" }

    /// `uname -r` of the running kernel, parsed; nil if it does not start with `major.minor`.
    public static let running: KernelVersion? = {
        var name = utsname()
        guard uname(&name) == 0 else { return nil }
        let release = withUnsafeBytes(of: &name.release) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
        return KernelVersion(release: release)
    }()
}

// The release each io_uring interface first appeared in mainline Linux, from the kernel's
// history (include/uapi/linux/io_uring.h) and liburing's man pages. Distribution kernels may
// backport; the probe is what decides. `KernelVersionTests` checks these tables against the
// running kernel's probe, and the kernel matrix (Scripts/kernel-matrix) runs that test on
// every booted kernel.

extension Opcode {
    /// The Linux release that added this opcode; nil for a number this package does not know.
    public var introduced: KernelVersion? {
        let index = Int(rawValue)
        return index < Opcode.introducedTable.count ? Opcode.introducedTable[index] : nil
    }

    /// Indexed by opcode number (0 … 62).
    static let introducedTable: [KernelVersion] = [
        // NOP, READV, WRITEV, FSYNC, READ_FIXED, WRITE_FIXED, POLL_ADD, POLL_REMOVE
        .init(5, 1), .init(5, 1), .init(5, 1), .init(5, 1), .init(5, 1), .init(5, 1), .init(5, 1), .init(5, 1),
        // SYNC_FILE_RANGE, SENDMSG, RECVMSG, TIMEOUT
        .init(5, 2), .init(5, 3), .init(5, 3), .init(5, 4),
        // TIMEOUT_REMOVE, ACCEPT, ASYNC_CANCEL, LINK_TIMEOUT, CONNECT
        .init(5, 5), .init(5, 5), .init(5, 5), .init(5, 5), .init(5, 5),
        // FALLOCATE, OPENAT, CLOSE, FILES_UPDATE, STATX, READ, WRITE, FADVISE, MADVISE, SEND,
        // RECV, OPENAT2, EPOLL_CTL
        .init(5, 6), .init(5, 6), .init(5, 6), .init(5, 6), .init(5, 6), .init(5, 6), .init(5, 6), .init(5, 6),
        .init(5, 6), .init(5, 6), .init(5, 6), .init(5, 6), .init(5, 6),
        // SPLICE, PROVIDE_BUFFERS, REMOVE_BUFFERS, TEE
        .init(5, 7), .init(5, 7), .init(5, 7), .init(5, 8),
        // SHUTDOWN, RENAMEAT, UNLINKAT, MKDIRAT, SYMLINKAT, LINKAT
        .init(5, 11), .init(5, 11), .init(5, 11), .init(5, 15), .init(5, 15), .init(5, 15),
        // MSG_RING, FSETXATTR, SETXATTR, FGETXATTR, GETXATTR, SOCKET, URING_CMD
        .init(5, 18), .init(5, 19), .init(5, 19), .init(5, 19), .init(5, 19), .init(5, 19), .init(5, 19),
        // SEND_ZC, SENDMSG_ZC
        .init(6, 0), .init(6, 1),
        // READ_MULTISHOT, WAITID, FUTEX_WAIT, FUTEX_WAKE, FUTEX_WAITV
        .init(6, 7), .init(6, 7), .init(6, 7), .init(6, 7), .init(6, 7),
        // FIXED_FD_INSTALL, FTRUNCATE, BIND, LISTEN
        .init(6, 8), .init(6, 9), .init(6, 11), .init(6, 11),
        // RECV_ZC, EPOLL_WAIT, READV_FIXED, WRITEV_FIXED, PIPE
        .init(6, 15), .init(6, 15), .init(6, 15), .init(6, 15), .init(6, 16),
    ]
}

extension SetupFlags {
    /// The Linux release that added this flag (a single flag; nil for combinations and unknown
    /// bits).
    public var introduced: KernelVersion? {
        guard rawValue != 0, rawValue & (rawValue - 1) == 0 else { return nil }
        let bit = rawValue.trailingZeroBitCount
        return bit < SetupFlags.introducedTable.count ? SetupFlags.introducedTable[bit] : nil
    }

    /// The newest release among these flags: the oldest kernel that accepts them all.
    public var newestIntroduced: KernelVersion? {
        (0..<32).compactMap { bit in
            contains(SetupFlags(rawValue: 1 << bit)) ? SetupFlags(rawValue: 1 << bit).introduced : nil
        }.max()
    }

    /// Indexed by bit: IOPOLL, SQPOLL, SQ_AFF, CQSIZE, CLAMP, ATTACH_WQ, R_DISABLED, SUBMIT_ALL,
    /// COOP_TASKRUN, TASKRUN_FLAG, SQE128, CQE32, SINGLE_ISSUER, DEFER_TASKRUN, NO_MMAP,
    /// REGISTERED_FD_ONLY, NO_SQARRAY, HYBRID_IOPOLL, CQE_MIXED, SQE_MIXED.
    static let introducedTable: [KernelVersion] = [
        .init(5, 1), .init(5, 1), .init(5, 1), .init(5, 5), .init(5, 6), .init(5, 6), .init(5, 10), .init(5, 18),
        .init(5, 19), .init(5, 19), .init(5, 19), .init(5, 19), .init(6, 0), .init(6, 1), .init(6, 5), .init(6, 5),
        .init(6, 6), .init(6, 13), .init(6, 18), .init(6, 19),
    ]
}

extension Features {
    /// The Linux release that first reported this feature bit (single bits only).
    public var introduced: KernelVersion? {
        guard rawValue != 0, rawValue & (rawValue - 1) == 0 else { return nil }
        let bit = rawValue.trailingZeroBitCount
        return bit < Features.introducedTable.count ? Features.introducedTable[bit] : nil
    }

    /// Every feature bit a kernel of `version` reports (for emulating it).
    public static func reported(by version: KernelVersion) -> Features {
        var features: Features = []
        for (bit, introduced) in introducedTable.enumerated() where introduced <= version {
            features.insert(Features(rawValue: 1 << bit))
        }
        return features
    }

    /// Indexed by bit: SINGLE_MMAP, NODROP, SUBMIT_STABLE, RW_CUR_POS, CUR_PERSONALITY,
    /// FAST_POLL, POLL_32BITS, SQPOLL_NONFIXED, EXT_ARG, NATIVE_WORKERS, RSRC_TAGS, CQE_SKIP,
    /// LINKED_FILE, REG_REG_RING, RECVSEND_BUNDLE, MIN_TIMEOUT, RW_ATTR, NO_IOWAIT.
    static let introducedTable: [KernelVersion] = [
        .init(5, 4), .init(5, 5), .init(5, 5), .init(5, 6), .init(5, 6), .init(5, 7), .init(5, 9), .init(5, 11),
        .init(5, 11), .init(5, 12), .init(5, 13), .init(5, 17), .init(5, 17), .init(6, 3), .init(6, 10),
        .init(6, 12), .init(6, 14), .init(6, 15),
    ]
}

extension RegisterOpcode {
    /// The Linux release that added this register opcode; nil for a number this package does
    /// not know.
    public var introduced: KernelVersion? {
        let index = Int(rawValue & ~RegisterOpcode.useRegisteredRingBit)
        return index < RegisterOpcode.introducedTable.count ? RegisterOpcode.introducedTable[index] : nil
    }

    /// Indexed by opcode number (0 … 35), in `allKnown`'s order.
    static let introducedTable: [KernelVersion] = [
        // BUFFERS, UNREGISTER_BUFFERS, FILES, UNREGISTER_FILES, EVENTFD, UNREGISTER_EVENTFD
        .init(5, 1), .init(5, 1), .init(5, 1), .init(5, 1), .init(5, 2), .init(5, 2),
        // FILES_UPDATE, EVENTFD_ASYNC, PROBE, PERSONALITY, UNREGISTER_PERSONALITY
        .init(5, 5), .init(5, 6), .init(5, 6), .init(5, 6), .init(5, 6),
        // RESTRICTIONS, ENABLE_RINGS, FILES2, FILES_UPDATE2, BUFFERS2, BUFFERS_UPDATE
        .init(5, 10), .init(5, 10), .init(5, 13), .init(5, 13), .init(5, 13), .init(5, 13),
        // IOWQ_AFF, UNREGISTER_IOWQ_AFF, IOWQ_MAX_WORKERS, RING_FDS, UNREGISTER_RING_FDS
        .init(5, 14), .init(5, 14), .init(5, 15), .init(5, 18), .init(5, 18),
        // PBUF_RING, UNREGISTER_PBUF_RING, SYNC_CANCEL, FILE_ALLOC_RANGE, PBUF_STATUS
        .init(5, 19), .init(5, 19), .init(6, 0), .init(6, 0), .init(6, 8),
        // NAPI, UNREGISTER_NAPI, CLOCK, CLONE_BUFFERS, SEND_MSG_RING, ZCRX_IFQ
        .init(6, 9), .init(6, 9), .init(6, 12), .init(6, 12), .init(6, 13), .init(6, 15),
        // RESIZE_RINGS, MEM_REGION, QUERY
        .init(6, 13), .init(6, 13), .init(6, 18),
    ]
}

extension BufferRing {
    /// `IOU_PBUF_RING_INC`, incremental consumption (`BufferRing(incremental: true)`): Linux
    /// 6.12. Older kernels with buffer rings refuse it with `EINVAL`: 6.4 to 6.11 as an unknown
    /// flag, 5.19 to 6.3 as a non-zero `pad` (the field `flags` was called before 6.4).
    public static let incrementalIntroduced = KernelVersion(6, 12)
}

/// Makes rings answer as an older kernel would, to exercise fallbacks on a newer one: setup
/// refuses flags that kernel lacks (`EINVAL`), the ring reports only its feature bits, register
/// calls it lacks fail with `EINVAL`, and the probe lists only its opcodes. Entries already on
/// the queue are not filtered: code under test must ask the probe, as it must on a real kernel.
///
/// Set per ring with `RingOptions.emulatedKernel`; its default comes from the environment
/// variable `SWIFT_RING_EMULATE_KERNEL` (e.g. `5.15`), read once, so a whole process (a test
/// run, `ring-probe`) can be pointed at an older kernel. Emulating a newer kernel than the one
/// running changes nothing. A testing aid: production code should leave it unset.
public enum KernelEmulation {
    /// `SWIFT_RING_EMULATE_KERNEL`: the release to emulate, for example `5.15`.
    public static let environmentVariable = "SWIFT_RING_EMULATE_KERNEL"

    /// The version the environment asks for, if any (and only if older than the running kernel).
    public static let fromEnvironment: KernelVersion? = {
        guard let raw = getenv(environmentVariable) else { return nil }
        return effective(KernelVersion(release: String(cString: raw)))
    }()

    /// `version` if it is older than the running kernel, else nil (nothing to emulate).
    static func effective(_ version: KernelVersion?) -> KernelVersion? {
        guard let version else { return nil }
        if let running = KernelVersion.running, version >= running { return nil }
        return version
    }
}
