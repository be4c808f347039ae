import Testing

@testable import RingExec

/// The tests' own polling waits. They look, then sleep a millisecond, until the state they wait
/// for holds or their limit passes. In a cancelled task `try? await Task.sleep` returns at once:
/// a wait built on it spun without pause until its limit and held one of the two cooperative
/// threads all that time (two such waits in SendingTests kept both cores busy for 10 s while
/// other tests' tasks waited to run; CI saw one of those give up).
@Suite struct PollingWaitTests {
    /// A wait whose task has been cancelled ends at once with false instead of spinning until
    /// its limit.
    @Test func aCancelledWaitEndsInsteadOfSpinningUntilItsLimit() async throws {
        let executor = try RingExecutor(entries: 8)
        defer { executor.shutdownGracefully() }
        let waits: [(String, @Sendable () async -> Bool)] = [
            ("waitUntil", { await waitUntil { false } }),
            ("waitForOperationsInFlight", { await waitForOperationsInFlight(executor, atLeast: 1) }),
            (
                "SendingTests.waitUntilListed",
                { await SendingTests.waitUntilListed(.awaitingNotification, on: executor) }
            ),
        ]
        for (name, wait) in waits {
            let waiting = Task { () -> (Bool, Duration) in
                let start = ContinuousClock.now
                let held = await wait()
                return (held, .now - start)
            }
            waiting.cancel()
            let (held, waited) = await waiting.value
            #expect(!held, "\(name)")
            #expect(waited < waitLimit, "\(name) spun until its limit")
        }
    }
}
