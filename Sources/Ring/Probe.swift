import Glibc
public import SystemPackage

/// What the running kernel's io_uring supports, found by asking it (never by version numbers).
public struct ProbeReport: Sendable {
    /// `uname -r`.
    public var kernelRelease: String
    /// `kernel.io_uring_disabled`, nil where the sysctl does not exist.
    public var ioUringDisabledSysctl: Int?
    /// Why a plain ring could not be created, or nil when io_uring works.
    public var unavailableReason: RingSetupError?
    /// Feature bits from `io_uring_params.features`.
    public var features: Features
    /// Opcodes the kernel reports supported (`IORING_REGISTER_PROBE`), by number.
    public var supportedOpcodes: Set<UInt8>
    /// The highest opcode number the kernel knows (`last_op` of the probe reply).
    public var lastOpcode: Int
    /// For each setup flag this package names: accepted, or the errno of the attempt.
    public var setupFlags: [(flag: SetupFlags, kernelName: String, result: FlagResult)]
    /// The largest SQ the kernel accepts without `.clamp`.
    public var maximumEntries: UInt32?
    /// Whether the ring fd could be registered with itself (`IORING_REGISTER_RING_FDS`).
    public var registeredRingFD: Bool

    public enum FlagResult: Sendable, Equatable, CustomStringConvertible {
        case accepted
        case refused(Errno)
        case notTried(String)

        public var description: String {
            switch self {
            case .accepted: "accepted"
            case .refused(let e): "refused (\(e))"
            case .notTried(let why): "not tried: \(why)"
            }
        }
    }

    public func supports(_ op: Opcode) -> Bool { supportedOpcodes.contains(op.rawValue) }
}

/// Asks the kernel what io_uring can do here. Every answer comes from a real system call on a
/// throwaway ring.
public enum Probe {
    public static func run() -> ProbeReport {
        var report = ProbeReport(
            kernelRelease: kernelRelease(), ioUringDisabledSysctl: KernelSettings.ioUringDisabled,
            unavailableReason: nil, features: [], supportedOpcodes: [], lastOpcode: 0, setupFlags: [],
            maximumEntries: nil, registeredRingFD: false)
        var failure: RingSetupError? = nil
        guard let ring = makeRing(failure: &failure) else {
            report.unavailableReason = failure
            report.setupFlags = SetupFlags.allNamed.map { ($0.flag, $0.kernelName, .notTried("io_uring unavailable")) }
            return report
        }
        report.features = ring.features
        report.registeredRingFD = ring.usesRegisteredRingFD
        if let (limit, ops) = try? opcodes(of: ring) {
            report.lastOpcode = limit
            report.supportedOpcodes = ops
        }
        report.setupFlags = SetupFlags.allNamed.map { ($0.flag, $0.kernelName, trySetupFlag($0.flag, sibling: ring.fd)) }
        if (try? Ring(entries: Int(Ring.maximumEntries), options: RingOptions())) != nil {
            report.maximumEntries = Ring.maximumEntries
        }
        return report
    }

    private static func makeRing(failure: inout RingSetupError?) -> Ring? {
        do {
            return try Ring(entries: 8)
        } catch {
            failure = error
            return nil
        }
    }

    /// `IORING_REGISTER_PROBE`: returns (last_op, supported opcode numbers).
    public static func opcodes(of ring: borrowing Ring) throws(Errno) -> (Int, Set<UInt8>) {
        // struct io_uring_probe: 16-byte header, then 256 × struct io_uring_probe_op (8 bytes).
        let count = 256
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 16 + 8 * count, alignment: 8)
        defer { buffer.deallocate() }
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
        try ring.register(.registerProbe, argument: UnsafeRawPointer(buffer.baseAddress), count: UInt32(count))
        return parseProbeReply(UnsafeRawBufferPointer(buffer))
    }

    /// Decodes an `io_uring_probe` reply. Pure: entries beyond the buffer or beyond `ops_len`
    /// are ignored, so a short or inconsistent reply cannot read out of bounds.
    public static func parseProbeReply(_ reply: UnsafeRawBufferPointer) -> (Int, Set<UInt8>) {
        guard reply.count >= 16 else { return (0, []) }
        let lastOp = Int(reply[0])
        let opsLength = Int(reply[1])
        let available = (reply.count - 16) / 8
        var supported = Set<UInt8>()
        for i in 0..<min(opsLength, available) {
            let base = 16 + 8 * i
            let op = reply[base]
            let flags = UInt16(reply[base + 2]) | UInt16(reply[base + 3]) << 8
            if flags & 1 != 0 { supported.insert(op) }  // IO_URING_OP_SUPPORTED
        }
        return (lastOp, supported)
    }

    /// Tries one setup flag on a throwaway ring, with the companions it requires.
    static func trySetupFlag(_ flag: SetupFlags, sibling: FileDescriptor) -> ProbeReport.FlagResult {
        var options = RingOptions(flags: flag)
        options.registerRingFD = false
        switch flag {
        case .noMmap, .registeredFDOnly:
            return .notTried("needs application-provided ring memory")
        case .sqeMixed:
            break
        case .sqAffinity:
            options.flags = [.sqPoll]
            options.sqThreadCPU = 0
        case .taskRunFlag:
            options.flags.insert(.coopTaskRun)
        case .deferTaskRun:
            options.flags.insert(.singleIssuer)
        case .hybridIOPoll:
            options.flags.insert(.ioPoll)
        case .cqSize:
            options.flags = []
            options.completionEntries = 64
        case .attachWQ:
            options.flags = []
            options.attachWorkQueueOf = sibling
        default:
            break
        }
        do {
            _ = try Ring(entries: 8, options: options)
            return .accepted
        } catch {
            return .refused(error.errno)
        }
    }

    static func kernelRelease() -> String {
        var name = utsname()
        guard uname(&name) == 0 else { return "unknown" }
        return withUnsafeBytes(of: &name.release) { raw in
            String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
        }
    }
}
