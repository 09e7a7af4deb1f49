#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// The hidden name pare writes an output under before renaming it into place:
/// `.NAME.pare-tmp-PID-START`, beside NAME, where START is the owner's start time (clock
/// ticks since boot, from /proc) so that a reused PID is not taken for the owner. A run
/// that finds such an entry beside its target, whose owner is gone, removes it;
/// `pare clean` removes them all.
public struct StagingName: Sendable, Equatable {
    /// The entry it stands in for (its last path component).
    public let target: String
    public let pid: Int32
    /// The owner's start time, or nil for names written before start times were recorded.
    public let start: UInt64?

    static let marker = ".pare-tmp-"

    /// This process's staging path for `destination`.
    public static func path(for destination: String) -> String {
        let name = StagingName(target: PathName.lastComponent(destination), pid: getpid(), start: processStart(getpid()))
        return PathName.join(PathName.parent(destination), name.fileName)
    }

    public init(target: String, pid: Int32, start: UInt64?) {
        self.target = target
        self.pid = pid
        self.start = start
    }

    /// Reads a directory entry's name; nil when it is not a staging name.
    public init?(fileName: String) {
        guard fileName.hasPrefix("."), let at = Self.lastOccurrence(of: Self.marker, in: fileName) else { return nil }
        target = String(fileName[fileName.index(after: fileName.startIndex)..<at.lowerBound])
        var tail = fileName[at.upperBound...]
        // A swapped-out previous output may carry "-old" after the owner.
        if tail.hasSuffix("-old") { tail = tail.dropLast(4) }
        let parts = tail.split(separator: "-", omittingEmptySubsequences: false)
        guard !target.isEmpty, (1...2).contains(parts.count), let pid = Int32(parts[0]), pid > 0 else { return nil }
        self.pid = pid
        if parts.count == 2 {
            guard let start = UInt64(parts[1]) else { return nil }
            self.start = start
        } else {
            start = nil
        }
    }

    /// The staging entries in `directory`, with their paths.
    public static func entries(in directory: String) throws(FileError) -> [(path: String, name: StagingName)] {
        try FileSystem.list(directory).compactMap { entry in
            StagingName(fileName: entry).map { (PathName.join(directory, entry), $0) }
        }
    }

    public var fileName: String { ".\(target)\(Self.marker)\(pid)" + (start.map { "-\($0)" } ?? "") }

    /// Whether the process that made it still runs (the same PID, started at the same time;
    /// for a name without a start time, any process with that PID).
    public var ownerIsAlive: Bool {
        guard let now = Self.processStart(pid) else { return false }
        return start.map { $0 == now } ?? true
    }

    private static func lastOccurrence(of needle: String, in text: String) -> Range<String.Index>? {
        var found: Range<String.Index>?
        var from = text.startIndex
        while from < text.endIndex, let r = text[from...].firstRange(of: needle) {
            found = r
            from = text.index(after: r.lowerBound)
        }
        return found
    }

    /// A process's start time in clock ticks after boot (field 22 of /proc/PID/stat).
    public static func processStart(_ pid: Int32) -> UInt64? {
        guard let file = fopen("/proc/\(pid)/stat", "r") else { return nil }
        defer { fclose(file) }
        var buffer = [CChar](repeating: 0, count: 1024)
        guard fgets(&buffer, Int32(buffer.count), file) != nil else { return nil }
        let line = String(cString: buffer)
        // The command name (field 2) is in parentheses and may hold spaces: count after it.
        guard let close = line.lastIndex(of: ")") else { return nil }
        let fields = line[line.index(after: close)...].split(separator: " ")
        // fields[0] is field 3 (state), so field 22 is fields[19].
        guard fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }
}
