/// The swift-ring release.
public enum SwiftRing {
    /// This release's version (semantic versioning), as in `CHANGELOG.md`; the tools print it
    /// for `--version`.
    public static let version = "0.2.0"
}
