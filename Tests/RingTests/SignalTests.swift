import Foundation
import Glibc
import Testing

@testable import Ring

/// Regression guard: a signal landing while the ring waits makes io_uring_enter fail with EINTR;
/// the ring must retry instead of surfacing it or losing the completion.
@Suite struct SignalTests {
    @Test func waitSurvivesSignals() throws {
        final class Shared: @unchecked Sendable {
            var thread: pthread_t? = nil
            var started = false
            var finished = false
            var error: (any Error)? = nil
            var completions: [Completion] = []
        }
        signal(SIGUSR1) { _ in }  // a handler that does nothing: the wait sees EINTR
        let shared = Shared()
        let thread = Thread {
            shared.thread = pthread_self()
            do {
                var ring = try Ring(entries: 4)
                let ts = Pinned(KernelTimespec(.milliseconds(200)))
                guard ring.push(.timeout(ts.pointer).userData(7)) else { return }
                shared.started = true
                try ring.submitAndWait(1)
                ring.forEachCompletion { shared.completions.append($0) }
            } catch {
                shared.error = error
            }
            shared.finished = true
        }
        thread.start()
        while !shared.started { usleep(1000) }
        for _ in 0..<20 where !shared.finished {
            if let t = shared.thread { pthread_kill(t, SIGUSR1) }
            usleep(5000)
        }
        while !shared.finished { usleep(1000) }
        #expect(shared.error == nil, "EINTR must be retried, not thrown: \(String(describing: shared.error))")
        #expect(shared.completions.map(\.userData) == [7])
        #expect(shared.completions.first?.result == -ETIME)
    }
}
