import ArgumentParser
import Glibc
import Ring
import RingExec
import RingToolSupport

/// ring-probe: what this kernel's io_uring can do, asked of the kernel itself.
@main
struct RingProbe: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ring-probe",
        abstract: "Report the running kernel's io_uring capabilities.",
        discussion: """
            Every answer comes from the kernel: IORING_REGISTER_PROBE for opcodes, a throwaway ring \
            per setup flag, the feature bits returned by io_uring_setup. With --require, exits 1 and \
            names what is missing; names may be given with or without their IORING_OP_ / \
            IORING_SETUP_ / IORING_FEAT_ prefix, e.g. --require READ,SQPOLL,NODROP. RingExec's \
            engines are named io_uring, libaio and posix-aio: each must start an executor here, \
            e.g. --require io_uring,libaio,posix-aio.
            """,
        version: SwiftRing.version)

    @Flag(help: "Print JSON (schema in README.md, 'ring-probe --json').")
    var json = false

    /// Usage errors exit 2, failures 1, messages on standard error (RingToolSupport).
    static func main() async { await runAsTool() }

    @Option(
        help:
            "Comma-separated capabilities that must be present (opcodes, setup flags, features, or the engines io_uring, libaio, posix-aio)."
    )
    var require: String?

    func run() throws {
        let report = Probe.run()
        let aio = AIOStatus.read()
        if let require {
            let outcome = Requirement.check(require, in: report, engines: aio.engines)
            if !outcome.unknown.isEmpty {
                printError("ring-probe: unknown capability: \(outcome.unknown.joined(separator: ", "))")
                throw ExitCode(2)
            }
            if !outcome.missing.isEmpty {
                printError("ring-probe: missing: \(outcome.missing.joined(separator: ", "))")
                throw ExitCode(1)
            }
            if !json {
                print("ring-probe: all required capabilities present")
                return
            }
        }
        print(json ? try jsonText(ProbeDocument(report, aio), pretty: true) : Render.table(report, aio))
    }
}

/// Linux native AIO as seen from here (the libaio engine's prerequisites).
struct AIOStatus {
    /// The libaio file the libaio engine loads here, or nil.
    var library: String?
    var aioNr: Int?
    var aioMaxNr: Int?
    /// Each RingExec engine: nil when it starts here, else why not.
    var engines: [(kind: EngineKind, unavailable: String?)] = []
    /// What `.automatic` (and SWIFT_RING_ENGINE) picks, or why nothing could be picked.
    var selection: Result<EngineSelection, EngineError> = .failure(.unknownEngineName(""))

    static func read() -> AIOStatus {
        AIOStatus(
            library: try? LibAIOLibrary.loaded.get(),
            aioNr: KernelSettings.readInteger("/proc/sys/fs/aio-nr"),
            aioMaxNr: KernelSettings.readInteger("/proc/sys/fs/aio-max-nr"),
            engines: EngineKind.allCases.map { kind in (kind, tryEngine(.only(kind)).failureDescription) },
            selection: tryEngine(.automatic))
    }
}

enum Requirement {
    static func check(
        _ list: String, in report: ProbeReport, engines: [(kind: EngineKind, unavailable: String?)]
    ) -> (missing: [String], unknown: [String]) {
        var missing: [String] = [], unknown: [String] = []
        for raw in list.split(separator: ",") {
            let name = raw.trimmingSpaces.uppercased()
            if name.isEmpty { continue }
            if name == "IO_URING" || name == "IOURING" {
                if let reason = report.unavailableReason {
                    missing.append("io_uring (\(reason))")
                } else if let engine = engines.first(where: { $0.kind == .ioURing }), let reason = engine.unavailable {
                    missing.append("io_uring (\(reason))")
                }
                continue
            }
            // RingExec's other engines, by the names EngineKind and SWIFT_RING_ENGINE use.
            if let engine = engines.first(where: {
                $0.kind != .ioURing
                    && ($0.kind.rawValue.uppercased() == name
                        || $0.kind.rawValue.uppercased() == name.replacingUnderscores)
            }) {
                if let reason = engine.unavailable { missing.append("\(engine.kind.rawValue) (\(reason))") }
                continue
            }
            if let op = Opcode.allKnown.first(where: { $0.kernelName == name || $0.kernelName == "IORING_OP_" + name })
            {
                if !report.supports(op.opcode) { missing.append(op.kernelName) }
            } else if let flag = report.setupFlags.first(where: {
                $0.kernelName == name || $0.kernelName == "IORING_SETUP_" + name
            }) {
                if flag.result != .accepted { missing.append(flag.kernelName) }
            } else if let reg = report.registerOpcodes.first(where: {
                $0.kernelName == name || $0.kernelName == "IORING_" + name
            }) {
                if reg.result != .accepted { missing.append(reg.kernelName) }
            } else if let feature = Features.allNamed.first(where: {
                $0.kernelName == name || $0.kernelName == "IORING_FEAT_" + name
            }) {
                if !report.features.contains(feature.flag) { missing.append(feature.kernelName) }
            } else {
                unknown.append(String(raw))
            }
        }
        return (missing, unknown)
    }
}

extension String {
    /// POSIX_AIO spelled as the engine is named (posix-aio).
    var replacingUnderscores: String { String(map { $0 == "_" ? "-" : $0 }) }
}

extension Substring {
    var trimmingSpaces: String {
        String(drop(while: { $0 == " " }).reversed().drop(while: { $0 == " " }).reversed())
    }
}

enum Render {
    static func table(_ r: ProbeReport, _ aio: AIOStatus) -> String {
        var out: [String] = []
        out.append("Kernel           \(r.kernelRelease)")
        if let emulated = r.emulatedKernel {
            out.append(
                "Emulating        Linux \(emulated) (\(KernelEmulation.environmentVariable)): answers below are that kernel's, not this one's"
            )
        }
        let sysctl = r.ioUringDisabledSysctl.map(String.init) ?? "absent"
        if let reason = r.unavailableReason {
            out.append("io_uring         UNAVAILABLE: \(reason)")
            out.append("                 kernel.io_uring_disabled = \(sysctl)")
        } else {
            out.append("io_uring         available (kernel.io_uring_disabled = \(sysctl))")
            out.append("Max entries      \(r.maximumEntries.map(String.init) ?? "unknown") without CLAMP")
            out.append(
                "Ring fd          \(r.registeredRingFD ? "registered (IORING_REGISTER_RING_FDS)" : "not registrable")")
            out.append("")
            out.append("(Linux X.Y: the mainline release that added it)")
            out.append("")
            out.append(
                "Features (\(Features.allNamed.filter { r.features.contains($0.flag) }.count)/\(Features.allNamed.count))"
            )
            for (flag, name) in Features.allNamed {
                out.append("  \(r.features.contains(flag) ? "yes" : " no")  \(pad(name, 34)) \(since(flag.introduced))")
            }
            out.append("")
            let known = Opcode.allKnown.filter { r.supports($0.opcode) }.count
            out.append("Opcodes (\(known)/\(Opcode.allKnown.count) supported; kernel's last opcode is \(r.lastOpcode))")
            for (op, name) in Opcode.allKnown {
                out.append(
                    "  \(r.supports(op) ? "yes" : " no")  \(pad(String(op.rawValue), 3)) \(pad(name, 30)) \(since(op.introduced))"
                )
            }
            let extra = r.supportedOpcodes.filter { Int($0) >= Opcode.allKnown.count }.sorted()
            if !extra.isEmpty {
                out.append(
                    "  also supported, unknown to this package: \(extra.map(String.init).joined(separator: ", "))")
            }
            out.append("")
            out.append("Setup flags (each tried on a throwaway ring)")
            for (flag, name, result) in r.setupFlags {
                out.append("  \(pad(name, 34)) \(pad(since(flag.introduced), 12)) \(result)")
            }
            out.append("")
            out.append("Register opcodes (each exercised with a small valid call)")
            for (op, name, result) in r.registerOpcodes {
                out.append(
                    "  \(pad(String(op.rawValue), 3)) \(pad(name, 34)) \(pad(since(op.introduced), 12)) \(result)")
            }
        }
        out.append("")
        out.append(
            "Linux AIO        \(aio.library.map { "\($0) loaded" } ?? "libaio missing (install \(LibAIOLibrary.installAdvice))"); "
                + "fs.aio-nr \(aio.aioNr.map(String.init) ?? "?") of fs.aio-max-nr \(aio.aioMaxNr.map(String.init) ?? "?")"
        )
        out.append("")
        out.append("RingExec engines")
        for engine in aio.engines {
            out.append(
                "  \(pad(engine.kind.rawValue, 10)) \(engine.unavailable.map { "unavailable: \($0)" } ?? "available")")
        }
        switch aio.selection {
        case .success(let selection): out.append("  automatic  -> \(selection)")
        case .failure(let error): out.append("  automatic  -> \(error)")
        }
        return out.joined(separator: "\n")
    }

    static func pad(_ s: String, _ width: Int) -> String {
        s.count >= width ? s : s + String(repeating: " ", count: width - s.count)
    }
}

/// Starts (and stops) a small executor with `choice`: the honest test of whether an engine works.
func tryEngine(_ choice: EngineChoice) -> Result<EngineSelection, EngineError> {
    do {
        let executor = try RingExecutor(entries: 4, engine: choice)
        defer { executor.shutdownGracefully() }
        return .success(executor.engineSelection)
    } catch {
        return .failure(error)
    }
}

extension Result where Failure == EngineError {
    var failureDescription: String? {
        switch self {
        case .success: nil
        case .failure(.unavailable(_, let reason)): reason
        case .failure(let error): error.description
        }
    }
}

/// "Linux 6.7": the mainline release an interface arrived in, for the tables above.
func since(_ version: KernelVersion?) -> String {
    version.map { "Linux \($0)" } ?? ""
}
