import ArgumentParser
import CSystemShims
#if canImport(Glibc)
import Glibc
#endif

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

    /// Runs the command, then leaves with `_exit`: library finalizers do not run. OpenBLAS's
    /// finalizer joins its worker threads, and a worker that could not get its buffer
    /// (under a memory limit) never ends, so a normal exit hung after the work was done.
    /// Every file pare writes is complete (or removed) before this point.
    static func main() {
        // One malloc arena per thread reserves 64 MiB of address space each; under a
        // memory limit (ulimit -v) those reservations, not the data, ran out first and the
        // Swift runtime trapped on a small allocation. Two arenas are plenty: pare's hot
        // loops do not allocate.
        _ = pare_limit_malloc_arenas(2)
        let code: Int32
        do {
            var command = try parseAsRoot()
            try command.run()
            code = 0
        } catch {
            let status = exitCode(for: error)
            let message = fullMessage(for: error)
            if !message.isEmpty {
                (status == .success ? StandardStream.standardOutput : StandardStream.standardError).write(message + "\n")
            }
            code = status.rawValue
        }
        fflush(nil)  // every stdio stream (print() buffers stdout)
        _exit(code)
    }
}
