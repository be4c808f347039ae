import Glibc
import SystemPackage
import Testing

@testable import Ring

/// A ring configuration every kernel test runs under.
struct RingShape: Sendable, CustomTestStringConvertible {
    var name: String
    var options: RingOptions

    var testDescription: String { name }

    static let all: [RingShape] = [
        RingShape(name: "default", options: RingOptions()),
        RingShape(
            name: "sqpoll",
            options: {
                var o = RingOptions(flags: .sqPoll)
                o.sqThreadIdle = .milliseconds(50)
                return o
            }()),
        RingShape(
            name: "single-issuer+defer-taskrun",
            options: RingOptions(flags: [.singleIssuer, .deferTaskRun, .taskRunFlag])),
        RingShape(name: "cqe32", options: RingOptions(flags: .cqe32)),
        RingShape(name: "no-sqarray", options: RingOptions(flags: .noSQArray)),
    ]

    /// What RING_REQUIRE calls this shape: the default shape needs io_uring itself.
    var need: Need { Need(rawValue: name) ?? .ioURing }

    /// Creates the ring, or returns nil when this kernel refuses the shape: the test case is then
    /// reported as skipped with the kernel's reason (a failure when RING_REQUIRE requires it).
    func make(entries: Int = 32, completionEntries: UInt32? = nil, sourceLocation: SourceLocation = #_sourceLocation)
        -> Ring?
    {
        var options = self.options
        options.completionEntries = completionEntries
        do {
            return try Ring(entries: entries, options: options)
        } catch {
            // A flag this kernel predates: skipped as `kernel`, naming the release that added it.
            if let (flag, linux) = Self.introduced.first(where: {
                options.flags.contains($0.flag) && KernelOffers.refuses($0.flag)
            }) {
                let flagName = SetupFlags.allNamed.first { $0.flag == flag }?.kernelName ?? "\(flag)"
                skip(
                    .kernel,
                    "the \(name) ring shape needs \(flagName), Linux \(linux) (kernel \(KernelOffers.kernelName) refused it: \(error))",
                    sourceLocation: sourceLocation)
                return nil
            }
            skip(need, "the kernel refused the \(name) ring shape: \(error)", sourceLocation: sourceLocation)
            return nil
        }
    }

    /// The release that added each setup flag the shapes use (io_uring_setup(2)).
    static let introduced: [(flag: SetupFlags, linux: String)] = [
        (.noSQArray, "6.6"), (.deferTaskRun, "6.1"), (.singleIssuer, "6.0"), (.taskRunFlag, "5.19"), (.cqe32, "5.19"),
    ]
}

/// A temporary file, removed on deinit.
final class TemporaryFile {
    let path: String
    let fd: FileDescriptor

    init(size: Int = 0, flags: FileDescriptor.OpenOptions = [], directory: String = "/tmp") throws {
        var template = Array("\(directory)/swift-ring-test-XXXXXX".utf8CString)
        let raw = mkstemp(&template)
        guard raw >= 0 else { throw Errno(rawValue: errno) }
        path = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
        Glibc.close(raw)
        fd = try FileDescriptor.open(path, .readWrite, options: flags)
        if size > 0 { guard ftruncate(fd.rawValue, off_t(size)) == 0 else { throw Errno(rawValue: errno) } }
    }

    deinit {
        try? fd.close()
        unlink(path)
    }
}

/// A deterministic byte pattern that differs for every offset and seed.
func pattern(count: Int, seed: UInt8) -> [UInt8] {
    (0..<count).map { UInt8(truncatingIfNeeded: $0 &* 31 &+ Int(seed)) }
}

extension Ring {
    /// Submits and waits until `count` completions have been collected (test helper).
    mutating func collect(_ count: Int, timeout: Duration = .seconds(10)) throws -> [Completion] {
        var out: [Completion] = []
        let deadline = ContinuousClock.now + timeout
        while out.count < count {
            if ContinuousClock.now > deadline {
                Issue.record("timed out with \(out.count) of \(count) completions")
                break
            }
            try submitAndWait(count - out.count, timeout: .milliseconds(200))
            forEachCompletion { out.append($0) }
        }
        return out
    }
}

extension Ring {
    /// Pushes an entry, recording a test issue if the SQ is unexpectedly full.
    mutating func mustPush(_ entry: SubmissionEntry, sourceLocation: SourceLocation = #_sourceLocation) {
        let pushed = push(entry)
        if !pushed { Issue.record("submission queue unexpectedly full", sourceLocation: sourceLocation) }
    }
}

/// Heap memory with a stable address for the kernel to use, freed on deinit. Tests use this
/// instead of `withUnsafe...` closures so that no closure captures the (non-copyable) ring.
final class Pinned<T> {
    let pointer: UnsafeMutablePointer<T>
    init(_ value: T) {
        pointer = .allocate(capacity: 1)
        pointer.initialize(to: value)
    }
    deinit { pointer.deallocate() }
}

final class PinnedBytes {
    let buffer: UnsafeMutableRawBufferPointer
    init(count: Int, alignment: Int = 4096) {
        buffer = .allocate(byteCount: count, alignment: alignment)
        buffer.initializeMemory(as: UInt8.self, repeating: 0)
    }
    convenience init(_ bytes: [UInt8]) {
        self.init(count: bytes.count)
        buffer.copyBytes(from: bytes)
    }
    var bytes: [UInt8] { Array(buffer) }
    var readOnly: UnsafeRawBufferPointer { UnsafeRawBufferPointer(buffer) }
    deinit { buffer.deallocate() }
}

extension Ring {
    /// Pushes one entry and returns its completion (test helper).
    mutating func run(_ entry: SubmissionEntry, userData: UInt64 = 0xC0FFEE) throws -> Completion {
        mustPush(entry.userData(userData))
        let done = try collect(1)
        return done.first ?? Completion(userData: 0, result: Int32.min, flags: 0)
    }
}

/// A C string with a stable address, freed on deinit.
final class PinnedString {
    let pointer: UnsafeMutablePointer<CChar>
    init(_ text: String) { pointer = strdup(text)! }
    deinit { free(pointer) }
}

/// A pipe whose ends close on deinit.
final class TestPipe {
    let read: FileDescriptor
    let write: FileDescriptor
    init() throws {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw Errno(rawValue: errno) }
        read = FileDescriptor(rawValue: fds[0])
        write = FileDescriptor(rawValue: fds[1])
    }
    deinit {
        try? read.close()
        try? write.close()
    }
}

/// A connected pair of stream sockets.
final class SocketPair {
    let a: FileDescriptor
    let b: FileDescriptor
    init(type: Int32 = Int32(SOCK_STREAM.rawValue)) throws {
        var fds: [Int32] = [-1, -1]
        guard socketpair(AF_UNIX, type, 0, &fds) == 0 else { throw Errno(rawValue: errno) }
        a = FileDescriptor(rawValue: fds[0])
        b = FileDescriptor(rawValue: fds[1])
    }
    deinit {
        try? a.close()
        try? b.close()
    }
}

/// A temporary directory removed (recursively, shallow) on deinit.
final class TemporaryDirectory {
    let path: String
    init() throws {
        var template = Array("/tmp/swift-ring-dir-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw Errno(rawValue: errno) }
        path = String(decoding: template.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
    func child(_ name: String) -> String { path + "/" + name }
    deinit {
        if let dir = opendir(path) {
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(decoding: raw.prefix(while: { $0 != 0 }), as: UTF8.self)
                }
                if name == "." || name == ".." { continue }
                let full = path + "/" + name
                if unlink(full) != 0 { rmdir(full) }
            }
            closedir(dir)
        }
        rmdir(path)
    }
}

func writeAll(_ fd: FileDescriptor, _ bytes: [UInt8]) throws {
    _ = try bytes.withUnsafeBytes { try fd.writeAll($0) }
}

func readSome(_ fd: FileDescriptor, _ count: Int) throws -> [UInt8] {
    var buffer = [UInt8](repeating: 0, count: count)
    let n = try buffer.withUnsafeMutableBytes { try fd.read(into: $0) }
    return Array(buffer.prefix(n))
}

/// What the running kernel offers, asked once (the probe: `IORING_REGISTER_PROBE`, a ring per
/// setup flag, the feature bits). A test that needs something the kernel lacks asks here first and
/// is skipped with need `kernel`, naming what is missing and the Linux release that added it
/// (from the kernel's history and liburing's man pages).
enum KernelOffers {
    static let probe = Probe.run()

    /// The kernel the answers are from, as skip reasons name it.
    static var kernelName: String {
        probe.emulatedKernel.map { "\(probe.kernelRelease) emulating \($0)" } ?? probe.kernelRelease
    }

    /// The running release as (major, minor), from the probe's `uname -r`, or the release
    /// `SWIFT_RING_EMULATE_KERNEL` makes ring setup and the probe answer as.
    static var release: (Int, Int) {
        if let emulated = probe.emulatedKernel { return (emulated.major, emulated.minor) }
        let parts = probe.kernelRelease.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        return parts.count == 2 ? (parts[0], parts[1]) : (0, 0)
    }

    /// True when the kernel supports `op`; otherwise skips.
    static func opcode(_ op: Opcode, since linux: String, sourceLocation: SourceLocation = #_sourceLocation) -> Bool {
        if probe.supports(op) { return true }
        skip(
            .kernel, "\(op.kernelName) needs Linux \(linux) (kernel \(kernelName) lacks it)",
            sourceLocation: sourceLocation)
        return false
    }

    /// Whether the probe tried `flag` and the kernel refused it.
    static func refuses(_ flag: SetupFlags) -> Bool {
        guard let entry = probe.setupFlags.first(where: { $0.flag == flag }) else { return false }
        if case .refused = entry.result { return true }
        return false
    }

    /// True when the kernel accepts the setup flag (the probe built a ring with it); otherwise skips.
    static func setupFlag(_ flag: SetupFlags, since linux: String, sourceLocation: SourceLocation = #_sourceLocation)
        -> Bool
    {
        guard refuses(flag), let entry = probe.setupFlags.first(where: { $0.flag == flag }) else { return true }
        skip(
            .kernel, "\(entry.kernelName) needs Linux \(linux) (kernel \(kernelName): \(entry.result))",
            sourceLocation: sourceLocation)
        return false
    }

    /// True unless the probe's harmless call of the register opcode was refused; otherwise skips.
    static func register(_ op: RegisterOpcode, since linux: String, sourceLocation: SourceLocation = #_sourceLocation)
        -> Bool
    {
        guard let entry = probe.registerOpcodes.first(where: { $0.opcode == op }), case .refused = entry.result else {
            return true
        }
        skip(
            .kernel, "\(entry.kernelName) needs Linux \(linux) (kernel \(kernelName): \(entry.result))",
            sourceLocation: sourceLocation)
        return false
    }

    /// True when the kernel reports the feature bit; otherwise skips.
    static func feature(_ feature: Features, since linux: String, sourceLocation: SourceLocation = #_sourceLocation)
        -> Bool
    {
        if probe.features.contains(feature) { return true }
        let name = Features.allNamed.first { $0.flag == feature }?.kernelName ?? "\(feature)"
        skip(.kernel, "\(name) needs Linux \(linux) (kernel \(kernelName) lacks it)", sourceLocation: sourceLocation)
        return false
    }

    /// For what the probe cannot see (a flag inside an opcode's entry, which the kernel refuses
    /// with EINVAL in the completion): true when the running release is at least `major.minor`;
    /// otherwise skips naming `what`.
    static func release(
        atLeast major: Int, _ minor: Int, for what: String, sourceLocation: SourceLocation = #_sourceLocation
    ) -> Bool {
        if release >= (major, minor) { return true }
        skip(.kernel, "\(what) needs Linux \(major).\(minor) (kernel \(kernelName))", sourceLocation: sourceLocation)
        return false
    }
}
