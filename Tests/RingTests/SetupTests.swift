import Foundation
import Glibc
import Synchronization
import SystemPackage
import Testing

@testable import Ring

/// Bad setup input gets a typed error naming the cause; special setups behave as documented.
@Suite(.timeLimit(.minutes(1))) struct SetupTests {
    func setupError(_ entries: Int, _ options: RingOptions = RingOptions()) -> RingSetupError? {
        do {
            _ = try Ring(entries: entries, options: options)
            return nil
        } catch {
            return error
        }
    }

    @Test func zeroEntries() {
        let e = setupError(0)
        #expect(e?.errno == .invalidArgument)
        #expect(e?.explanation.contains("at least 1") == true)
    }

    @Test func unrepresentableEntries() {
        for bad in [-1, Int(UInt32.max) + 1, Int.max] {
            let e = setupError(bad)
            #expect(e?.errno == .invalidArgument)
            #expect(e?.explanation.contains("does not fit") == true)
        }
    }

    @Test func aboveMaximumNeedsClamp() throws {
        let e = setupError(1 << 20)
        #expect(e?.errno == .invalidArgument)
        #expect(e?.explanation.contains(".clamp") == true)
        let ring = try Ring(entries: 1 << 20, options: RingOptions(flags: .clamp))
        #expect(ring.submissionCapacity == Int(Ring.maximumEntries))
    }

    @Test func roundsUpToPowerOfTwo() throws {
        let ring = try Ring(entries: 5)
        #expect(ring.submissionCapacity == 8)
        #expect(ring.completionCapacity == 16)
        var options = RingOptions()
        options.completionEntries = 100
        let sized = try Ring(entries: 4, options: options)
        #expect(sized.completionCapacity == 128)
    }

    @Test func unknownAndForbiddenFlags() {
        let unknown = setupError(8, RingOptions(flags: SetupFlags(rawValue: 1 << 30)))
        #expect(unknown?.errno == .invalidArgument)
        #expect(unknown?.explanation.contains("setup flags") == true)
        // DEFER_TASKRUN without SINGLE_ISSUER is a combination the kernel forbids.
        #expect(setupError(8, RingOptions(flags: .deferTaskRun))?.errno == .invalidArgument)
        // A CQ smaller than the SQ.
        var small = RingOptions()
        small.completionEntries = 2
        #expect(setupError(8, small)?.errno == .invalidArgument)
    }

    @Test func attachToSomethingThatIsNotARing() throws {
        let file = try TemporaryFile()
        var options = RingOptions()
        options.attachWorkQueueOf = file.fd
        let e = setupError(8, options)
        #expect(e != nil)
        #expect(e?.explanation.contains("not an io_uring fd") == true || e?.errno == .invalidArgument)
    }

    @Test func disabledRingRefusesUntilEnabled() throws {
        var ring = try Ring(entries: 8, options: RingOptions(flags: .disabled))
        ring.mustPush(.nop().userData(1))
        var refused: Errno? = nil
        do { try ring.submit() } catch { refused = error }
        #expect(refused == Errno(rawValue: EBADFD), "a disabled ring refuses submission with EBADFD")
        try ring.enable()
        let done = try ring.collect(1)
        #expect(done.first?.userData == 1)
    }

    /// Registered ring fds belong to the registering thread: another thread must fall back to the
    /// plain fd and keep working.
    @Test func ringMovedToAnotherThreadStillWorks() throws {
        // The thread owns the box's variables until it stores `done` (release); the test reads
        // them only after loading it (acquire).
        final class Box: @unchecked Sendable {
            var ring: Ring?
            var registeredThere = true
            var result: Int32 = -1
            let done = Atomic<Bool>(false)
        }
        let box = Box()
        var options = RingOptions()
        options.registerRingFD = true
        let ring = try Ring(entries: 8, options: options)
        let registeredHere = ring.usesRegisteredRingFD
        #expect(registeredHere)
        box.ring = consume ring
        let thread = Thread {
            defer { box.done.store(true, ordering: .releasing) }
            guard var moved = box.ring.take() else { return }
            box.registeredThere = moved.usesRegisteredRingFD
            guard moved.push(.nop().userData(5)) else { return }
            _ = try? moved.submitAndWait(1)
            moved.forEachCompletion { box.result = $0.result }
            _ = consume moved  // deinit off the registering thread must not crash or leak the fd
        }
        thread.start()
        let deadline = ContinuousClock.now + .seconds(20)
        while !box.done.load(ordering: .acquiring) && ContinuousClock.now < deadline { usleep(1000) }
        let finished = box.done.load(ordering: .acquiring)
        try #require(finished, "the thread finished within 20 s")
        #expect(!box.registeredThere)
        #expect(box.result == 0)
    }

    /// SQPOLL: after the poll thread's idle time it sleeps and sets NEED_WAKEUP; the next submit
    /// must wake it (full fence, then check the flag).
    @Test func sqpollWakesAfterIdle() throws {
        var options = RingOptions(flags: .sqPoll)
        options.sqThreadIdle = .milliseconds(1)
        guard var ring = RingShape(name: "sqpoll-idle", options: options).make(entries: 8) else { return }
        ring.mustPush(.nop().userData(1))
        _ = try ring.collect(1)
        let deadline = ContinuousClock.now + .seconds(5)
        while !ring.submissionRingFlags.contains(.needWakeup) && ContinuousClock.now < deadline { usleep(1000) }
        let asleep = ring.submissionRingFlags.contains(.needWakeup)
        #expect(asleep, "the poll thread should sleep after 1 ms idle")
        for round in 0..<20 {
            ring.mustPush(.nop().userData(UInt64(100 + round)))
            let done = try ring.collect(1)
            #expect(done.first?.userData == UInt64(100 + round))
            usleep(3000)  // let it fall asleep again
        }
    }

    @Test func sqe128HandsOutZeroedCommandArea() throws {
        guard var ring = RingShape(name: "sqe128", options: RingOptions(flags: .sqe128)).make(entries: 4) else {
            return
        }
        let command = [UInt8](repeating: 0xAB, count: 16)
        let pushed = try command.withUnsafeBytes { try ring.push(.nop().userData(1), command: $0) }
        #expect(pushed)
        let done = try ring.collect(1)
        #expect(done.first?.result == 0)
        let big = [UInt8](repeating: 0, count: 65)
        var rejected: Errno? = nil
        do { _ = try big.withUnsafeBytes { try ring.push(.nop(), command: $0) } } catch { rejected = error as? Errno }
        #expect(rejected == .invalidArgument)
    }

    @Test func pushWithCommandOnPlainRingIsRejected() throws {
        var ring = try Ring(entries: 4)
        var rejected: Errno? = nil
        do {
            _ = try [UInt8](repeating: 0, count: 8).withUnsafeBytes { try ring.push(.nop(), command: $0) }
        } catch { rejected = error as? Errno }
        #expect(rejected == .invalidArgument)
        let pending = ring.pendingSubmissions
        #expect(pending == 0, "a rejected push leaves the SQ untouched")
    }
}

/// Flips the host-wide `kernel.io_uring_disabled` sysctl, so it runs only when asked
/// (`RING_TEST_SYSCTL=1`, as root, with no other test running): `.ci/run` does that.
@Suite(.timeLimit(.minutes(1))) struct SysctlFaultTests {
    static let path = "/proc/sys/kernel/io_uring_disabled"

    @Test func disabledSysctlGivesTypedErrorNamingIt() throws {
        guard ProcessInfo.processInfo.environment["RING_TEST_SYSCTL"] == "1" else {
            skip(.sysctl, "set RING_TEST_SYSCTL=1 and run alone as root (it changes a host-wide sysctl)")
            return
        }
        guard let original = KernelSettings.ioUringDisabled, access(Self.path, W_OK) == 0 else {
            skip(.sysctl, "\(Self.path) is absent or not writable here")
            return
        }
        func write(_ value: Int) throws {
            try "\(value)\n".write(toFile: Self.path, atomically: false, encoding: .utf8)
        }
        defer { try? write(original) }
        try write(2)
        do {
            _ = try Ring(entries: 8)
            Issue.record("ring creation should fail with kernel.io_uring_disabled=2")
        } catch {
            #expect(error.errno == .notPermitted)
            #expect(error.explanation.contains("io_uring_disabled=2"))
        }
        let report = Probe.run()
        #expect(report.unavailableReason?.errno == .notPermitted)
        try write(original)
        _ = try Ring(entries: 8)  // works again once restored
    }

    /// `fs.aio-max-nr` exhausted: libaio's io_setup fails with EAGAIN, which the libaio engine
    /// reports naming the limit, and `.automatic` moves on to POSIX aio. io_uring is blocked with
    /// seccomp in the helper so that libaio would otherwise be chosen.
    @Test func aioLimitExhaustedMovesAutomaticToPosixAIO() async throws {
        guard ProcessInfo.processInfo.environment["RING_TEST_SYSCTL"] == "1" else {
            skip(.sysctl, "set RING_TEST_SYSCTL=1 and run alone as root (it changes a host-wide sysctl)")
            return
        }
        let maxPath = "/proc/sys/fs/aio-max-nr"
        guard let original = KernelSettings.readInteger(maxPath),
            let used = KernelSettings.readInteger("/proc/sys/fs/aio-nr"),
            access(maxPath, W_OK) == 0
        else {
            skip(.sysctl, "\(maxPath) is absent or not writable here")
            return
        }
        guard libaioInstalled else {
            skip(.libaio, "libaio is not installed (libaio1t64, or libaio1 before Debian 13 / Ubuntu 24.04)")
            return
        }
        defer { try? "\(original)\n".write(toFile: maxPath, atomically: false, encoding: .utf8) }
        try "\(used)\n".write(toFile: maxPath, atomically: false, encoding: .utf8)
        guard let out = try await FaultInjectionTests.runHelper(["--engine", "io_uring_setup=EPERM"]) else { return }
        #expect(out.hasPrefix("engine=posix-aio io=ok"), "\(out)")
        #expect(out.contains("passed-over libaio: io_setup failed"), "\(out)")
        #expect(out.contains("fs.aio-max-nr"), "\(out)")
    }
}
