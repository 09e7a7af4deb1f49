import ArgumentParser
import ModelFolder
import OrderedJSON
import Tensors

struct Clean: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Remove what killed pare runs left behind in a folder.",
        discussion: """
            pare builds every output in a hidden entry beside it, .NAME.pare-tmp-PID-START \
            (PID and start time of the run that made it), and renames it into place when \
            complete. A run that is killed leaves that entry; one killed during a swap can \
            leave the previous model in it. The next run into the same place removes them \
            itself; pare clean removes every such entry in DIR whose run is no longer \
            running, and leaves those of live runs alone.

            Examples:
              pare clean ~/models
              pare clean ~/models --dry-run --json
            """
    )

    @Argument(help: "The folder holding the outputs (the parent of a model folder, not the model folder itself).")
    var directory: String

    @Flag(help: "List what would be removed; remove nothing.")
    var dryRun = false

    @Flag(help: "Print one JSON object instead of text.")
    var json = false

    func run() throws {
        try reportingFailures {
            guard FileSystem.kind(of: directory) == .directory else {
                throw ModelFolderError.notFound(path: directory)
            }
            var removed: [(path: String, name: StagingName, bytes: Int)] = []
            var live: [(path: String, name: StagingName)] = []
            for (path, name) in try StagingName.entries(in: directory) {
                if name.ownerIsAlive {
                    live.append((path, name))
                    continue
                }
                let bytes = Self.size(of: path)
                if !dryRun { try FileSystem.removeTree(path) }
                removed.append((path, name, bytes))
            }
            if json {
                let members: [(key: String, value: JSONValue)] = [
                    ("directory", .string(directory)),
                    ("dry_run", .bool(dryRun)),
                    ("removed", .array(removed.map { .object([("path", .string($0.path)), ("for", .string($0.name.target)),
                                                             ("pid", .integer($0.name.pid)), ("bytes", .integer($0.bytes))]) })),
                    ("in_use", .array(live.map { .object([("path", .string($0.path)), ("pid", .integer($0.name.pid))]) })),
                ]
                StandardStream.standardOutput.write(JSONValue.object(members).serialized(.pretty) + "\n")
                return
            }
            let verb = dryRun ? "would remove" : "removed"
            for r in removed {
                StandardStream.standardOutput.write("\(verb) \(r.path) (\(ByteSize.describe(r.bytes)), left by PID \(r.name.pid) for \(r.name.target))\n")
            }
            for l in live {
                StandardStream.standardOutput.write("kept \(l.path): PID \(l.name.pid) is still writing it\n")
            }
            if removed.isEmpty && live.isEmpty {
                StandardStream.standardOutput.write("nothing to clean in \(directory)\n")
            }
        }
    }

    /// Bytes of the files below `path` (links not followed into).
    static func size(of path: String) -> Int {
        switch FileSystem.kind(of: path) {
        case .file: return FileSystem.isSymlink(path) ? 0 : (try? FileSystem.fileSize(path)) ?? 0
        case .directory:
            guard !FileSystem.isSymlink(path), let names = try? FileSystem.list(path) else { return 0 }
            return names.reduce(0) { $0 + size(of: PathName.join(path, $1)) }
        default: return 0
        }
    }
}
