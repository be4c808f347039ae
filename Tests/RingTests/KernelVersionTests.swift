import Glibc
import SystemPackage
import Testing

@testable import Ring

/// The release tables (`Opcode.introduced` & co.) and the older-kernel emulation built on them.
@Suite struct KernelVersionTests {
    @Test func releasesParseTheirLeadingMajorAndMinor() {
        #expect(KernelVersion(release: "6.1.0-28-amd64") == KernelVersion(6, 1))
        #expect(KernelVersion(release: "6.18.44-fc-v1045") == KernelVersion(6, 18))
        #expect(KernelVersion(release: "5.15") == KernelVersion(5, 15))
        #expect(KernelVersion(release: "unknown") == nil)
        #expect(KernelVersion(release: "6") == nil)
        #expect(KernelVersion(6, 1) < KernelVersion(6, 12))
        #expect(KernelVersion(5, 19) < KernelVersion(6, 0))
    }

    @Test func everyNamedInterfaceHasARelease() {
        for (opcode, name) in Opcode.allKnown { #expect(opcode.introduced != nil, "\(name)") }
        for (flag, name) in SetupFlags.allNamed { #expect(flag.introduced != nil, "\(name)") }
        for (flag, name) in Features.allNamed { #expect(flag.introduced != nil, "\(name)") }
        for (opcode, name) in RegisterOpcode.allKnown { #expect(opcode.introduced != nil, "\(name)") }
    }

    /// The tables are facts about mainline Linux; the running kernel's answers check them at its
    /// own release (the kernel matrix runs this on every kernel it boots). A distribution kernel
    /// that backports an interface would fail here, and that is worth knowing.
    @Test func tablesAgreeWithTheRunningKernel() throws {
        // Under SWIFT_RING_EMULATE_KERNEL every ring (the probe's too) answers as that kernel.
        guard let running = KernelEmulation.fromEnvironment ?? KernelVersion.running else {
            skip(.kernel, "uname -r does not start with major.minor")
            return
        }
        let ring = try Ring(entries: 8)
        let (_, supported) = try Probe.opcodes(of: ring)
        for (opcode, name) in Opcode.allKnown {
            let expected = opcode.introduced! <= running
            #expect(
                supported.contains(opcode.rawValue) == expected, "\(name) (Linux \(opcode.introduced!)) on \(running)")
        }
        for (flag, name) in Features.allNamed {
            let expected = flag.introduced! <= running
            #expect(ring.features.contains(flag) == expected, "\(name) (Linux \(flag.introduced!)) on \(running)")
        }
        for (flag, name) in SetupFlags.allNamed {
            let result = Probe.trySetupFlag(flag, sibling: ring.fd)
            if case .notTried = result { continue }
            let expected = flag.introduced! <= running
            #expect((result == .accepted) == expected, "\(name) (Linux \(flag.introduced!)) on \(running): \(result)")
        }
        for (opcode, name) in RegisterOpcode.allKnown {
            let result = Probe.tryRegister(opcode)
            if case .notTried = result { continue }
            let expected = opcode.introduced! <= running
            #expect((result == .accepted) == expected, "\(name) (Linux \(opcode.introduced!)) on \(running): \(result)")
        }
    }

    @Test func anEmulatedKernelRefusesNewerSetupFlagsNamingTheirRelease() throws {
        var options = RingOptions(flags: [.singleIssuer, .deferTaskRun])
        options.emulatedKernel = KernelVersion(5, 15)
        do {
            _ = try Ring(entries: 8, options: options)
            Issue.record("an emulated 5.15 accepted DEFER_TASKRUN")
        } catch {
            #expect(error.errno == .invalidArgument)
            #expect(error.explanation.contains("IORING_SETUP_SINGLE_ISSUER needs Linux 6.0"))
            #expect(error.explanation.contains("IORING_SETUP_DEFER_TASKRUN needs Linux 6.1"))
            #expect(error.explanation.contains("emulating Linux 5.15"))
        }
        options.flags = [.coopTaskRun]
        #expect(throws: RingSetupError.self) { _ = try Ring(entries: 8, options: options) }
        options.flags = [.sqPoll, .disabled]  // 5.1 and 5.10: fine on 5.15
        _ = try Ring(entries: 8, options: options)
    }

    @Test func anEmulatedKernelReportsOnlyItsFeaturesOpcodesAndRegisterCalls() throws {
        var options = RingOptions()
        options.emulatedKernel = KernelVersion(5, 15)
        options.registerRingFD = true
        let ring = try Ring(entries: 8, options: options)
        #expect(ring.emulatedKernel == KernelVersion(5, 15))
        #expect(ring.features.contains(.extArg))  // 5.11
        #expect(!ring.features.contains(.cqeSkip))  // 5.17
        let registered = ring.usesRegisteredRingFD
        #expect(!registered)  // RING_FDS: 5.18
        let (last, supported) = try Probe.opcodes(of: ring)
        #expect(last == Int(Opcode.linkat.rawValue))  // LINKAT, 5.15, is the last
        #expect(supported.contains(Opcode.linkat.rawValue))
        #expect(!supported.contains(Opcode.msgRing.rawValue))
        // SYNC_CANCEL: 6.0; PBUF_RING: 5.19.
        #expect(throws: Errno.invalidArgument) { try ring.cancelSynchronously(userData: 1, timeout: .milliseconds(1)) }
        #expect(throws: Errno.invalidArgument) { _ = try BufferRing(ring: ring, group: 1, count: 2, bufferSize: 64) }
        _ = try ring.setIOWorkerLimits()  // 5.15: still there
    }

    /// The probe's `last_op` is the kernel's highest opcode number (IORING_OP_LAST - 1), as the
    /// booted kernels answered (kernel matrix, ring-probe --json): 6.1.0-57 said 48
    /// (SENDMSG_ZC), 6.12.117 said 57 (LISTEN). An emulated kernel says the same.
    @Test(
        arguments: [
            (KernelVersion(6, 1), Opcode.sendmsgZC), (KernelVersion(6, 12), Opcode.listen),
            (KernelVersion(5, 10), Opcode.tee),
        ] as [(KernelVersion, Opcode)])
    func anEmulatedKernelsLastOpcodeIsItsHighestOpcode(version: KernelVersion, highest: Opcode) throws {
        guard let running = KernelVersion.running, version < running else {
            // Emulating a kernel no older than the running one changes nothing (the kernel matrix
            // runs this on 6.1, where 6.12 cannot be emulated).
            skip(.kernel, "emulating Linux \(version) needs a newer running kernel")
            return
        }
        var options = RingOptions()
        options.emulatedKernel = version
        let ring = try Ring(entries: 8, options: options)
        let (last, supported) = try Probe.opcodes(of: ring)
        #expect(last == Int(highest.rawValue))
        #expect(supported.max() == highest.rawValue)
    }

    /// Incremental buffer consumption (IOU_PBUF_RING_INC) arrived in 6.12; older kernels with
    /// buffer rings refuse the flag with EINVAL, and so does an emulated one.
    @Test func anEmulatedKernelBefore612RefusesIncrementalBufferRings() throws {
        var options = RingOptions()
        options.emulatedKernel = KernelVersion(6, 11)
        let ring = try Ring(entries: 8, options: options)
        #expect(throws: Errno.invalidArgument) {
            _ = try BufferRing(ring: ring, group: 1, count: 2, bufferSize: 64, incremental: true)
        }
        _ = try BufferRing(ring: ring, group: 2, count: 2, bufferSize: 64)  // 5.19: still there
        guard let running = KernelVersion.running, running >= KernelVersion(6, 12) else { return }
        options.emulatedKernel = KernelVersion(6, 12)
        let newer = try Ring(entries: 8, options: options)
        _ = try BufferRing(ring: newer, group: 1, count: 2, bufferSize: 64, incremental: true)
    }

    @Test func emulatingTheRunningKernelOrANewerOneChangesNothing() throws {
        guard let running = KernelVersion.running else {
            skip(.kernel, "uname -r does not start with major.minor")
            return
        }
        var options = RingOptions(flags: [.singleIssuer, .deferTaskRun])
        options.emulatedKernel = KernelVersion(running.major + 1, 0)
        let ring = try Ring(entries: 8, options: options)
        #expect(ring.emulatedKernel == nil)
    }
}
