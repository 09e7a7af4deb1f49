#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import CSystemShims

/// Thin wrappers over the directory calls pare needs, throwing `FileError`.
public enum FileSystem {
    public enum Kind: Sendable, Equatable {
        case file, directory, other
    }

    /// What is at `path`, following symlinks, or `nil` when nothing is.
    public static func kind(of path: String) -> Kind? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        switch info.st_mode & S_IFMT {
        case S_IFREG: return .file
        case S_IFDIR: return .directory
        default: return .other
        }
    }

    public static func exists(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0
    }

    public static func fileSize(_ path: String) throws(FileError) -> Int {
        var info = stat()
        guard stat(path, &info) == 0 else { throw FileError(.stat, path: path) }
        return Int(info.st_size)
    }

    /// The entries of a directory, sorted by name so every walk is deterministic.
    public static func list(_ path: String) throws(FileError) -> [String] {
        guard let dir = opendir(path) else { throw FileError(.list, path: path) }
        defer { closedir(dir) }
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafePointer(to: entry.pointee.d_name) {
                $0.withMemoryRebound(to: CChar.self, capacity: 256) { String(cString: $0) }
            }
            if name != "." && name != ".." { names.append(name) }
        }
        return names.sorted()
    }

    public static func makeDirectory(_ path: String) throws(FileError) {
        guard mkdir(path, 0o755) == 0 else { throw FileError(.createDirectory, path: path) }
    }

    public static func rename(_ from: String, to: String) throws(FileError) {
        guard Glibc.rename(from, to) == 0 else { throw FileError(.rename, path: from) }
    }

    /// Atomically swaps two existing paths (Linux `renameat2(RENAME_EXCHANGE)`), so that
    /// neither name is ever missing. Fails where the kernel or filesystem cannot.
    public static func exchange(_ a: String, _ b: String) throws(FileError) {
        guard pare_rename_exchange(a, b) == 0 else { throw FileError(.rename, path: a) }
    }

    /// Removes a file or a whole directory tree. Symlinks are removed, never followed.
    public static func removeTree(_ path: String) throws(FileError) {
        var info = stat()
        guard lstat(path, &info) == 0 else {
            if errno == ENOENT { return }
            throw FileError(.remove, path: path)
        }
        if info.st_mode & S_IFMT == S_IFDIR {
            for name in try list(path) { try removeTree(path + "/" + name) }
            guard rmdir(path) == 0 else { throw FileError(.remove, path: path) }
        } else {
            guard unlink(path) == 0 else { throw FileError(.remove, path: path) }
        }
    }

    /// Copies a regular file byte for byte into a new file with the same permission bits.
    public static func copyFile(_ source: String, to destination: String) throws(FileError) {
        let input = try MappedFile(path: source)
        let output = try OutputFile(creating: destination, permissions: input.permissions)
        try output.copy(from: input, at: 0, count: input.size)
        try output.sync()
        try output.close()
    }

    /// Writes a new file (which must not exist) and flushes it to the device.
    public static func writeFile(_ bytes: [UInt8], to path: String) throws(FileError) {
        let file = try OutputFile(creating: path)
        try file.write(bytes)
        try file.sync()
        try file.close()
    }

    /// Replaces `path` (a file, or nothing) with `bytes` atomically: written beside it,
    /// flushed, then renamed over it, so a reader never sees half a file.
    public static func replaceFile(_ path: String, with bytes: [UInt8]) throws(FileError) {
        let staging = StagingName.path(for: path)
        try removeTree(staging)
        do throws(FileError) {
            try writeFile(bytes, to: staging)
            try rename(staging, to: path)
        } catch {
            try? removeTree(staging)
            throw error
        }
    }

    /// Flushes a file's data to the device (for files written and closed earlier).
    public static func syncFile(_ path: String) throws(FileError) {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(.open, path: path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw FileError(.sync, path: path) }
    }

    /// Flushes a directory's entries, so that renames into it survive a crash.
    public static func syncDirectory(_ path: String) throws(FileError) {
        let fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw FileError(.open, path: path) }
        defer { close(fd) }
        guard fsync(fd) == 0 else { throw FileError(.sync, path: path) }
    }

    /// Whether `path` itself is a symbolic link (not followed).
    public static func isSymlink(_ path: String) -> Bool {
        var info = stat()
        return lstat(path, &info) == 0 && (info.st_mode & S_IFMT) == S_IFLNK
    }

    /// The permission bits of a file or folder (symlinks followed); nil when it cannot be
    /// examined.
    public static func permissions(of path: String) -> mode_t? {
        var info = stat()
        guard stat(path, &info) == 0 else { return nil }
        return info.st_mode & 0o7777
    }

    /// Sets the permission bits of a file or folder.
    public static func setPermissions(_ path: String, _ mode: mode_t) throws(FileError) {
        guard chmod(path, mode) == 0 else { throw FileError(.write, path: path) }
    }

    /// The canonical absolute path, resolving symlinks and `..`; `nil` when it does not exist.
    public static func realPath(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        return String(cString: resolved)
    }
}
