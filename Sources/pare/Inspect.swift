import ArgumentParser
import ModelFolder
import ModelGraph
import OrderedJSON

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show a checkpoint's architecture, size and tensors without loading it.",
        discussion: """
            PATH is a model folder, a single .safetensors file, or a \
            model.safetensors.index.json. Only headers and config.json are read, so this \
            is instant on any model size. Every header is validated as the safetensors \
            reference does, so inspect also tells whether a checkpoint is well formed.

            Examples:
              pare inspect ./Llama-3.2-1B
              pare inspect ./model.safetensors --tensors
              pare inspect ./model --json | jq .parameters
            """
    )

    @Argument(help: "Model folder, .safetensors file, or model.safetensors.index.json.")
    var path: String

    @OptionGroup(title: "Model folder")
    var folders: FolderOptions

    @Flag(help: "Print one JSON object (stable field names) instead of text.")
    var json = false

    @Flag(help: "Also list every tensor: name, dtype, shape and file.")
    var tensors = false

    func run() throws {
        try reportingFailures {
            let model = try ModelFolder(path: path, followSymlinks: folders.followSymlinks)
            let summary = ModelSummary(model, registry: .builtin)
            if json {
                StandardStream.standardOutput.write(summary.json(includeTensors: tensors).serialized(.pretty) + "\n")
            } else {
                StandardStream.standardOutput.write(summary.text(includeTensors: tensors))
            }
        }
    }
}
