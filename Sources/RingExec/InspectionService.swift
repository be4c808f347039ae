import Glibc
import Ring
import Synchronization
public import SystemPackage

/// Opt-in: lets `ring-top` (or any tool) read this process's executors from outside — each live
/// executor's counters (`RingExecutor.statistics()`) and in-flight list
/// (`RingExecutor.inFlightOperations()`) — on a Unix socket in the abstract namespace named
/// `swift-ring-inspect.<pid>` (`socketName(pid:)`; no file, the kernel frees the name when the
/// process exits).
///
/// A client connects and reads one JSON document to the end of the stream:
/// `{"pid": N, "executors": [{"id": N, "engine": "io_uring", "responsive": true, "ringFD": N or null,
/// "counters": {"submitted": N, ...}, "inFlight": [{"operation": "recv", "fd": N or null,
/// "fixedFile": false, "length": N, "entries": N, "stream": false, "state": "submitted",
/// "ageSeconds": N or null, "task": "name" or null}]}]}` (counters under `Statistics.namedCounters`' names; states as
/// `RingExecutor.InFlightOperation.State` spells them: "queued", "submitted", "cancel requested",
/// "awaiting notification"). An executor
/// whose loop does not take the request within a second is listed with `"responsive": false` and
/// its id and engine only.
///
/// Only clients of the same effective user, or root, are answered (`SO_PEERCRED`); others are
/// disconnected. Abstract sockets belong to the network namespace, so the tool must run in the
/// process's. One service per process: a second `start` fails with `EADDRINUSE`. The answer
/// waits for each executor's next loop tick, so an executor whose thread is stuck in a long job
/// delays it; a stall on I/O does not.
public final class InspectionService: Sendable {
    /// The abstract socket name the service of process `pid` (default: this one) listens on.
    public static func socketName(pid: Int32? = nil) -> String { "swift-ring-inspect.\(pid ?? getpid())" }

    private let listener: FileDescriptor
    private let serving: Task<Void, Never>
    /// Set by the first `stop()`: the descriptor is closed once (a second close could hit a
    /// descriptor the process opened meanwhile under the same number).
    private let stopped = Atomic<Bool>(false)

    /// Starts answering on `executor` (its loop thread accepts and answers; every live executor
    /// of the process is reported). Throws the `Errno` of `socket`, `bind` or `listen`, and
    /// `notSupported` when `executor` cannot accept connections (the aio engines, a kernel
    /// without `IORING_OP_ACCEPT`) and `ESHUTDOWN` when it has shut down: the name would be
    /// taken and never answered.
    public static func start(on executor: RingExecutor) throws(Errno) -> InspectionService {
        guard executor.uringEngine?.offers(.accept) == true else { throw .notSupported }
        guard !executor.isShutDown else { throw Errno(rawValue: ESHUTDOWN) }
        let raw = Glibc.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard raw >= 0 else { throw Errno(rawValue: errno) }
        let listener = FileDescriptor(rawValue: raw)
        var (address, length) = abstractAddress(socketName())
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.bind(raw, $0, length) }
        }
        guard bound == 0, Glibc.listen(raw, 16) == 0 else {
            let error = Errno(rawValue: errno)
            try? listener.close()
            throw error
        }
        return InspectionService(listener: listener, executor: executor)
    }

    /// `start(on:)` when the environment variable `SWIFT_RING_INSPECT` is `1`, else nil: a
    /// program calls this to let its operators turn the service on without rebuilding it.
    public static func startIfRequested(on executor: RingExecutor) throws(Errno) -> InspectionService? {
        guard let value = getenv("SWIFT_RING_INSPECT"), String(cString: value) == "1" else { return nil }
        return try start(on: executor)
    }

    private init(listener: FileDescriptor, executor: RingExecutor) {
        self.listener = listener
        // One accept at a time, awaited: when `stop()` cancels this task, the accept returns only
        // once the kernel has let go of the listener, so the socket (and its name) is released as
        // soon as `stop()` closes it. (A multishot stream ends for its consumer before its
        // request has ended in the kernel.)
        serving = Task(executorPreference: executor) {
            while !Task.isCancelled {
                let connection: FileDescriptor
                do {
                    connection = try await executor.accept(listener)
                } catch let error as Errno where Self.transient.contains(error) {
                    try? await Task.sleep(for: .milliseconds(100))  // out of descriptors or memory
                    continue
                } catch {
                    return  // stopped, the executor shut down, or the listener is gone
                }
                defer { try? connection.close() }
                guard Self.isTrusted(connection) else { continue }
                let document = await Self.document()
                // A client that does not read must not hold up the next one.
                _ = try? await executor.withTimeout(.seconds(1)) {
                    try await executor.send(connection, bytes: Array(document.utf8))
                }
            }
        }
    }

    /// Accept errors the service waits out instead of ending.
    private static let transient: Set<Errno> = [
        .tooManyOpenFiles, .tooManyOpenFilesInSystem, .noBufferSpace, .noMemory, .connectionAbort,
        .resourceTemporarilyUnavailable, .interrupted,
    ]

    /// Stops answering: ends the accept stream, waits for it, closes the socket (the name is
    /// free again afterwards). Later calls return at once. Call it before dropping the service:
    /// until then its socket stays open (also after its executor has shut down, which ends the
    /// answering).
    public func stop() async {
        guard !stopped.exchange(true, ordering: .acquiringAndReleasing) else { return }
        serving.cancel()
        await serving.value
        try? listener.close()
    }

    /// Whether the peer runs as this process's effective user or as root.
    private static func isTrusted(_ connection: FileDescriptor) -> Bool {
        // `struct ucred` (pid, uid, gid), which Glibc's module map leaves out (_GNU_SOURCE).
        var credentials = (pid: Int32(0), uid: UInt32(0), gid: UInt32(0))
        var size = socklen_t(MemoryLayout.size(ofValue: credentials))
        guard getsockopt(connection.rawValue, SOL_SOCKET, SO_PEERCRED, &credentials, &size) == 0 else { return false }
        return credentials.uid == geteuid() || credentials.uid == 0
    }

    /// The JSON document a client reads.
    static func document() async -> String {
        var executors: [String] = []
        // One executor held at a time (a shut-down executor must stay free to be released), and
        // each answers within a second or is reported unresponsive: a loop stuck in a long job
        // must not stall the answer for the others.
        for id in WakeRegistry.shared.ids() {
            guard let executor = WakeRegistry.shared.executor(id), !executor.isShutDown else { continue }
            guard let (statistics, operations) = await executor.snapshot(within: .seconds(1)) else {
                executors.append(
                    "{\"id\": \(id), \"engine\": \(quoted(executor.engineSelection.engine.description)), "
                        + "\"responsive\": false}")
                continue
            }
            let counters = statistics.namedCounters.map { "\(quoted($0.name)): \($0.value)" }
            let inFlight = operations.map { operation in
                let fields = [
                    "\"operation\": \(quoted(operation.operation))",
                    "\"fd\": \(operation.descriptor.map(String.init) ?? "null")",
                    "\"fixedFile\": \(operation.fixedFile)", "\"length\": \(operation.length)",
                    "\"entries\": \(operation.entries)", "\"stream\": \(operation.isStream)",
                    "\"state\": \(quoted(operation.state.rawValue))",
                    "\"ageSeconds\": \(operation.age.map { seconds($0) } ?? "null")",
                    "\"task\": \(operation.task.map(quoted) ?? "null")",
                ]
                return "{" + fields.joined(separator: ", ") + "}"
            }
            let fields = [
                "\"id\": \(executor.wakeID)", "\"engine\": \(quoted(executor.engineSelection.engine.description))",
                "\"responsive\": true",
                "\"ringFD\": \(executor.engineRingFD.map(String.init) ?? "null")",
                "\"counters\": {" + counters.joined(separator: ", ") + "}",
                "\"inFlight\": [" + inFlight.joined(separator: ", ") + "]",
            ]
            executors.append("{" + fields.joined(separator: ", ") + "}")
        }
        return "{\"pid\": \(getpid()), \"executors\": [" + executors.joined(separator: ", ") + "]}\n"
    }

    /// A JSON string literal (the names here are ASCII; anything else is escaped anyway).
    private static func quoted(_ text: String) -> String {
        var result = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": result += "\\\""
            case "\\": result += "\\\\"
            case _ where scalar.value < 0x20 || scalar.value > 0x7E:
                let hex = String(scalar.value, radix: 16)
                result += scalar.value > 0xFFFF ? "?" : "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: result.unicodeScalars.append(scalar)
            }
        }
        return result + "\""
    }

    private static func seconds(_ duration: Duration) -> String {
        let (whole, attoseconds) = duration.components
        return String(Double(whole) + Double(attoseconds) / 1e18)
    }

    /// `sockaddr_un` for an abstract name: a leading NUL, then the name, no terminator.
    static func abstractAddress(_ name: String) -> (sockaddr_un, socklen_t) {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(name.utf8.prefix(MemoryLayout.size(ofValue: address.sun_path) - 1))
        withUnsafeMutableBytes(of: &address.sun_path) { path in
            path[0] = 0
            for (index, byte) in bytes.enumerated() { path[index + 1] = byte }
        }
        return (address, socklen_t(MemoryLayout<sa_family_t>.size + 1 + bytes.count))
    }
}
