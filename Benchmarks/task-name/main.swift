// Benchmarks/task-name: what reading the runtime's name of the current task (`Task.name`)
// costs, the read each executor operation makes for `inFlightOperations()`.
//
//   swiftc -O Benchmarks/task-name/main.swift -o /tmp/task-name && /tmp/task-name
//
// Prints nanoseconds per read in an unnamed and in a named task (the named one copies the name
// into a String). Loop overhead included; compare with the time of one async operation
// (ring-bench --mode async).

/// Keeps the optimiser from dropping the read.
@inline(never) func use(_ name: String?) {
    if let name, name.isEmpty { print("") }
}

func nanosecondsPerRead(_ reads: Int) -> Double {
    let start = ContinuousClock.now
    for _ in 0..<reads { use(Task.name) }
    let elapsed = (ContinuousClock.now - start).components
    return (Double(elapsed.seconds) * 1e9 + Double(elapsed.attoseconds) / 1e9) / Double(reads)
}

let reads = 20_000_000
let unnamed = await Task { nanosecondsPerRead(reads) }.value
let named = await Task(name: "connection 42") { nanosecondsPerRead(reads) }.value
/// Tenths of a nanosecond, without Foundation.
func shown(_ nanoseconds: Double) -> String { "\(Int(nanoseconds)).\(Int(nanoseconds * 10) % 10)" }
print("Task.name, unnamed task: \(shown(unnamed)) ns per read")
print("Task.name, named task:   \(shown(named)) ns per read")
