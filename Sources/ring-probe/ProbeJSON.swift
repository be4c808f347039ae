import Ring
import RingExec
import RingToolSupport

/// `ring-probe --json`, schema 1 (README.md, "ring-probe"). Encoded by JSONEncoder, so any text
/// the kernel or the environment puts in a message is escaped correctly; keys come out sorted.
/// Keys are only ever added: the kernel matrix and CI read this document.
struct ProbeDocument: Encodable {
    var schema = 1
    var toolVersion = SwiftRing.version
    var kernelRelease: String
    /// The older kernel whose answers `SWIFT_RING_EMULATE_KERNEL` asked for; absent otherwise.
    var emulatedKernel: String?
    var ioUring: IOURing
    var maxEntries: UInt32?
    var registeredRingFD: Bool
    var lastOpcode: Int
    var features: [String: Bool]
    var opcodes: [String: Bool]
    /// "accepted", "refused:<errno>" or "not_tried".
    var setupFlags: [String: String]
    var registerOpcodes: [String: String]
    var linuxAIO: LinuxAIO

    enum CodingKeys: String, CodingKey {
        case schema, toolVersion = "tool_version", kernelRelease = "kernel_release", emulatedKernel = "emulated_kernel"
        case ioUring = "io_uring"
        case maxEntries = "max_entries", registeredRingFD = "registered_ring_fd", lastOpcode = "last_opcode"
        case features, opcodes, setupFlags = "setup_flags", registerOpcodes = "register_opcodes"
        case linuxAIO = "linux_aio"
    }

    struct IOURing: Encodable {
        var available: Bool
        var ioUringDisabledSysctl: Int?
        var error: SetupError?
        enum CodingKeys: String, CodingKey {
            case available, ioUringDisabledSysctl = "io_uring_disabled_sysctl", error
        }
        // `error` is written as null when absent (synthesized Encodable would leave it out).
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(available, forKey: .available)
            try container.encode(ioUringDisabledSysctl, forKey: .ioUringDisabledSysctl)
            try container.encode(error, forKey: .error)
        }
    }

    struct SetupError: Encodable {
        var errno: Int32
        var message: String
        var explanation: String
    }

    struct LinuxAIO: Encodable {
        var libaioLoaded: Bool
        /// The file that loaded (`libaio.so.1` or `libaio.so.1t64`), or null.
        var libaioLibrary: String?
        /// The package that provides libaio on this distribution, with its install command.
        var libaioPackage: String
        var aioNr: Int?
        var aioMaxNr: Int?
        var engines: [Engine]
        var automatic: Automatic
        enum CodingKeys: String, CodingKey {
            case libaioLoaded = "libaio_loaded", libaioLibrary = "libaio_library", libaioPackage = "libaio_package"
            case aioNr = "aio_nr", aioMaxNr = "aio_max_nr", engines, automatic
        }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(libaioLoaded, forKey: .libaioLoaded)
            try container.encode(libaioLibrary, forKey: .libaioLibrary)
            try container.encode(libaioPackage, forKey: .libaioPackage)
            try container.encode(aioNr, forKey: .aioNr)
            try container.encode(aioMaxNr, forKey: .aioMaxNr)
            try container.encode(engines, forKey: .engines)
            try container.encode(automatic, forKey: .automatic)
        }
    }

    struct Engine: Encodable {
        var name: String
        var available: Bool
        var reason: String?
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(name, forKey: .name)
            try container.encode(available, forKey: .available)
            try container.encode(reason, forKey: .reason)
        }
        enum CodingKeys: String, CodingKey { case name, available, reason }
    }

    /// What `.automatic` picked: `{engine, from_environment, passed_over}`, or
    /// `{engine: null, error}` when nothing could be picked.
    struct Automatic: Encodable {
        var engine: String?
        var fromEnvironment: Bool?
        var passedOver: [PassedOver]?
        /// io_uring: the setup flags of the ring the executor chose (`IORING_SETUP_*` names).
        var ringFlags: [String]?
        /// What the engine does differently on this kernel, and why.
        var adaptations: [String]?
        var error: String?
        enum CodingKeys: String, CodingKey {
            case engine, fromEnvironment = "from_environment", passedOver = "passed_over", ringFlags = "ring_flags"
            case adaptations, error
        }
        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(engine, forKey: .engine)  // null when nothing was picked
            try container.encodeIfPresent(fromEnvironment, forKey: .fromEnvironment)
            try container.encodeIfPresent(passedOver, forKey: .passedOver)
            try container.encodeIfPresent(ringFlags, forKey: .ringFlags)
            try container.encodeIfPresent(adaptations, forKey: .adaptations)
            try container.encodeIfPresent(error, forKey: .error)
        }
    }

    struct PassedOver: Encodable {
        var engine: String
        var reason: String
    }
}

extension ProbeDocument {
    init(_ r: ProbeReport, _ aio: AIOStatus) {
        func result(_ value: ProbeReport.FlagResult) -> String {
            switch value {
            case .accepted: "accepted"
            case .refused(let e): "refused:\(e.rawValue)"
            case .notTried: "not_tried"
            }
        }
        let automatic: Automatic =
            switch aio.selection {
            case .success(let chosen):
                Automatic(
                    engine: chosen.engine.rawValue, fromEnvironment: chosen.fromEnvironment,
                    passedOver: chosen.passedOver.map { PassedOver(engine: $0.engine.rawValue, reason: $0.reason) },
                    ringFlags: SetupFlags.allNamed.filter { chosen.ringFlags.contains($0.flag) }.map(\.kernelName),
                    adaptations: chosen.adaptations)
            case .failure(let error):
                Automatic(engine: nil, error: error.description)
            }
        self.init(
            kernelRelease: r.kernelRelease,
            emulatedKernel: r.emulatedKernel.map { "\($0)" },
            ioUring: IOURing(
                available: r.unavailableReason == nil, ioUringDisabledSysctl: r.ioUringDisabledSysctl,
                error: r.unavailableReason.map {
                    SetupError(
                        errno: $0.errno.rawValue, message: String(describing: $0.errno), explanation: $0.explanation)
                }),
            maxEntries: r.maximumEntries,
            registeredRingFD: r.registeredRingFD,
            lastOpcode: r.lastOpcode,
            features: Dictionary(Features.allNamed.map { ($0.kernelName, r.features.contains($0.flag)) }) { a, _ in a },
            opcodes: Dictionary(Opcode.allKnown.map { ($0.kernelName, r.supports($0.opcode)) }) { a, _ in a },
            setupFlags: Dictionary(r.setupFlags.map { ($0.kernelName, result($0.result)) }) { a, _ in a },
            registerOpcodes: Dictionary(r.registerOpcodes.map { ($0.kernelName, result($0.result)) }) { a, _ in a },
            linuxAIO: LinuxAIO(
                libaioLoaded: aio.library != nil, libaioLibrary: aio.library, libaioPackage: LibAIOLibrary.package,
                aioNr: aio.aioNr, aioMaxNr: aio.aioMaxNr,
                engines: aio.engines.map {
                    Engine(name: $0.kind.rawValue, available: $0.unavailable == nil, reason: $0.unavailable)
                },
                automatic: automatic))
    }
}
