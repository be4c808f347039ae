// What the command-line tools share so they behave like Unix tools: messages on standard error
// that start with the tool's name, exit status 2 for a usage error and 1 for a failure, progress
// only on a terminal, and JSON made by JSONEncoder.
public import ArgumentParser
import FoundationEssentials
import Glibc

/// Writes `text` and a newline to standard error, unbuffered.
public func printError(_ text: String) {
    writeAll(2, text + "\n")
}

/// Writes all of `text` to `fd`, retrying short writes and EINTR.
func writeAll(_ fd: Int32, _ text: String) {
    var bytes = Array(text.utf8)[...]
    while !bytes.isEmpty {
        let written = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        bytes = bytes.dropFirst(written)
    }
}

/// A failure the tool reports as `<tool>: <message>` on standard error, exiting 1. The message
/// names what failed (a path, an engine, a setting).
public struct ToolFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Exit statuses, as Unix tools use them.
public enum ToolStatus {
    /// The command line was wrong (an unknown option, a bad value, a conflict).
    public static let usage: Int32 = 2
    /// The tool ran and something failed.
    public static let failure: Int32 = 1
}

extension ParsableCommand {
    /// What to do with an error that ends the tool: help and `--version` go to standard output
    /// with status 0; usage errors to standard error with status 2 (ArgumentParser's own default
    /// is 64); `ExitCode` exits quietly with its code; anything else is `<tool>: <error>` on
    /// standard error with status 1.
    public static func exitForError(_ error: any Error) -> Never {
        if let code = error as? ExitCode { Glibc.exit(code.rawValue) }
        let code = exitCode(for: error)
        if code == .success { Self.exit(withError: error) }  // help, --version
        if code == .validationFailure {
            printError(fullMessage(for: error))
            Glibc.exit(ToolStatus.usage)
        }
        printError("\(configuration.commandName ?? "tool"): \(error)")
        Glibc.exit(ToolStatus.failure)
    }
}

extension ParsableCommand {
    /// Parses the command line and runs the command with `exitForError`'s conventions.
    public static func runAsTool() async {
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exitForError(error)
        }
    }
}

/// Progress lines on standard error, only when it is a terminal: scripts and CI logs get none.
public struct Progress: Sendable {
    public let enabled: Bool
    /// `enabled` nil: whether standard error is a terminal.
    public init(enabled: Bool? = nil) { self.enabled = enabled ?? (isatty(2) == 1) }

    /// Rewrites the current progress line; an empty `text` clears it.
    public func show(_ text: String) {
        guard enabled else { return }
        writeAll(2, "\r\u{1B}[K" + text)
    }
}

/// `value` when it is a finite number, else nil (JSON `null`): JSON has no infinity or NaN, and
/// a rate over zero seconds is not a number to print.
public func jsonNumber(_ value: Double?, decimals: Int = 3) -> Double? {
    guard let value, value.isFinite else { return nil }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let rounded = (value * scale).rounded() / scale
    return rounded.isFinite ? rounded : value
}

/// Encodes `value` as JSON: UTF-8, slashes unescaped, keys sorted (so two runs diff cleanly).
public func jsonText(_ value: some Encodable, pretty: Bool) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting =
        pretty ? [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes] : [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}
