// ring-http-nio [--uncached] [--port PORT] DIRECTORY: the SwiftNIO twin of Examples/ring-http, for
// Benchmarks/http-bench. NIOPosix with one event loop and NIOHTTP1's codec (keep-alive and
// pipelining as NIO does them), GET and HEAD, 404 and 405. Cached (the default): every file's
// bytes read once at start-up. Uncached: each request reads its file with NIOFileSystem (NIO's
// way to keep file reads off the event loop: its own thread pool), bridged to the channel's
// futures. Prints
// "listening on 127.0.0.1:<port>" once ready.
import Foundation
import NIOCore
import NIOHTTP1
import NIOPosix
import _NIOFileSystem

var arguments = Array(CommandLine.arguments.dropFirst())
var cached = true
var port = 0
while let first = arguments.first, first.hasPrefix("--") {
    arguments.removeFirst()
    switch first {
    case "--uncached": cached = false
    case "--port": port = Int(arguments.removeFirst()) ?? 0
    default:
        FileHandle.standardError.write(
            "usage: ring-http-nio [--uncached] [--port PORT] DIRECTORY\n".data(using: .utf8)!)
        exit(2)
    }
}
guard arguments.count == 1 else {
    FileHandle.standardError.write("usage: ring-http-nio [--uncached] [--port PORT] DIRECTORY\n".data(using: .utf8)!)
    exit(2)
}
let root = arguments[0]
let largestFile = 1 << 20

/// "/relative/path" to the file's bytes, for the cached mode.
func loadFiles(under directory: String) -> [String: ByteBuffer] {
    var files: [String: ByteBuffer] = [:]
    let enumerator = FileManager.default.enumerator(atPath: directory)
    while let name = enumerator?.nextObject() as? String {
        var isDirectory: ObjCBool = false
        let path = directory + "/" + name
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory), !isDirectory.boolValue,
            let data = FileManager.default.contents(atPath: path), data.count <= largestFile
        else { continue }
        files["/" + name] = ByteBuffer(bytes: data)
    }
    return files
}

final class FileHandler: ChannelInboundHandler, @unchecked Sendable {
    typealias InboundIn = HTTPServerRequestPart
    typealias OutboundOut = HTTPServerResponsePart

    let files: [String: ByteBuffer]?
    private var request: HTTPRequestHead?
    /// Responses are written in request order: an uncached read finishing early waits its turn.
    private var queue: EventLoopFuture<Void>?

    init(files: [String: ByteBuffer]?) {
        self.files = files
    }

    func channelRead(context: ChannelHandlerContext, data: NIOAny) {
        switch unwrapInboundIn(data) {
        case .head(let head): request = head
        case .body: break
        case .end:
            guard let head = request else { return }
            request = nil
            respond(to: head, context: context)
        }
    }

    private func send(
        _ status: HTTPResponseStatus, body: ByteBuffer?, head request: HTTPRequestHead, context: ChannelHandlerContext,
        extra: [(String, String)] = []
    ) {
        var headers = HTTPHeaders([("Content-Length", String(body?.readableBytes ?? 0))] + extra)
        if status == .ok { headers.add(name: "Content-Type", value: "application/octet-stream") }
        let keepAlive = request.isKeepAlive
        if !keepAlive { headers.add(name: "Connection", value: "close") }
        context.write(
            wrapOutboundOut(.head(HTTPResponseHead(version: request.version, status: status, headers: headers))),
            promise: nil)
        if let body, request.method != .HEAD { context.write(wrapOutboundOut(.body(.byteBuffer(body))), promise: nil) }
        let done = context.writeAndFlush(wrapOutboundOut(.end(nil)))
        if !keepAlive { done.whenComplete { [context] (_: Result<Void, any Error>) in context.close(promise: nil) } }
    }

    private func respond(to request: HTTPRequestHead, context: ChannelHandlerContext) {
        guard request.method == .GET || request.method == .HEAD else {
            send(
                .methodNotAllowed, body: ByteBuffer(string: "405 Method Not Allowed\n"), head: request,
                context: context, extra: [("Allow", "GET, HEAD")])
            return
        }
        let path = String(request.uri.prefix { $0 != "?" })
        if let files {
            if let body = files[path] {
                send(.ok, body: body, head: request, context: context)
            } else {
                send(.notFound, body: ByteBuffer(string: "404 Not Found\n"), head: request, context: context)
            }
            return
        }
        guard path.hasPrefix("/"), !path.split(separator: "/").contains("..") else {
            send(.notFound, body: ByteBuffer(string: "404 Not Found\n"), head: request, context: context)
            return
        }
        let loop = context.eventLoop
        let file = root + path
        let read: EventLoopFuture<ByteBuffer> = loop.makeFutureWithTask {
            try await FileSystem.shared.withFileHandle(forReadingAt: FilePath(file)) {
                try await $0.readToEnd(maximumSizeAllowed: .bytes(Int64(largestFile)))
            }
        }
        let previous = queue ?? loop.makeSucceededVoidFuture()
        let turn = previous.flatMap { read.map { Optional($0) }.recover { _ in nil } }
        queue = turn.map { [context] body in
            if let body {
                self.send(.ok, body: body, head: request, context: context)
            } else {
                self.send(.notFound, body: ByteBuffer(string: "404 Not Found\n"), head: request, context: context)
            }
        }
    }

    func errorCaught(context: ChannelHandlerContext, error: any Error) {
        context.close(promise: nil)
    }
}

let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
let files: [String: ByteBuffer]? = cached ? loadFiles(under: root) : nil

let bootstrap = ServerBootstrap(group: group)
    .serverChannelOption(ChannelOptions.backlog, value: 1024)
    .serverChannelOption(ChannelOptions.socketOption(.so_reuseaddr), value: 1)
    .childChannelOption(ChannelOptions.socketOption(.tcp_nodelay), value: 1)
    .childChannelInitializer { channel in
        channel.pipeline.configureHTTPServerPipeline(withErrorHandling: true).flatMap {
            channel.pipeline.addHandler(FileHandler(files: files))
        }
    }
let channel = try bootstrap.bind(host: "127.0.0.1", port: port).wait()
print("listening on 127.0.0.1:\(channel.localAddress?.port ?? 0)")
fflush(stdout)
try channel.closeFuture.wait()
