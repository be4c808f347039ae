import Glibc

/// Creates the engine an `EngineChoice` asks for, recording why earlier candidates were passed
/// over. Runs on the executor's loop thread (io_uring rings belong to the thread that made them).
enum EngineFactory {
    static func make(_ choice: EngineChoice, entries: Int, submitBatch: Int) throws(EngineError) -> (
        any IOEngine, EngineSelection
    ) {
        var choice = choice
        var fromEnvironment = false
        if choice == .automatic, let raw = getenv(EngineChoice.environmentVariable) {
            let name = String(cString: raw)
            if !name.isEmpty && name != "automatic" {
                guard let kind = EngineKind(rawValue: name) else { throw .unknownEngineName(name) }
                choice = .only(kind)
                fromEnvironment = true
            }
        }
        switch choice {
        case .only(let kind):
            let engine = try make(kind, entries: entries, submitBatch: submitBatch)
            return (engine, selection(engine, passedOver: [], fromEnvironment: fromEnvironment))
        case .automatic:
            var passedOver: [EngineSelection.PassedOver] = []
            for kind in EngineKind.allCases {
                do {
                    let engine = try make(kind, entries: entries, submitBatch: submitBatch)
                    return (engine, selection(engine, passedOver: passedOver, fromEnvironment: false))
                } catch {
                    let reason: String =
                        if case .unavailable(_, let why) = error { why } else { error.description }
                    passedOver.append(.init(engine: kind, reason: reason))
                }
            }
            throw .noEngineAvailable(passedOver)
        }
    }

    static func selection(_ engine: any IOEngine, passedOver: [EngineSelection.PassedOver], fromEnvironment: Bool)
        -> EngineSelection
    {
        let uring = engine as? URingEngine
        return EngineSelection(
            engine: engine.kind, passedOver: passedOver, fromEnvironment: fromEnvironment,
            ringFlags: uring?.ringFlags ?? [], adaptations: uring?.adaptations ?? [])
    }

    static func make(_ kind: EngineKind, entries: Int, submitBatch: Int) throws(EngineError) -> any IOEngine {
        switch kind {
        case .ioURing: try URingEngine(entries: entries, submitBatch: submitBatch)
        case .libaio: try LibAIOEngine(entries: entries, submitBatch: submitBatch)
        case .posixAIO: try PosixAIOEngine(entries: entries)
        }
    }
}
