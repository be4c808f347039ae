import Glibc
import RingExec
import SystemPackage
import Testing

/// Fixed buffers own their pool; pools are unregistered before their memory goes (issue 13,
/// item 9). Giving a buffer back twice does not compile (`give` consumes the non-copyable
/// buffer), so only the run-time check for a buffer of another pool is tested here.
@Suite(.timeLimit(.minutes(1))) struct FixedBufferLifetimeTests {
    /// Under the old code the pool died with its last reference although a buffer was still
    /// out: its memory was freed (the READ_FIXED then wrote into freed memory) and the table
    /// stayed registered, so a new table was refused with EBUSY.
    @Test func aBufferKeepsItsPoolAliveAndTheTableIsUnregisteredAfterwards() async throws {
        let executor = try RingExecutor(entries: 16)
        defer { executor.shutdownGracefully() }
        let file = try TemporaryFile(contents: pattern(count: 4096))
        defer { file.remove() }
        weak var weakPool: FixedBuffers?
        var buffer: FixedBuffers.Buffer?
        do {
            let pool = try await executor.registerFixedBuffers(count: 2, size: 4096)
            weakPool = pool
            buffer = pool.take()
        }  // the caller's last reference to the pool is gone
        #expect(weakPool != nil, "the checked-out buffer keeps its pool")
        guard let held = buffer.take() else {
            Issue.record("no buffer")
            return
        }
        #expect(try await executor.read(file.fd, into: held, offset: 0) == 4096)
        #expect(sameBytes(Array(held.bytes), pattern(count: 4096), at: 0), "the data the read put in the buffer")
        _ = consume held  // the pool's last owner
        #expect(weakPool == nil)
        // The loop unregisters the old table (then frees its memory): a new one is accepted.
        var registered: FixedBuffers?
        while registered == nil {
            do {
                registered = try await executor.registerFixedBuffers(count: 1, size: 4096)
            } catch Errno.resourceBusy {
                try await executor.nop()  // let the loop run the unregistration
            }
        }
    }

    @Test func givingABufferToAnotherPoolThrowsAndReturnsItHome() async throws {
        let first = try RingExecutor(entries: 16)
        defer { first.shutdownGracefully() }
        let second = try RingExecutor(entries: 16)
        defer { second.shutdownGracefully() }
        let a = try await first.registerFixedBuffers(count: 2, size: 4096)
        let b = try await second.registerFixedBuffers(count: 2, size: 4096)
        guard let buffer = a.take() else {
            Issue.record("no buffer")
            return
        }
        #expect(a.available == 1)
        var refused: Errno?
        do { try b.give(buffer) } catch { refused = error }
        #expect(refused == .invalidArgument)
        #expect(a.available == 2)
        #expect(b.available == 2)
    }
}
