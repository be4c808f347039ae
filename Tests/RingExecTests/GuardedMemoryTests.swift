import Glibc
import Ring
import Synchronization
import SystemPackage
import Testing

@testable import RingExec

/// The cancellation guarantee, checked against the kernel itself: buffers are released the moment
/// an awaited call returns, into `PROT_NONE` pages with a canary (`GuardedMemory`), so a kernel
/// that still touched them would fail with EFAULT or leave the canary disturbed.
@Suite(.serialized, .timeLimit(.minutes(2))) struct GuardedMemoryTests {
    /// The checker itself: a kernel copy into a released block fails with EFAULT, and a write
    /// through pages the kernel pinned before the release (as O_DIRECT DMA does) is reported.
    @Test func guardedMemoryCatchesLateKernelAccess() throws {
        GuardedMemory.enabled.store(true, ordering: .relaxed)
        defer { GuardedMemory.enabled.store(false, ordering: .relaxed) }
        let file = try TemporaryFile(contents: Array(repeating: 7, count: 8192))
        defer { file.remove() }
        var ring = try Ring(entries: 8)

        let copied = GuardedMemory.allocate(byteCount: 4096)
        GuardedMemory.release(copied)  // released too early, on purpose
        _ = ring.push(.read(file.fd, into: copied, offset: 0).userData(1))
        try ring.submitAndWait(1)
        #expect(ring.nextCompletion()?.result == -EFAULT, "a copy into a released block must fail")

        let pinned = GuardedMemory.allocate(byteCount: 4096, alignment: 4096)
        var vector = iovec(iov_base: pinned.baseAddress, iov_len: pinned.count)
        try withUnsafePointer(to: &vector) { try ring.registerBuffers(UnsafeBufferPointer(start: $0, count: 1)) }
        GuardedMemory.release(pinned)  // the kernel still holds the pages
        _ = ring.push(.readFixed(file.fd, into: pinned, offset: 0, bufferIndex: 0).userData(2))
        try ring.submitAndWait(1)
        #expect(ring.nextCompletion()?.result == 4096, "the kernel writes through its own mapping")
        try ring.unregisterBuffers()
        #expect(GuardedMemory.checkParked() >= 1, "the late write must disturb the canary")
    }

    /// Reads and writes into buffers freed the moment each call returns, a third of the tasks
    /// cancelled at random moments, on every engine, page cache and O_DIRECT: no call may return
    /// while the kernel can still use its buffer.
    @Test(arguments: EngineKind.allCases, [false, true])
    func cancelledReadsAndWritesNeverTouchReleasedMemory(engine: EngineKind, direct: Bool) async throws {
        // Skipped (or failed, when RING_REQUIRE requires the engine) where the engine cannot run.
        guard let executor = try makeExecutor(engine, entries: 64) else { return }
        defer { executor.shutdownGracefully() }
        GuardedMemory.enabled.store(true, ordering: .relaxed)
        defer { GuardedMemory.enabled.store(false, ordering: .relaxed) }
        let blocks = 64
        let file = try TemporaryFile(direct: direct, contents: Array(repeating: 1, count: blocks * 4096))
        defer { file.remove() }
        let fd = file.fd
        let waves = max(4, Int(120 * stressScale))
        final class Faults: Sendable { let count = Atomic<Int>(0) }
        let faults = Faults()
        for wave in 0..<waves {
            var tasks: [Task<Void, Never>] = []
            for slot in 0..<32 {
                let index = wave * 32 + slot
                tasks.append(
                    Task(executorPreference: executor) {
                        let buffer = GuardedMemory.allocate(byteCount: 4096, alignment: 4096)
                        defer { GuardedMemory.release(buffer) }  // as a caller would free it
                        let offset = UInt64(index % blocks) * 4096
                        do {
                            if index % 2 == 0 {
                                _ = try await executor.read(fd, into: buffer, offset: offset)
                            } else {
                                buffer.initializeMemory(as: UInt8.self, repeating: UInt8(truncatingIfNeeded: index))
                                _ = try await executor.write(fd, from: UnsafeRawBufferPointer(buffer), offset: offset)
                            }
                        } catch Errno.badAddress {
                            faults.count.add(1, ordering: .relaxed)
                        } catch {}
                    })
            }
            // Cancel a third of the wave at a random moment, most of them while in the kernel.
            let deadline = ContinuousClock.now + .milliseconds(Int.random(in: 0...2))
            while executor.operationsInFlight < 8 && ContinuousClock.now < deadline { await Task.yield() }
            for task in tasks where Int.random(in: 0..<3) == 0 { task.cancel() }
            for task in tasks { await task.value }
        }
        #expect(faults.count.load(ordering: .relaxed) == 0, "a call returned EFAULT: its buffer was released early")
        #expect(GuardedMemory.checkParked() == 0, "the kernel wrote into a buffer after its call returned")
    }
}
