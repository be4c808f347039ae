import Glibc
public import Ring

/// The I/O mechanisms a `RingExecutor` can drive.
public enum EngineKind: String, Sendable, CaseIterable, CustomStringConvertible {
    /// Linux io_uring: every operation, linked chains, multishot, provided buffers.
    case ioURing = "io_uring"
    /// Linux native AIO through libaio (`libaio.so.1` or `libaio.so.1t64`, loaded at run time; see
    /// `LibAIOLibrary`): file reads and writes
    /// (vectored too), fsync, fdatasync and poll. Buffered (non-`O_DIRECT`) I/O runs synchronously
    /// inside `io_submit`.
    case libaio
    /// glibc's POSIX aio: reads, writes and fsync, served by glibc's helper threads (one request
    /// per file descriptor at a time).
    case posixAIO = "posix-aio"

    /// The name `SWIFT_RING_ENGINE`, `ring-probe` and `ring-bench` use: `io_uring`, `libaio`, `posix-aio`.
    public var description: String { rawValue }
}

/// Which engine an executor should use.
public enum EngineChoice: Sendable, Equatable {
    /// io_uring, else libaio, else POSIX aio; the environment variable `SWIFT_RING_ENGINE`
    /// (`io_uring`, `libaio`, `posix-aio`) overrides this choice for operators.
    case automatic
    /// Exactly this engine; setup fails if it is unavailable.
    case only(EngineKind)

    /// io_uring only.
    public static let ioURing = EngineChoice.only(.ioURing)
    /// libaio only.
    public static let libaio = EngineChoice.only(.libaio)
    /// POSIX aio only.
    public static let posixAIO = EngineChoice.only(.posixAIO)

    /// The environment variable that overrides `.automatic`.
    public static let environmentVariable = "SWIFT_RING_ENGINE"
}

/// Errors about engines rather than about one I/O.
public enum EngineError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The executor's engine cannot perform this operation (e.g. `accept` on libaio).
    case unsupported(operation: String, engine: EngineKind)
    /// The engine cannot be used on this machine; `reason` says why.
    case unavailable(engine: EngineKind, reason: String)
    /// `.automatic` found no usable engine; each was passed over for the reason given.
    case noEngineAvailable([EngineSelection.PassedOver])
    /// `SWIFT_RING_ENGINE` names no engine.
    case unknownEngineName(String)
    /// The running kernel's io_uring lacks this operation (its probe does not list the opcode);
    /// `needs` is the Linux release that added it.
    case kernelLacks(operation: String, needs: KernelVersion)

    /// A sentence naming the engine and what failed.
    public var description: String {
        switch self {
        case .unsupported(let operation, let engine): "\(operation) is not supported by the \(engine) engine"
        case .unavailable(let engine, let reason): "the \(engine) engine is unavailable: \(reason)"
        case .noEngineAvailable(let reasons):
            "no I/O engine is available: " + reasons.map { "\($0.engine): \($0.reason)" }.joined(separator: "; ")
        case .unknownEngineName(let name):
            "\(EngineChoice.environmentVariable)=\(name) names no engine (use io_uring, libaio or posix-aio)"
        case .kernelLacks(let operation, let needs):
            "\(operation) needs Linux \(needs) or later: this kernel's io_uring does not offer it"
        }
    }
}

/// Which engine an executor ended up with, and why the ones before it were passed over.
public struct EngineSelection: Sendable, Equatable, CustomStringConvertible {
    /// An engine `.automatic` tried and did not take.
    public struct PassedOver: Sendable, Equatable {
        /// The engine passed over.
        public var engine: EngineKind
        /// Why: the setup error, a missing library, a refused system call.
        public var reason: String
    }
    /// The engine the executor runs.
    public var engine: EngineKind
    /// The engines tried before it, in order, each with its reason.
    public var passedOver: [PassedOver]
    /// Set when `SWIFT_RING_ENGINE` decided.
    public var fromEnvironment: Bool
    /// io_uring: the setup flags of the executor's ring, the best shape the kernel accepted
    /// (`SINGLE_ISSUER|DEFER_TASKRUN|TASKRUN_FLAG` from Linux 6.1, `COOP_TASKRUN|TASKRUN_FLAG`
    /// from 5.19, plain before). Empty for the other engines.
    public var ringFlags: SetupFlags = []
    /// What the engine does differently on this kernel and why: ring shapes refused, features
    /// missing and the fallback used instead (each names the Linux release that would add it).
    /// Empty on a kernel that offers everything.
    public var adaptations: [String] = []

    /// A selection as the executor records it (tests and scripted engines build them).
    public init(
        engine: EngineKind, passedOver: [PassedOver], fromEnvironment: Bool, ringFlags: SetupFlags = [],
        adaptations: [String] = []
    ) {
        self.engine = engine
        self.passedOver = passedOver
        self.fromEnvironment = fromEnvironment
        self.ringFlags = ringFlags
        self.adaptations = adaptations
    }

    /// The engine, its ring shape, and every engine passed over or adaptation made, in one line.
    public var description: String {
        var text = engine.rawValue
        if engine == .ioURing { text += " (ring: \(ringFlags.isEmpty ? "plain" : ringFlags.description))" }
        if fromEnvironment { text += " (from \(EngineChoice.environmentVariable))" }
        for adaptation in adaptations { text += "; \(adaptation)" }
        for skipped in passedOver { text += "; passed over \(skipped.engine): \(skipped.reason)" }
        return text
    }
}

/// The contract every engine implements; the executor is written once against it. All methods
/// except `wake()` and `supports(_:)` are called only on the executor's loop thread.
///
/// Operations are described by `SubmissionEntry` values (the io_uring encoding is the richest,
/// so the other engines read the subset they can perform). Each carries a `token`; the engine
/// reports exactly one completion per prepared token (several for multishot, the last without
/// `CQEFlags.more`), including for cancelled operations. Tokens below
/// `ReservedToken.limit` are never reported.
protocol IOEngine: AnyObject {
    var kind: EngineKind { get }
    /// Whether this engine can perform `opcode` with these entry flags. Thread-safe.
    func supports(_ entry: SubmissionEntry) -> Bool
    /// The most operations `prepare` can ever hold at once (a longer chain can never start).
    var submissionCapacity: Int { get }
    /// Operations that `prepare` accepts right now (a linked chain needs all its slots at once).
    var submissionSpace: Int { get }
    /// Queues an operation; false when there is no room (retry after reaping). An engine may
    /// hand a full batch of `submitBatch` operations to the kernel right here.
    func prepare(_ entry: SubmissionEntry, token: UInt64) -> Bool
    /// How many prepared operations an engine lets wait before it submits them itself
    /// (`RingExecutor.init`'s `submitBatch`); `Int.max` when it only submits in `submit`.
    var submitBatch: Int { get }
    /// Asks the engine to end operation `token` early. Its completion still arrives (with
    /// `-ECANCELED`, or its real result if it could not be stopped). False when there is no room
    /// to ask now.
    func cancel(token: UInt64) -> Bool
    /// Best effort: asks the engine to end every operation in flight.
    func cancelAll()
    /// Hands prepared operations to the kernel. With `wait`, blocks until a completion is ready,
    /// `wake()` is called, or `timeout` passes.
    func submit(wait: Bool, timeout: Duration?)
    /// Calls `body(token, result, flags)` for every completion ready now; `result` is `-errno`
    /// on failure.
    func reap(_ body: (UInt64, Int32, UInt32) -> Void)
    /// Thread-safe: ends a blocked `submit(wait: true)`.
    func wake()
    /// System calls the loop thread has made into this engine so far (not counting work done on
    /// other threads: glibc's POSIX aio helpers, the kernel's own workers).
    var systemCalls: Int { get }
    /// Called once on the loop thread when nothing is in flight: releases kernel resources and
    /// makes sure the kernel no longer touches any buffer the engine owns.
    func close()
}

/// Reserved `user_data` values. Operation records are heap addresses (16-byte aligned, never
/// this small); engines use these for their own requests and never report them.
enum ReservedToken {
    /// The armed eventfd read that wakes an io_uring loop.
    static let wake: UInt64 = 1
    /// Completions nobody waits for: cancel requests, wake-up messages to other rings.
    static let ignored: UInt64 = 2
    /// io_uring without `EXT_ARG`: the `TIMEOUT` entry that bounds a wait.
    static let waitTimeout: UInt64 = 3
    /// io_uring setup: the entries that ask the kernel what it accepts.
    static let probe: UInt64 = 4
    static let limit: UInt64 = 16
}

/// Relative timers for engines without kernel timeouts (libaio, POSIX aio): a `TIMEOUT` entry
/// becomes a deadline; the engine waits no longer than the nearest one and reports expired ones
/// with `-ETIME`, like io_uring.
struct SoftTimers {
    private var deadlines: [(deadline: ContinuousClock.Instant, token: UInt64)] = []

    var isEmpty: Bool { deadlines.isEmpty }

    /// Arms a timer for a `TIMEOUT` entry (relative, or absolute on `CLOCK_MONOTONIC`).
    mutating func add(_ entry: SubmissionEntry, token: UInt64) {
        let spec = UnsafePointer<KernelTimespec>(bitPattern: UInt(entry.addr))!.pointee
        let duration = Duration.seconds(spec.seconds) + Duration.nanoseconds(spec.nanoseconds)
        let deadline: ContinuousClock.Instant
        if entry.opFlags & TimeoutFlags.absolute.rawValue != 0 {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            let nowDuration = Duration.seconds(now.tv_sec) + Duration.nanoseconds(now.tv_nsec)
            deadline = ContinuousClock.now + (duration - nowDuration)
        } else {
            deadline = ContinuousClock.now + duration
        }
        let index = deadlines.firstIndex { $0.deadline > deadline } ?? deadlines.endIndex
        deadlines.insert((deadline, token), at: index)
    }

    /// Removes timer `token`; true if it was armed.
    mutating func remove(_ token: UInt64) -> Bool {
        guard let index = deadlines.firstIndex(where: { $0.token == token }) else { return false }
        deadlines.remove(at: index)
        return true
    }

    /// Disarms every timer, returning their tokens (for cancel-all: one pass, not one search each).
    mutating func removeAll() -> [UInt64] {
        defer { deadlines.removeAll() }
        return deadlines.map(\.token)
    }

    /// How long until the nearest deadline (zero if one has passed), or nil with no timers.
    func untilNearest() -> Duration? {
        guard let first = deadlines.first else { return nil }
        return max(.zero, first.deadline - ContinuousClock.now)
    }

    /// Removes and reports every expired timer.
    mutating func expire(_ body: (UInt64) -> Void) {
        guard !deadlines.isEmpty else { return }
        let now = ContinuousClock.now
        var expired = 0
        while expired < deadlines.count && deadlines[expired].deadline <= now {
            body(deadlines[expired].token)
            expired += 1
        }
        if expired > 0 { deadlines.removeFirst(expired) }
    }
}

/// Completions the aio engines produce themselves: NOP at once, TIMEOUT from their own timers,
/// and requests they refused or cancelled before the kernel saw them.
struct LocalCompletions {
    private var ready: [(UInt64, Int32)] = []
    private var timers = SoftTimers()

    var isEmpty: Bool { ready.isEmpty }

    /// Takes NOP and TIMEOUT entries; false for anything the engine must do itself.
    mutating func take(_ entry: SubmissionEntry, token: UInt64) -> Bool {
        switch entry.op {
        case .nop: ready.append((token, 0))
        case .timeout: timers.add(entry, token: token)
        default: return false
        }
        return true
    }

    mutating func post(_ token: UInt64, _ result: Int32) { ready.append((token, result)) }

    /// Cancels timer `token`; true if it was armed (its completion is then posted).
    mutating func cancelTimer(_ token: UInt64) -> Bool {
        guard timers.remove(token) else { return false }
        ready.append((token, -ECANCELED))
        return true
    }

    mutating func cancelAllTimers() {
        for token in timers.removeAll() { ready.append((token, -ECANCELED)) }
    }

    /// How long the engine may wait before a timer is due.
    func untilNextTimer() -> Duration? { timers.untilNearest() }

    /// Reports expired timers (`-ETIME`) and everything posted.
    mutating func deliver(_ body: (UInt64, Int32, UInt32) -> Void) {
        timers.expire { ready.append(($0, -ETIME)) }
        guard !ready.isEmpty else { return }
        let batch = ready
        ready.removeAll(keepingCapacity: true)
        for (token, result) in batch { body(token, result, 0) }
    }
}

/// The shorter of two optional timeouts (nil = forever).
func shorter(_ a: Duration?, _ b: Duration?) -> Duration? {
    switch (a, b) {
    case (nil, let x), (let x, nil): x
    case (let x?, let y?): min(x, y)
    }
}

extension timespec {
    /// A relative timeout for the aio engines' waits (negative durations count as zero).
    init(_ duration: Duration) {
        let (seconds, attoseconds) = duration.components
        self.init(tv_sec: Int(max(0, seconds)), tv_nsec: Int(max(0, attoseconds / 1_000_000_000)))
    }
}
