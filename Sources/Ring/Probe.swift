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
    /// For each register opcode this package names: a harmless real call and its outcome.
    public var registerOpcodes: [(opcode: RegisterOpcode, kernelName: String, result: FlagResult)] = []
    /// Set when the answers are those of an older kernel emulated on this one
    /// (`SWIFT_RING_EMULATE_KERNEL`, see `KernelEmulation`), not of the running kernel.
    public var emulatedKernel: KernelVersion? = KernelEmulation.fromEnvironment

    /// What the kernel said when a setup flag or register opcode was tried.
    public enum FlagResult: Sendable, Equatable, CustomStringConvertible {
        case accepted
        case refused(Errno)
        case notTried(String)

        /// "accepted", "refused (<errno>)" or "not tried: <why>", as `ring-probe` prints it.
        public var description: String {
            switch self {
            case .accepted: "accepted"
            case .refused(let e): "refused (\(e))"
            case .notTried(let why): "not tried: \(why)"
            }
        }
    }

    /// Whether the kernel reported `op` as supported (`IO_URING_OP_SUPPORTED`).
    public func supports(_ op: Opcode) -> Bool { supportedOpcodes.contains(op.rawValue) }
}

/// Asks the kernel what io_uring can do here. Every answer comes from a real system call on a
/// throwaway ring.
public enum Probe {
    /// Asks the running kernel, with throwaway rings and small calls, what its io_uring supports.
    /// Never throws: a kernel that refuses io_uring gives a report whose `unavailableReason` says
    /// why.
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
        report.setupFlags = SetupFlags.allNamed.map {
            ($0.flag, $0.kernelName, trySetupFlag($0.flag, sibling: ring.fd))
        }
        if (try? Ring(entries: Int(Ring.maximumEntries), options: RingOptions())) != nil {
            report.maximumEntries = Ring.maximumEntries
        }
        report.registerOpcodes = RegisterOpcode.allKnown.map { ($0.opcode, $0.kernelName, tryRegister($0.opcode)) }
        return report
    }

    private static func makeRing(failure: inout RingSetupError?) -> Ring? {
        do {
            var options = RingOptions()
            options.registerRingFD = true  // to report whether the kernel offers it
            return try Ring(entries: 8, options: options)
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
        let (lastOp, supported) = parseProbeReply(UnsafeRawBufferPointer(buffer))
        guard let emulated = ring.emulatedKernel else { return (lastOp, supported) }
        // An older kernel knows only the opcodes it was released with.
        let known = supported.filter { (Opcode(rawValue: $0).introduced ?? .init(Int.max, 0)) <= emulated }
        // `last_op` is its highest opcode number (the kernel's IORING_OP_LAST - 1).
        let last = Opcode.introducedTable.lastIndex(where: { $0 <= emulated }) ?? 0
        return (min(lastOp, last), known)
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

    /// Exercises one register opcode with a small, valid request on throwaway rings, so
    /// "accepted" means the call did what it is for, not merely that the number is known.
    static func tryRegister(_ op: RegisterOpcode) -> ProbeReport.FlagResult {
        func outcome(_ body: () throws(Errno) -> Void) -> ProbeReport.FlagResult {
            do {
                try body()
                return .accepted
            } catch {
                return .refused(error)
            }
        }
        var plainOptions = RingOptions()
        plainOptions.registerRingFD = false
        guard let ring = try? Ring(entries: 8, options: plainOptions) else { return .notTried("no ring") }
        let page = UnsafeMutableRawPointer.allocate(byteCount: 4096, alignment: 4096)
        defer { page.deallocate() }
        let vec = UnsafeMutablePointer<iovec>.allocate(capacity: 1)
        vec.initialize(to: iovec(iov_base: page, iov_len: 4096))
        defer { vec.deallocate() }
        let iov = UnsafeBufferPointer(start: vec, count: 1)
        let devNull = UnsafeMutablePointer<Int32>.allocate(capacity: 1)
        devNull.initialize(to: open("/dev/null", O_RDONLY | O_CLOEXEC))
        defer {
            close(devNull.pointee)
            devNull.deallocate()
        }
        let oneFD = UnsafeBufferPointer(start: devNull, count: 1)
        switch op {
        case .registerBuffers: return outcome { () throws(Errno) in try ring.registerBuffers(iov) }
        case .unregisterBuffers:
            return outcome { () throws(Errno) in
                try ring.registerBuffers(iov); try ring.unregisterBuffers()
            }
        case .registerFiles: return outcome { () throws(Errno) in try ring.registerFiles(oneFD) }
        case .unregisterFiles:
            return outcome { () throws(Errno) in
                try ring.registerFiles(oneFD); try ring.unregisterFiles()
            }
        case .registerFilesUpdate:
            return outcome { () throws(Errno) in
                try ring.registerFiles(sparse: 2)
                var update = ResourceUpdate()
                update.data = UInt64(UInt(bitPattern: oneFD.baseAddress))
                _ = try ring.registerValue(.registerFilesUpdate, &update, count: 1)
            }
        case .registerEventFD, .registerEventFDAsync, .unregisterEventFD:
            let efd = CSyscallsBridge.eventFD()
            defer { close(efd) }
            return outcome { () throws(Errno) in
                try ring.registerEventFD(FileDescriptor(rawValue: efd), asyncOnly: op == .registerEventFDAsync)
                if op == .unregisterEventFD { try ring.unregisterEventFD() }
            }
        case .registerProbe: return outcome { () throws(Errno) in _ = try ring.supportedOpcodes() }
        case .registerPersonality: return outcome { () throws(Errno) in _ = try ring.registerPersonality() }
        case .unregisterPersonality:
            return outcome { () throws(Errno) in try ring.unregisterPersonality(try ring.registerPersonality()) }
        case .registerRestrictions, .registerEnableRings:
            var options = plainOptions
            options.flags = .disabled
            guard let disabled = try? Ring(entries: 8, options: options) else { return .notTried("no disabled ring") }
            return outcome { () throws(Errno) in
                try disabled.registerRestrictions([.allowOperation(.nop)])
                if op == .registerEnableRings { try disabled.enable() }
            }
        case .registerFiles2: return outcome { () throws(Errno) in try ring.registerFiles(sparse: 4) }
        case .registerFilesUpdate2:
            return outcome { () throws(Errno) in
                try ring.registerFiles(sparse: 4); try ring.updateFiles(at: 1, oneFD)
            }
        case .registerBuffers2: return outcome { () throws(Errno) in try ring.registerBuffers(nil, count: 4) }
        case .registerBuffersUpdate:
            return outcome { () throws(Errno) in
                try ring.registerBuffers(nil, count: 4); try ring.updateBuffers(at: 1, iov)
            }
        case .registerIOWQAffinity: return outcome { () throws(Errno) in try ring.setIOWorkerAffinity(cpus: [0]) }
        case .unregisterIOWQAffinity:
            return outcome { () throws(Errno) in
                try ring.setIOWorkerAffinity(cpus: [0]); try ring.clearIOWorkerAffinity()
            }
        case .registerIOWQMaxWorkers: return outcome { () throws(Errno) in _ = try ring.setIOWorkerLimits() }
        case .registerRingFDs, .unregisterRingFDs:
            return outcome { () throws(Errno) in
                var update = ResourceUpdate()
                update.offset = UInt32.max
                update.data = UInt64(UInt32(bitPattern: ring.fd.rawValue))
                _ = try ring.registerValue(.registerRingFDs, &update)
                update.data = 0  // unregistering names the slot only
                if op == .unregisterRingFDs {
                    _ = try ring.registerValue(.unregisterRingFDs, &update)
                } else {
                    _ = try? ring.registerValue(.unregisterRingFDs, &update)
                }
            }
        case .registerBufferRing, .unregisterBufferRing, .registerBufferRingStatus:
            return outcome { () throws(Errno) in
                let buffers = try BufferRing(ring: ring, group: 1, count: 2, bufferSize: 64)
                if op == .registerBufferRingStatus { _ = try buffers.kernelHead() }
            }
        case .registerSyncCancel:
            // Nothing is in flight, so a working sync cancel reports ENOENT.
            do {
                try ring.cancelSynchronously(userData: 1, timeout: .milliseconds(1))
                return .accepted
            } catch {
                return error == .noSuchFileOrDirectory ? .accepted : .refused(error)
            }
        case .registerFileAllocRange:
            return outcome { () throws(Errno) in
                try ring.registerFiles(sparse: 4); try ring.setFileAllocationRange(offset: 0, length: 4)
            }
        case .registerNAPI: return outcome { () throws(Errno) in try ring.registerNAPI(busyPollTimeout: 1) }
        case .unregisterNAPI:
            return outcome { () throws(Errno) in
                try ring.registerNAPI(busyPollTimeout: 1); try ring.unregisterNAPI()
            }
        case .registerClock: return outcome { () throws(Errno) in try ring.setWaitClock(CLOCK_MONOTONIC) }
        case .registerResizeRings:
            var options = plainOptions
            options.flags = [.noSQArray, .singleIssuer, .deferTaskRun]
            guard var resizable = try? Ring(entries: 8, options: options) else {
                return .notTried("no DEFER_TASKRUN ring")
            }
            return outcome { () throws(Errno) in try resizable.resize(entries: 16) }
        case .registerCloneBuffers:
            return .notTried("needs a second ring with registered buffers (struct io_uring_clone_buffers)")
        case .registerSendMsgRing:
            return .notTried("needs a ringless MSG_RING entry; exercised by tests only")
        case .registerZCRXInterfaceQueue:
            return .notTried("needs a NIC queue and CAP_NET_ADMIN")
        case .registerMemoryRegion:
            return .notTried("needs an application memory region descriptor")
        case .registerQuery:
            return .notTried("query structures are not encoded yet")
        default:
            return .notTried("unknown to this package")
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
