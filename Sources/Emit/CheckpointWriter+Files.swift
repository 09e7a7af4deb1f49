import ModelFolder
import SafeTensors
import Tensors

extension CheckpointWriter {
    /// Writes the files of the output folder besides the weights: the shard index, the
    /// config, `late` files, and a copy of every other file of the input.
    func writeOtherFiles(late: [(name: String, bytes: [UInt8])], progress: Progress) throws(EmitError) {
        try EmitError.catchingIO { () throws(FileError) in try writeMetadataFiles(late: late) }
        guard let root = input.root else { return }
        let total = plan.tensorBytes
        var directories: [String] = []
        let replaced = Set(late.map(\.name))
        for relative in input.otherFiles where !replaced.contains(relative) {
            if !progress(total, total) { throw .interrupted }
            try EmitError.catchingIO { () throws(FileError) in
                var directory = staged.staging
                for component in relative.split(separator: "/").dropLast() {
                    directory = PathName.join(directory, String(component))
                    if !FileSystem.exists(directory) {
                        try FileSystem.makeDirectory(directory)
                        directories.append(directory)
                    }
                }
                try FileSystem.copyFile(PathName.join(root, relative), to: staged.path(of: relative))
            }
        }
        for directory in directories.reversed() {
            try EmitError.catchingIO { () throws(FileError) in try FileSystem.syncDirectory(directory) }
        }
    }

    private func writeMetadataFiles(late: [(name: String, bytes: [UInt8])]) throws(FileError) {
        let shards = plan.shards
        if shards.count > 1 {
            let weightMap = shards.flatMap { shard in shard.items.map { ($0.entry.name, shard.fileName) } }
            let parameters = shards.reduce(UInt64(0)) { $0 + $1.items.reduce(0) { $0 + (Shape.elementCount($1.entry.shape) ?? 0) } }
            let text = ShardIndex.render(weightMap: weightMap, totalSize: plan.tensorBytes, totalParameters: parameters)
            try FileSystem.writeFile(Array(text.utf8), to: staged.path(of: plan.format.indexFileName))
        }
        if let config {
            try FileSystem.writeFile(config.bytes, to: staged.path(of: "config.json"))
        }
        for file in late {
            try FileSystem.writeFile(file.bytes, to: staged.path(of: file.name))
        }
    }

    /// Gives the output the input's permission bits: each top-level file those of the
    /// input's file of the same name, a new file (another shard name, a record) those of the
    /// input's first weight file, and the folder those of the input folder. Without this, a
    /// 0600 checkpoint would come out readable by everyone.
    func keepPermissions() throws(EmitError) {
        guard let weightMode = input.shards.first.flatMap({ FileSystem.permissions(of: $0.path) }) else { return }
        try EmitError.catchingIO { () throws(FileError) in
            if plan.writesSingleFile {
                return try FileSystem.setPermissions(staged.staging, weightMode)
            }
            for name in try FileSystem.list(staged.staging) where FileSystem.kind(of: staged.path(of: name)) == .file {
                let mode = input.root.flatMap { FileSystem.permissions(of: PathName.join($0, name)) } ?? weightMode
                try FileSystem.setPermissions(staged.path(of: name), mode)
            }
            if let root = input.root, let folderMode = FileSystem.permissions(of: root) {
                try FileSystem.setPermissions(staged.staging, folderMode)
            }
        }
    }
}
