/// An `io_uring_register(2)` opcode (the kernel's `IORING_REGISTER_*` / `IORING_UNREGISTER_*`).
public struct RegisterOpcode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The kernel's register opcode number.
    public var rawValue: UInt32
    /// An opcode by number, including ones this package does not name.
    @inlinable public init(rawValue: UInt32) { self.rawValue = rawValue }
    @inlinable init(_ value: UInt32) { self.rawValue = value }

    /// `IORING_REGISTER_BUFFERS`
    public static let registerBuffers = RegisterOpcode(0)
    /// `IORING_UNREGISTER_BUFFERS`
    public static let unregisterBuffers = RegisterOpcode(1)
    /// `IORING_REGISTER_FILES`
    public static let registerFiles = RegisterOpcode(2)
    /// `IORING_UNREGISTER_FILES`
    public static let unregisterFiles = RegisterOpcode(3)
    /// `IORING_REGISTER_EVENTFD`
    public static let registerEventFD = RegisterOpcode(4)
    /// `IORING_UNREGISTER_EVENTFD`
    public static let unregisterEventFD = RegisterOpcode(5)
    /// `IORING_REGISTER_FILES_UPDATE`
    public static let registerFilesUpdate = RegisterOpcode(6)
    /// `IORING_REGISTER_EVENTFD_ASYNC`
    public static let registerEventFDAsync = RegisterOpcode(7)
    /// `IORING_REGISTER_PROBE`
    public static let registerProbe = RegisterOpcode(8)
    /// `IORING_REGISTER_PERSONALITY`
    public static let registerPersonality = RegisterOpcode(9)
    /// `IORING_UNREGISTER_PERSONALITY`
    public static let unregisterPersonality = RegisterOpcode(10)
    /// `IORING_REGISTER_RESTRICTIONS`
    public static let registerRestrictions = RegisterOpcode(11)
    /// `IORING_REGISTER_ENABLE_RINGS`
    public static let registerEnableRings = RegisterOpcode(12)
    /// `IORING_REGISTER_FILES2`
    public static let registerFiles2 = RegisterOpcode(13)
    /// `IORING_REGISTER_FILES_UPDATE2`
    public static let registerFilesUpdate2 = RegisterOpcode(14)
    /// `IORING_REGISTER_BUFFERS2`
    public static let registerBuffers2 = RegisterOpcode(15)
    /// `IORING_REGISTER_BUFFERS_UPDATE`
    public static let registerBuffersUpdate = RegisterOpcode(16)
    /// `IORING_REGISTER_IOWQ_AFF`
    public static let registerIOWQAffinity = RegisterOpcode(17)
    /// `IORING_UNREGISTER_IOWQ_AFF`
    public static let unregisterIOWQAffinity = RegisterOpcode(18)
    /// `IORING_REGISTER_IOWQ_MAX_WORKERS`
    public static let registerIOWQMaxWorkers = RegisterOpcode(19)
    /// `IORING_REGISTER_RING_FDS`
    public static let registerRingFDs = RegisterOpcode(20)
    /// `IORING_UNREGISTER_RING_FDS`
    public static let unregisterRingFDs = RegisterOpcode(21)
    /// `IORING_REGISTER_PBUF_RING`
    public static let registerBufferRing = RegisterOpcode(22)
    /// `IORING_UNREGISTER_PBUF_RING`
    public static let unregisterBufferRing = RegisterOpcode(23)
    /// `IORING_REGISTER_SYNC_CANCEL`
    public static let registerSyncCancel = RegisterOpcode(24)
    /// `IORING_REGISTER_FILE_ALLOC_RANGE`
    public static let registerFileAllocRange = RegisterOpcode(25)
    /// `IORING_REGISTER_PBUF_STATUS`
    public static let registerBufferRingStatus = RegisterOpcode(26)
    /// `IORING_REGISTER_NAPI`
    public static let registerNAPI = RegisterOpcode(27)
    /// `IORING_UNREGISTER_NAPI`
    public static let unregisterNAPI = RegisterOpcode(28)
    /// `IORING_REGISTER_CLOCK`
    public static let registerClock = RegisterOpcode(29)
    /// `IORING_REGISTER_CLONE_BUFFERS`
    public static let registerCloneBuffers = RegisterOpcode(30)
    /// `IORING_REGISTER_SEND_MSG_RING`
    public static let registerSendMsgRing = RegisterOpcode(31)
    /// `IORING_REGISTER_ZCRX_IFQ`
    public static let registerZCRXInterfaceQueue = RegisterOpcode(32)
    /// `IORING_REGISTER_RESIZE_RINGS`
    public static let registerResizeRings = RegisterOpcode(33)
    /// `IORING_REGISTER_MEM_REGION`
    public static let registerMemoryRegion = RegisterOpcode(34)
    /// `IORING_REGISTER_QUERY`
    public static let registerQuery = RegisterOpcode(35)

    /// `IORING_REGISTER_USE_REGISTERED_RING`: or-ed into the opcode when `fd` is a registered
    /// ring index.
    public static let useRegisteredRingBit: UInt32 = 1 << 31

    /// Every value this package names, with its kernel name, as tests and `ring-probe` list them.
    public static let allKnown: [(opcode: RegisterOpcode, kernelName: String)] = [
        (.registerBuffers, "IORING_REGISTER_BUFFERS"),
        (.unregisterBuffers, "IORING_UNREGISTER_BUFFERS"),
        (.registerFiles, "IORING_REGISTER_FILES"), (.unregisterFiles, "IORING_UNREGISTER_FILES"),
        (.registerEventFD, "IORING_REGISTER_EVENTFD"),
        (.unregisterEventFD, "IORING_UNREGISTER_EVENTFD"),
        (.registerFilesUpdate, "IORING_REGISTER_FILES_UPDATE"),
        (.registerEventFDAsync, "IORING_REGISTER_EVENTFD_ASYNC"),
        (.registerProbe, "IORING_REGISTER_PROBE"),
        (.registerPersonality, "IORING_REGISTER_PERSONALITY"),
        (.unregisterPersonality, "IORING_UNREGISTER_PERSONALITY"),
        (.registerRestrictions, "IORING_REGISTER_RESTRICTIONS"),
        (.registerEnableRings, "IORING_REGISTER_ENABLE_RINGS"),
        (.registerFiles2, "IORING_REGISTER_FILES2"),
        (.registerFilesUpdate2, "IORING_REGISTER_FILES_UPDATE2"),
        (.registerBuffers2, "IORING_REGISTER_BUFFERS2"),
        (.registerBuffersUpdate, "IORING_REGISTER_BUFFERS_UPDATE"),
        (.registerIOWQAffinity, "IORING_REGISTER_IOWQ_AFF"),
        (.unregisterIOWQAffinity, "IORING_UNREGISTER_IOWQ_AFF"),
        (.registerIOWQMaxWorkers, "IORING_REGISTER_IOWQ_MAX_WORKERS"),
        (.registerRingFDs, "IORING_REGISTER_RING_FDS"),
        (.unregisterRingFDs, "IORING_UNREGISTER_RING_FDS"),
        (.registerBufferRing, "IORING_REGISTER_PBUF_RING"),
        (.unregisterBufferRing, "IORING_UNREGISTER_PBUF_RING"),
        (.registerSyncCancel, "IORING_REGISTER_SYNC_CANCEL"),
        (.registerFileAllocRange, "IORING_REGISTER_FILE_ALLOC_RANGE"),
        (.registerBufferRingStatus, "IORING_REGISTER_PBUF_STATUS"),
        (.registerNAPI, "IORING_REGISTER_NAPI"), (.unregisterNAPI, "IORING_UNREGISTER_NAPI"),
        (.registerClock, "IORING_REGISTER_CLOCK"),
        (.registerCloneBuffers, "IORING_REGISTER_CLONE_BUFFERS"),
        (.registerSendMsgRing, "IORING_REGISTER_SEND_MSG_RING"),
        (.registerZCRXInterfaceQueue, "IORING_REGISTER_ZCRX_IFQ"),
        (.registerResizeRings, "IORING_REGISTER_RESIZE_RINGS"),
        (.registerMemoryRegion, "IORING_REGISTER_MEM_REGION"),
        (.registerQuery, "IORING_REGISTER_QUERY"),
    ]

    /// The kernel's name (`IORING_REGISTER_*`), or the number for an opcode this package does not
    /// name.
    public var kernelName: String {
        let index = Int(rawValue)
        if index < RegisterOpcode.allKnown.count { return RegisterOpcode.allKnown[index].kernelName }
        return "IORING_REGISTER_\(rawValue)"
    }

    /// The same as `kernelName`.
    public var description: String { kernelName }
}
