import CFuzzerDriver

/// Reads typed values from a fuzzer's byte string; past the end it yields zeros, so every input
/// is a valid program.
public struct FuzzInput {
    let bytes: UnsafeRawBufferPointer
    var position = 0

    public init(_ start: UnsafeRawPointer?, _ count: Int) {
        bytes = UnsafeRawBufferPointer(start: start, count: start == nil ? 0 : count)
    }

    public var isEmpty: Bool { position >= bytes.count }

    public mutating func next<T: FixedWidthInteger>(_: T.Type = T.self) -> T {
        var value: T = 0
        for i in 0..<MemoryLayout<T>.size {
            let byte: UInt8 = position < bytes.count ? bytes[position] : 0
            position += 1
            value |= T(truncatingIfNeeded: byte) << (8 * i)
        }
        return value
    }

    /// The remaining bytes.
    public mutating func rest() -> UnsafeRawBufferPointer {
        let start = min(position, bytes.count)
        position = bytes.count
        return UnsafeRawBufferPointer(rebasing: bytes[start...])
    }
}

/// Stops the fuzzer with a message when an invariant breaks (libFuzzer records the input).
public func check(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String) {
    if !condition() { fatalError("invariant broken: \(message())") }
}

/// Hands control to libFuzzer with `body` as the per-input callback; returns its exit status.
public func runFuzzer(_ body: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32 {
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    return LLVMFuzzerRunDriver(&argc, &argv, body)
}
