import Testing

/// Bug: the POSIX aio engine's wake-up was an `aio_read` of a blocking eventfd, which holds one of
/// glibc's helper threads for as long as it is armed. With one helper (`tunePOSIXAIO(threads:
/// 1)`), or more executors than glibc's default 20 helpers, no I/O could run: every request
/// queued forever behind the wake-ups. Runs in a child process, because glibc's aio tuning is
/// per process and only takes effect before the first request.
@Suite(.timeLimit(.minutes(3))) struct PosixAIOWakeTests {
    @Test(arguments: [(threads: 1, executors: 3), (threads: 0, executors: 25)])
    func wakeUpsLeaveGlibcsHelperThreadsToTheIO(threads: Int, executors: Int) async throws {
        let helper = try #require(ExampleTests.binary("ring-fault-helper"), "ring-fault-helper is built with the tests")
        // `timeout` turns the old hang into a failure (exit status 124) after 60 s.
        let (status, output) = try await runProcess(
            "/usr/bin/timeout", ["60", helper, "--posix-aio-wake", String(threads), String(executors)])
        #expect(status == 0, "exit status \(status) (124: hung)")
        #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == "io=ok", "\(output)")
    }
}
