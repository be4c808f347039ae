import Foundation
import Synchronization
import Testing

/// Checks the ThreadSanitizer suppressions, not the library: a data race planted in our own code,
/// inside the closure of `withUnsafeContinuation` (where the executor's submit path runs), must
/// still be reported. `race:withUnsafeContinuation` matched any stack with that frame in it and
/// hid this race; `race_top:` matches only the racing access's own frame. Runs only when asked
/// (RING_TSAN_CANARY=1, under --sanitize=thread): .ci/run expects TSan to report it.
@Suite(.timeLimit(.minutes(1))) struct TSanCanaryTests {
    final class Racy: @unchecked Sendable {
        var value = 0  // written by two threads with nothing ordering them: the planted race
        let written = Atomic<Bool>(false)
    }

    @Test(
        .enabled(
            if: ProcessInfo.processInfo.environment["RING_TSAN_CANARY"] == "1",
            "set RING_TSAN_CANARY=1 under ThreadSanitizer"))
    func plantedRaceInsideAContinuationIsReported() async {
        let racy = Racy()
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let other = Thread {
                racy.value = 1
                racy.written.store(true, ordering: .relaxed)  // relaxed: orders nothing for TSan
            }
            other.start()
            while !racy.written.load(ordering: .relaxed) { sched_yield() }
            racy.value = 2  // races with the other thread's write
            continuation.resume()
        }
        #expect(racy.value != 0)
    }
}
