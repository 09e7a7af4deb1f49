#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import ModelFolder
import Tensors

/// An output assembled in a hidden entry beside its destination and swapped into place only
/// once complete and flushed, so an interrupted or failed run leaves the destination as it
/// was. The input is only ever read.
struct StagedOutput: Sendable {
    /// Where the output goes, without trailing slashes.
    let destination: String
    /// The hidden entry (a folder, or a file for a bare weight file) the output is built in.
    let staging: String
    let isFolder: Bool

    /// Checks that `destination` may receive an output written from `input`.
    init(destination: String, isFolder: Bool, input: ModelFolder, force: Bool, replacesInput: Bool) throws(EmitError) {
        self.destination = destination
        self.isFolder = isFolder
        staging = StagingName.path(for: destination)
        try checkDestination(input: input, force: force, replacesInput: replacesInput)
    }

    /// Refuses outputs that exist (without force) or that overlap the input.
    ///
    /// Overlap is judged on real locations: the input folder, and every file it reads or
    /// copies after symlinks are resolved (a Hugging Face cache snapshot links into a blob
    /// store elsewhere, which `--force` must never replace).
    private func checkDestination(input: ModelFolder, force: Bool, replacesInput: Bool) throws(EmitError) {
        let output = destination
        let name = PathName.lastComponent(output)
        guard !name.isEmpty, name != ".", name != "..", name != "/" else {
            throw .outputOverlapsInput(input: input.path, output: output)
        }
        let parent = PathName.parent(output)
        guard FileSystem.kind(of: parent) == .directory, let parentAbsolute = FileSystem.realPath(parent) else {
            throw .outputFolderMissing(path: parent)
        }
        let outputAbsolute = PathName.join(parentAbsolute, name)
        if replacesInput {
            // Only the input itself may be replaced, and only as a whole.
            let root = FileSystem.realPath(input.root ?? input.path)
            guard root == FileSystem.realPath(output) else { throw .outputOverlapsInput(input: input.path, output: output) }
            return
        }
        let outputs = Set([outputAbsolute, FileSystem.realPath(output) ?? outputAbsolute])
        var inputs = [FileSystem.realPath(input.root ?? input.path) ?? input.path]
        inputs += input.shards.compactMap { FileSystem.realPath($0.path) }
        if let root = input.root {
            inputs += input.otherFiles.compactMap { FileSystem.realPath(PathName.join(root, $0)) }
            inputs += [PathName.join(root, "config.json")].compactMap(FileSystem.realPath)
        }
        for out in outputs {
            for path in inputs where PathName.isSameOrInside(path, out) || PathName.isSameOrInside(out, path) {
                throw .outputOverlapsInput(input: input.path, output: output)
            }
        }
        if FileSystem.exists(output) && !force { throw .outputExists(path: output) }
    }

    /// Removes what killed runs left beside the destination (staging entries whose owner
    /// is gone), and makes the staging folder. Returns one line per entry removed.
    func begin() throws(EmitError) -> [String] {
        let removed = Self.removeStale(beside: destination)
        ResourceFailure.register(staging)
        try EmitError.catchingIO { () throws(FileError) in
            try FileSystem.removeTree(staging)
            if isFolder { try FileSystem.makeDirectory(staging) }
        }
        return removed.map { "removed \($0.path), left by an earlier run (PID \($0.name.pid)) that is no longer running" }
    }

    /// Removes the staging entries of dead runs beside `destination` (only those standing
    /// for it), and says which; entries whose owner still runs are left alone.
    static func removeStale(beside destination: String) -> [(path: String, name: StagingName)] {
        let parent = PathName.parent(destination)
        let target = PathName.lastComponent(destination)
        guard let entries = try? StagingName.entries(in: parent) else { return [] }
        return entries.filter { entry in
            entry.name.target == target && !entry.name.ownerIsAlive && (try? FileSystem.removeTree(entry.path)) != nil
        }
    }

    /// The staging path of a file of the output folder.
    func path(of name: String) -> String { PathName.join(staging, name) }

    /// Flushes the weight files (the other files are small and written through) and the
    /// folder entry to disk, so what is swapped in is complete.
    func flush(weightFiles: [String]) throws(EmitError) {
        try EmitError.catchingIO { () throws(FileError) in
            guard isFolder else { return try FileSystem.syncFile(staging) }
            for name in weightFiles { try FileSystem.syncFile(path(of: name)) }
            try FileSystem.syncDirectory(staging)
        }
    }

    /// Removes the staging entry after a failure.
    func discard() {
        try? FileSystem.removeTree(staging)
        ResourceFailure.unregister(staging)
    }

    /// Puts the finished staging entry in place of the output. An existing output is swapped
    /// with it in one atomic exchange where the kernel can, so the output path never stops
    /// existing, and the old one is removed only once the new one is in place. Returns
    /// warnings about leftovers (the new output is in place all the same).
    func commit() throws(EmitError) -> [String] {
        let output = destination
        // From here on the staging path holds either nothing or, after an exchange, the
        // previous output: never something to delete on a failure.
        ResourceFailure.unregister(staging)
        var warnings: [String] = []
        if FileSystem.exists(output) {
            do throws(FileError) {
                try FileSystem.exchange(staging, output)
            } catch {
                // No atomic exchange here (old kernel or filesystem): move aside, then in.
                let retired = staging + "-old"
                try EmitError.catchingIO { () throws(FileError) in try FileSystem.rename(output, to: retired) }
                do throws(FileError) {
                    try FileSystem.rename(staging, to: output)
                } catch {
                    try? FileSystem.rename(retired, to: output)
                    throw .io(error)
                }
                try? FileSystem.rename(retired, to: staging)
            }
            // `staging` now holds the previous output. It goes only once the swap is on disk:
            // a crash before that may bring the old entries back, and the previous model
            // must then still be there (README: "If a crash interrupts a swap").
            do throws(FileError) { try FileSystem.syncDirectory(PathName.parent(output)) } catch {
                warnings.append("could not flush the directory entry of \(output), so the previous one is kept in \(staging): \(error.reason)")
                return warnings
            }
            do throws(FileError) { try FileSystem.removeTree(staging) } catch {
                warnings.append("the previous \(output) was replaced but could not be removed from \(staging): \(error.reason)")
            }
            return warnings
        }
        try EmitError.catchingIO { () throws(FileError) in try FileSystem.rename(staging, to: output) }
        do throws(FileError) { try FileSystem.syncDirectory(PathName.parent(output)) } catch {
            warnings.append("could not flush the directory entry of \(output): \(error.reason)")
        }
        return warnings
    }
}
