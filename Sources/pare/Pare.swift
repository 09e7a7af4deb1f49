import ArgumentParser

@main
struct Pare: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "pare",
        abstract: "Pare transformer checkpoints down, offline and streaming.",
        discussion: """
            pare reads Hugging Face model folders (config.json + safetensors, sharded or not) \
            without loading them: headers are read up front, tensor bytes are streamed from \
            disk one tensor at a time, so any model size works on a laptop.

            Exit status: 0 on success, 1 for bad input or I/O failure (one line on stderr \
            naming the file, the tensor and the rule), 64 for usage errors.
            """,
        version: "0.1.0",
        subcommands: [Inspect.self, Convert.self, Trim.self, Sparsify.self, Calibrate.self, Eval.self, Tokenize.self, Validate.self, Clean.self]
    )
}
