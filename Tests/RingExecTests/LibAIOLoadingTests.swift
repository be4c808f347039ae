import Foundation
import Glibc
import Testing

@testable import RingExec

/// Which libaio file the libaio engine loads, in which order, and which package its error names.
@Suite struct LibAIOLoadingTests {
    /// Where the real libaio lives here, whichever of the two names it has (its path in
    /// /proc/self/maps once loaded).
    static func installedLibrary() -> String? {
        for name in LibAIOLibrary.candidateNames {
            guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else { continue }
            defer { dlclose(handle) }
            // /proc files report size 0, so read to the end rather than by size.
            let data = (try? FileHandle(forReadingFrom: URL(fileURLWithPath: "/proc/self/maps")).readToEnd()) ?? nil
            let maps = data.map { String(decoding: $0, as: UTF8.self) } ?? ""
            for line in maps.split(separator: "\n") {
                if let slash = line.firstIndex(of: "/"), line.contains("/libaio.so.") {
                    return String(line[slash...])
                }
            }
        }
        return nil
    }

    @Test func defaultOrderTriesTheClassicNameThenTheT64Name() {
        #expect(LibAIOLibrary.candidateNames == ["libaio.so.1", "libaio.so.1t64"])
    }

    /// Debian 13 and Ubuntu 24.04 install only `libaio.so.1t64`: with `libaio.so.1` missing the
    /// loader goes on to the second name. Shown with a directory holding only a `libaio.so.1t64`
    /// link to this machine's libaio.
    @Test func loadsTheT64NameWhenTheClassicOneIsMissing() throws {
        guard let real = Self.installedLibrary() else {
            skip(.libaio, "libaio is not installed (neither libaio.so.1 nor libaio.so.1t64 loads)")
            return
        }
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("libaio-t64-\(getpid())").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try FileManager.default.createSymbolicLink(atPath: dir + "/libaio.so.1t64", withDestinationPath: real)

        let result = LibAIO.load(
            names: [dir + "/libaio.so.1", dir + "/libaio.so.1t64"], distribution: .init(osRelease: ""))
        let loaded = try result.get()
        #expect(loaded.libraryName == dir + "/libaio.so.1t64")
        // The entry points work: a context can be set up and destroyed.
        var context: OpaquePointer?
        #expect(loaded.setup(1, &context) == 0)
        #expect(loaded.destroy(context) == 0)
    }

    @Test func firstNameThatLoadsWins() throws {
        guard let real = Self.installedLibrary() else {
            skip(.libaio, "libaio is not installed (neither libaio.so.1 nor libaio.so.1t64 loads)")
            return
        }
        let loaded = try LibAIO.load(names: [real, "/nonexistent/libaio.so.1t64"], distribution: .init(osRelease: ""))
            .get()
        #expect(loaded.libraryName == real)
    }

    /// A library that loads but lacks libaio's entry points is passed over like a missing one.
    @Test func libraryWithoutTheEntryPointsIsPassedOver() throws {
        guard let real = Self.installedLibrary() else {
            skip(.libaio, "libaio is not installed (neither libaio.so.1 nor libaio.so.1t64 loads)")
            return
        }
        let loaded = try LibAIO.load(names: ["libm.so.6", real], distribution: .init(osRelease: "")).get()
        #expect(loaded.libraryName == real)
    }

    @Test func missingLibraryNamesEveryFileTriedAndTheDistributionsPackage() {
        let trixie = Distribution(
            osRelease:
                "PRETTY_NAME=\"Debian GNU/Linux 13 (trixie)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"13\"\nID=debian\n"
        )
        let result = LibAIO.load(
            names: ["/nonexistent/libaio.so.1", "/nonexistent/libaio.so.1t64"], distribution: trixie)
        guard case .failure(.unavailable(engine: .libaio, let reason)) = result else {
            Issue.record("expected .unavailable, got \(result)")
            return
        }
        #expect(reason.contains("/nonexistent/libaio.so.1,"), "\(reason)")
        #expect(reason.contains("/nonexistent/libaio.so.1t64"), "\(reason)")
        #expect(reason.contains("apt-get install libaio1t64"), "\(reason)")
        #expect(reason.contains("No such file or directory"), "\(reason)")
    }

    @Test(arguments: [
        // Debian: the t64 rename arrived in 13 (trixie); testing and sid carry no VERSION_ID.
        ("ID=debian\nVERSION_ID=\"12\"\n", "libaio1", "apt-get install libaio1"),
        ("ID=debian\nVERSION_ID=\"13\"\n", "libaio1t64", "apt-get install libaio1t64"),
        ("ID=debian\nVERSION_CODENAME=forky\n", "libaio1t64", "apt-get install libaio1t64"),
        // Ubuntu: 24.04 (noble) ships libaio1t64; 22.04 libaio1.
        ("NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"\n", "libaio1", "apt-get install libaio1"),
        (
            "NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"24.04\"\n", "libaio1t64",
            "apt-get install libaio1t64"
        ),
        // Derivatives: by the Ubuntu or Debian release they are built on.
        (
            "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\nVERSION_ID=\"22\"\nUBUNTU_CODENAME=noble\n", "libaio1t64",
            "apt-get install libaio1t64"
        ),
        (
            "ID=linuxmint\nID_LIKE=\"ubuntu debian\"\nVERSION_ID=\"21.3\"\nUBUNTU_CODENAME=jammy\n", "libaio1",
            "apt-get install libaio1"
        ),
        ("ID=fedora\nVERSION_ID=41\n", "libaio", "dnf install libaio"),
        ("ID=\"rocky\"\nID_LIKE=\"rhel centos fedora\"\nVERSION_ID=\"9.4\"\n", "libaio", "dnf install libaio"),
        ("ID=\"opensuse-tumbleweed\"\nID_LIKE=\"opensuse suse\"\n", "libaio1", "zypper install libaio1"),
        ("ID=arch\n", "libaio", "pacman -S libaio"),
        ("ID=alpine\nVERSION_ID=3.20.0\n", "libaio", "apk add libaio"),
    ])
    func packageFollowsTheDistribution(osRelease: String, package: String, command: String) {
        let distribution = Distribution(osRelease: osRelease)
        #expect(distribution.libaioPackage.name == package)
        #expect(distribution.libaioPackage.installCommand == command)
    }

    @Test func unknownDistributionNamesBothDebianPackages() {
        let package = Distribution(osRelease: "ID=plan9\n").libaioPackage
        #expect(package.installCommand == nil)
        #expect(package.description.contains("libaio1t64"))
        #expect(package.description.contains("libaio1 "))
    }

    @Test func osReleaseQuotingAndCommentsAreUnderstood() {
        let distribution = Distribution(
            osRelease: """
                # a comment
                ID='ubuntu'
                VERSION_ID="24.04"
                PRETTY_NAME="Ubuntu \\"Noble\\" 24.04"

                """)
        #expect(distribution.id == "ubuntu")
        #expect(distribution.versionID == "24.04")
        #expect(distribution.fields["PRETTY_NAME"] == "Ubuntu \"Noble\" 24.04")
    }
}
