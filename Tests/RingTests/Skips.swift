// Kept identical in Tests/RingTests and Tests/RingExecTests (a test compares the two copies).
import Foundation
import Testing

/// What a test needs from the host, named as `RING_REQUIRE` names it.
///
/// A test that cannot run here calls `skip(_:_:)`: the runner then reports it (or the one
/// parameterized case) as cancelled with the reason, and a `SKIP [need] reason` line is printed,
/// since `swift test` does not print cancelled cases of parameterized tests. When `RING_REQUIRE`
/// names the need (or says `all` without excluding it), the skip is a failure instead that names
/// what did not run: CI lists everything it must be able to run, and nothing goes quietly.
enum Need: String, CaseIterable, Sendable {
    case ioURing = "io_uring"
    case libaio = "libaio"
    case posixAIO = "posix-aio"
    /// Ring shapes of the kernel tests other than the default one (see `RingShape.all`).
    case sqpoll = "sqpoll"
    case deferTaskRun = "single-issuer+defer-taskrun"
    case cqe32 = "cqe32"
    case noSQArray = "no-sqarray"
    /// IORING_SETUP_CQE_MIXED and IORING_NOP_CQE32 (Linux 6.18).
    case cqeMixed = "cqe-mixed"
    /// The executables the tests drive (ring-fault-helper, ring-soak, ring-cp, ring-echo),
    /// built next to the test bundle.
    case helpers = "helpers"
    /// fio (with its io_uring engine) on the PATH: ring-top is tested against a program not ours.
    case fio = "fio"
    /// Tests that change a host-wide sysctl: only with RING_TEST_SYSCTL=1, as root, run alone.
    case sysctl = "sysctl"
    /// An opcode, setup or register flag, or feature the running kernel lacks. The reason names
    /// it and the kernel release that added it. CI on the newest kernel requires these; the kernel
    /// matrix (older kernels booted under qemu) does not.
    case kernel = "kernel"
    /// Kernel features and file system abilities a few tests need.
    case napi = "napi"
    case recvBundle = "recv-bundle"
    case directIO = "o-direct"
    case xattr = "xattr"
    /// Tests that cannot run under ThreadSanitizer (it crashes or needs what they take away).
    case withoutTSan = "without-tsan"
    /// Tests that measure a process's memory, which a sanitizer's own bookkeeping swamps
    /// (AddressSanitizer's quarantine keeps freed memory resident).
    case withoutSanitizer = "without-sanitizer"

    /// `RING_REQUIRE`: a comma-separated list of needs; `all` adds every need, `-name` removes one
    /// (CI: `all,-sysctl` for the main run). Unknown names are reported by `SkipTests`.
    static let required: Set<Need> = parse(ProcessInfo.processInfo.environment["RING_REQUIRE"] ?? "").needs

    static func parse(_ text: String) -> (needs: Set<Need>, unknown: [String]) {
        var needs: Set<Need> = []
        var unknown: [String] = []
        for item in text.split(separator: ",").map({ $0.trimmingCharacters(in: .whitespaces) }) where !item.isEmpty {
            let removing = item.hasPrefix("-")
            let name = removing ? String(item.dropFirst()) : item
            let named: Set<Need>
            if name == "all" {
                named = Set(Need.allCases)
            } else if let need = Need(rawValue: name) {
                named = [need]
            } else {
                unknown.append(name)
                continue
            }
            if removing { needs.subtract(named) } else { needs.formUnion(named) }
        }
        return (needs, unknown)
    }
}

/// Reports that the current test (or parameterized case) cannot run here because `need` is
/// missing: a skip with `reason`, or a failure naming `need` when `RING_REQUIRE` requires it.
/// Returns normally; the caller then returns at once.
func skip(
    _ need: Need, _ reason: String, required: Set<Need> = Need.required,
    sourceLocation: SourceLocation = #_sourceLocation
) {
    if required.contains(need) {
        Issue.record(
            "RING_REQUIRE requires \(need.rawValue), but this did not run: \(reason)", sourceLocation: sourceLocation)
        return
    }
    let place = "\(sourceLocation.fileID):\(sourceLocation.line)"
    let line = "SKIP [\(need.rawValue)] \(place): \(reason)"  // CI greps these lines
    print(line)
    // Cancelling marks the test (or only this case of a parameterized test) as skipped; the
    // error it throws is dropped because the caller returns right after.
    try? Test.cancel("\(need.rawValue): \(reason)", sourceLocation: sourceLocation)
}
