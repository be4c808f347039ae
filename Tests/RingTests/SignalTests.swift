import Foundation
import Glibc
import Synchronization
import Testing

@testable import Ring

/// Regression guard: a signal landing while the ring waits makes io_uring_enter fail with EINTR;
/// the ring must retry instead of surfacing it or losing the completion.
@Suite(.timeLimit(.minutes(1))) struct SignalTests {
    @Test func waitSurvivesSignals() throws {
        // Written by the waiting thread, read by the test's: the flags are atomics, and what
        // the thread produces sits behind a lock; `finished` is stored (release) after the
        // result, so the loads after seeing it (acquire) see the result.
        final class Shared: Sendable {
            let thread = Mutex<pthread_t?>(nil)
            let started = Atomic<Bool>(false)
            let finished = Atomic<Bool>(false)
            let result = Mutex<(error: String?, completions: [Completion])>((nil, []))
        }
        signal(SIGUSR1) { _ in }  // a handler that does nothing: the wait sees EINTR
        let shared = Shared()
        let thread = Thread {
            shared.thread.withLock { $0 = pthread_self() }
            do {
                var ring = try Ring(entries: 4)
                let ts = Pinned(KernelTimespec(.milliseconds(200)))
                if ring.push(.timeout(ts.pointer).userData(7)) {
                    shared.started.store(true, ordering: .releasing)
                    try ring.submitAndWait(1)
                    var completions: [Completion] = []
                    ring.forEachCompletion { completions.append($0) }
                    shared.result.withLock { $0.completions = completions }
                } else {
                    shared.result.withLock { $0.error = "the timeout did not fit in the SQ" }
                }
            } catch {
                shared.result.withLock { $0.error = "\(error)" }
            }
            shared.finished.store(true, ordering: .releasing)
        }
        thread.start()
        // Bounded polls of the flags: the thread either starts waiting or finishes early.
        let deadline = ContinuousClock.now + .seconds(20)
        while !shared.started.load(ordering: .acquiring) && !shared.finished.load(ordering: .acquiring)
            && ContinuousClock.now < deadline
        {
            usleep(1000)
        }
        let started = shared.started.load(ordering: .acquiring)
        #expect(started, "the thread started its wait")
        var signalled = 0
        for _ in 0..<20 where !shared.finished.load(ordering: .acquiring) {
            if let t = shared.thread.withLock({ $0 }) {
                pthread_kill(t, SIGUSR1)
                signalled += 1
            }
            usleep(5000)
        }
        while !shared.finished.load(ordering: .acquiring) && ContinuousClock.now < deadline { usleep(1000) }
        let finished = shared.finished.load(ordering: .acquiring)
        #expect(finished, "the wait ended within 20 s")
        #expect(signalled > 0, "signals landed while the ring waited")
        let (error, completions) = shared.result.withLock { $0 }
        #expect(error == nil, "EINTR must be retried, not thrown: \(String(describing: error))")
        #expect(completions.map(\.userData) == [7])
        #expect(completions.first?.result == -ETIME)
    }
}
