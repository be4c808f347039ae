/// A runnable job and how the loop runs it.
struct QueuedJob {
    var job: UnownedJob
    /// Enqueued through the executor's actor face (`asUnownedSerialExecutor()`): it runs
    /// isolated to that serial executor. Other jobs run on the executor as a task executor.
    var forActor: Bool

    /// The job's address (a task's job is the task itself), to recognise it when it comes back.
    var identity: UInt { unsafeBitCast(job, to: UInt.self) }
}

/// The loop thread's queue of runnable jobs: a growable ring buffer, so taking the front job
/// moves nothing and a steady state allocates nothing. Loop thread only.
struct JobQueue: ~Copyable {
    private var storage: UnsafeMutablePointer<QueuedJob>
    /// Always a power of two, so positions wrap with a mask.
    private var capacity: Int
    private var head = 0
    private(set) var count = 0

    init(capacity: Int = 64) {
        self.capacity = max(capacity, 1).nextPowerOfTwo
        storage = .allocate(capacity: self.capacity)
    }

    deinit {
        // Jobs left here are never run (the loop only exits with this queue empty); a job here
        // is a plain reference without ownership, so there is nothing to release.
        storage.deallocate()
    }

    var isEmpty: Bool { count == 0 }

    mutating func append(_ job: QueuedJob) {
        if count == capacity { grow() }
        (storage + ((head + count) & (capacity - 1))).initialize(to: job)
        count += 1
    }

    mutating func append(contentsOf jobs: [QueuedJob]) {
        for job in jobs { append(job) }
    }

    mutating func popFirst() -> QueuedJob? {
        guard count > 0 else { return nil }
        let job = (storage + head).move()
        head = (head + 1) & (capacity - 1)
        count -= 1
        return job
    }

    private mutating func grow() {
        let larger = UnsafeMutablePointer<QueuedJob>.allocate(capacity: capacity * 2)
        // The items in order: from head to the end of storage, then the wrapped-around part.
        let firstPart = min(count, capacity - head)
        larger.moveInitialize(from: storage + head, count: firstPart)
        (larger + firstPart).moveInitialize(from: storage, count: count - firstPart)
        storage.deallocate()
        storage = larger
        capacity *= 2
        head = 0
    }
}

extension Int {
    fileprivate var nextPowerOfTwo: Int {
        self <= 1 ? 1 : 1 << (Int.bitWidth - (self - 1).leadingZeroBitCount)
    }
}
