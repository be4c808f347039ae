import Glibc
import SystemPackage

/// The libaio library behind the ``EngineKind/libaio`` engine.
///
/// The engine loads libaio at run time, so building swift-ring needs no `-dev` package and the
/// other engines work where libaio is missing. The library's file name depends on the
/// distribution: `libaio.so.1` (package `libaio1` on Debian 12 and Ubuntu 22.04, `libaio` on
/// Fedora, RHEL, Arch and Alpine), or `libaio.so.1t64` (package `libaio1t64` on Debian 13,
/// Ubuntu 24.04 and later, which ship no `libaio.so.1`).
public enum LibAIOLibrary {
    /// The file names the engine tries, in this order.
    public static let candidateNames = ["libaio.so.1", "libaio.so.1t64"]

    /// The file name that loaded, or why none did. When no candidate loads, the error's reason
    /// names every file tried and the package that provides libaio on this distribution.
    public static var loaded: Result<String, EngineError> { LibAIO.shared.map(\.libraryName) }

    /// The package that provides libaio on this distribution, from `/etc/os-release`:
    /// `libaio1t64`, `libaio1` or `libaio`.
    public static var package: String { Distribution.current.libaioPackage.name }

    /// The command that installs ``package`` (for example `apt-get install libaio1t64`), or nil
    /// when the distribution is not one this package knows.
    public static var installCommand: String? { Distribution.current.libaioPackage.installCommand }

    /// A sentence for messages: the package to install, and how.
    public static var installAdvice: String { Distribution.current.libaioPackage.description }
}

extension LibAIO {
    /// The library, or why it cannot be loaded. Loaded once; never unloaded.
    static let shared: Result<LibAIO, EngineError> = load(
        names: LibAIOLibrary.candidateNames, distribution: .current)

    /// Tries `names` in order with `dlopen` and takes the first one that has libaio's entry
    /// points. A name with a slash is a path; otherwise the dynamic loader searches for it.
    /// `distribution` only words the error.
    static func load(names: [String], distribution: @autoclosure () -> Distribution) -> Result<LibAIO, EngineError> {
        var failures: [String] = []
        for name in names {
            guard let handle = dlopen(name, RTLD_NOW | RTLD_LOCAL) else {
                failures.append(dlerror().map { String(cString: $0) } ?? "\(name): not found")
                continue
            }
            func symbol<T>(_ symbolName: String, as type: T.Type) -> T? {
                dlsym(handle, symbolName).map { unsafeBitCast($0, to: type) }
            }
            guard let setup = symbol("io_setup", as: Setup.self), let destroy = symbol("io_destroy", as: Destroy.self),
                let submit = symbol("io_submit", as: Submit.self), let cancel = symbol("io_cancel", as: Cancel.self),
                let getEvents = symbol("io_getevents", as: GetEvents.self)
            else {
                failures.append("\(name): lacks libaio's io_* entry points")
                dlclose(handle)
                continue
            }
            return .success(
                LibAIO(
                    libraryName: name, setup: setup, destroy: destroy, submit: submit, cancel: cancel,
                    getEvents: getEvents))
        }
        return .failure(
            .unavailable(
                engine: .libaio,
                reason: "libaio is not installed: none of \(names.joined(separator: ", ")) could be loaded ("
                    + failures.joined(separator: "; ") + "); install \(distribution().libaioPackage)"))
    }
}

/// The running Linux distribution, as `/etc/os-release` describes it (os-release(5)); only used
/// to name packages in messages.
struct Distribution: Equatable, Sendable {
    /// Every `KEY=value` line, with the value's quotes and backslash escapes removed.
    var fields: [String: String] = [:]

    var id: String { fields["ID"] ?? "" }
    var idLike: [String] { (fields["ID_LIKE"] ?? "").split(separator: " ").map(String.init) }
    var versionID: String? { fields["VERSION_ID"] }

    init(osRelease text: String) {
        for line in text.split(separator: "\n") {
            let line = line.drop { $0 == " " || $0 == "\t" }
            guard !line.hasPrefix("#"), let equals = line.firstIndex(of: "=") else { continue }
            fields[String(line[..<equals])] = Self.unquote(line[line.index(after: equals)...])
        }
    }

    /// os-release values are shell-quoted: strip one pair of matching quotes and undo `\"`, `\\`,
    /// `\$` and `` \` `` inside double quotes.
    private static func unquote(_ raw: Substring) -> String {
        var value = raw
        while let last = value.last, last == " " || last == "\t" || last == "\r" { value.removeLast() }
        guard let first = value.first, first == "\"" || first == "'", value.count >= 2, value.last == first else {
            return String(value)
        }
        let inner = value.dropFirst().dropLast()
        guard first == "\"" else { return String(inner) }
        var result = ""
        var escaped = false
        for character in inner {
            if escaped || character != "\\" {
                result.append(character)
                escaped = false
            } else {
                escaped = true
            }
        }
        return result
    }

    /// This machine's, read once (`/etc/os-release`, else `/usr/lib/os-release`).
    static let current = Distribution(osRelease: readFile("/etc/os-release") ?? readFile("/usr/lib/os-release") ?? "")

    private static func readFile(_ path: FilePath) -> String? {
        guard let fd = try? FileDescriptor.open(path, .readOnly) else { return nil }
        defer { try? fd.close() }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        while bytes.count < 1 << 16 {  // os-release is a few hundred bytes; never read without bound
            let count = (try? chunk.withUnsafeMutableBytes { try fd.read(into: $0) }) ?? 0
            guard count > 0 else { break }
            bytes += chunk[..<count]
        }
        return String(decoding: bytes, as: UTF8.self)
    }

    /// A package name and, for a known distribution, the command that installs it.
    struct Package: Equatable, CustomStringConvertible {
        var name: String
        var installCommand: String?
        var description: String {
            if let installCommand { return "the \(name) package (\(installCommand))" }
            return "the \(name) package (libaio1t64 on Debian 13, Ubuntu 24.04 and later, libaio1 on older ones)"
        }
    }

    /// Which package provides libaio here. Debian renamed `libaio1` to `libaio1t64` (file
    /// `libaio.so.1t64`) in Debian 13 (trixie) and Ubuntu followed in 24.04 (noble).
    var libaioPackage: Package {
        let family = [id] + idLike
        func apt(_ t64: Bool) -> Package {
            let name = t64 ? "libaio1t64" : "libaio1"
            return Package(name: name, installCommand: "apt-get install \(name)")
        }
        if id == "debian" {
            // testing and sid have no VERSION_ID; they have the t64 package.
            guard let major = versionID.flatMap({ Int($0.prefix { $0.isNumber }) }) else { return apt(true) }
            return apt(major >= 13)
        }
        if id == "ubuntu", let version = versionID {
            return apt(Self.version(version, isAtLeast: [24, 4]))
        }
        if let codename = fields["UBUNTU_CODENAME"], family.contains("ubuntu") || family.contains("debian") {
            return apt(!Self.ubuntuBeforeT64.contains(codename))
        }
        if let codename = fields["DEBIAN_CODENAME"], family.contains("debian") {
            return apt(!Self.debianBeforeT64.contains(codename))
        }
        if family.contains("fedora") || family.contains("rhel") || family.contains("centos") {
            return Package(name: "libaio", installCommand: "dnf install libaio")
        }
        if family.contains("suse") || family.contains("opensuse") || id.hasPrefix("opensuse") || id == "sles" {
            return Package(name: "libaio1", installCommand: "zypper install libaio1")
        }
        if family.contains("arch") {
            return Package(name: "libaio", installCommand: "pacman -S libaio")
        }
        if family.contains("alpine") {
            return Package(name: "libaio", installCommand: "apk add libaio")
        }
        return Package(name: "libaio", installCommand: nil)
    }

    /// Releases that still call the package `libaio1`.
    static let ubuntuBeforeT64: Set<String> = ["xenial", "bionic", "focal", "jammy", "kinetic", "lunar", "mantic"]
    static let debianBeforeT64: Set<String> = ["stretch", "buster", "bullseye", "bookworm"]

    /// Compares dotted version numbers (`24.04` against `[24, 4]`).
    static func version(_ text: String, isAtLeast minimum: [Int]) -> Bool {
        let parts = text.split(separator: ".").map { Int($0.prefix { $0.isNumber }) ?? 0 }
        for (index, required) in minimum.enumerated() {
            let part = index < parts.count ? parts[index] : 0
            if part != required { return part > required }
        }
        return true
    }
}
