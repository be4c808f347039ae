import Foundation
import Testing

/// Built for anything but Linux, the C shim stops the build with one message that says what to
/// do, instead of a cascade of missing headers and symbols. Checked by compiling the shim's
/// sources for macOS and FreeBSD targets with the toolchain's clang (syntax only: no SDK needed).
@Suite(.timeLimit(.minutes(1))) struct PlatformGuardTests {
    static let root = String(#filePath).components(separatedBy: "/Tests/")[0]

    /// The toolchain's clang (beside `swift`), else one on PATH.
    static func clang() -> String? {
        var candidates = ["/opt/swift/usr/bin/clang"]
        for directory in (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":") {
            candidates.append("\(directory)/clang")
        }
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) }
    }

    @Test(arguments: ["x86_64-apple-macosx15.0", "aarch64-apple-macosx15.0", "x86_64-unknown-freebsd14"])
    func nonLinuxBuildStopsWithOneClearError(target: String) throws {
        guard let clang = Self.clang() else {
            skip(.helpers, "no clang to compile the shim for another system")
            return
        }
        var errors: [String] = []
        for file in ["CSyscalls.c", "aio.c"] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: clang)
            process.arguments = [
                "--target=\(target)", "-fsyntax-only", "-I", Self.root + "/Sources/CSyscalls/include",
                Self.root + "/Sources/CSyscalls/" + file,
            ]
            let output = Pipe()
            process.standardError = output
            process.standardOutput = output
            try process.run()
            let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            errors += text.split(separator: "\n").filter { $0.contains("error:") && !$0.contains("errors generated") }
                .map(String.init)
        }
        #expect(errors.count == 1, "\(errors.joined(separator: "\n"))")
        #expect(errors.first?.contains("swift-ring requires Linux") == true, "\(errors)")
        #expect(errors.first?.contains(".when(platforms: [.linux])") == true, "\(errors)")
    }

    /// On Linux the guard lets everything through: the same sources compile cleanly.
    @Test func linuxBuildIsUntouched() throws {
        guard let clang = Self.clang() else {
            skip(.helpers, "no clang to compile the shim")
            return
        }
        for file in ["CSyscalls.c", "aio.c"] {
            let process = Process()
            process.executableURL = URL(fileURLWithPath: clang)
            process.arguments = [
                "-fsyntax-only", "-Wall", "-Werror", "-I", Self.root + "/Sources/CSyscalls/include",
                Self.root + "/Sources/CSyscalls/" + file,
            ]
            try process.run()
            process.waitUntilExit()
            #expect(process.terminationStatus == 0, "\(file)")
        }
    }
}
