#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Emit
import ModelFolder
import Runtime

/// A one-line progress bar on stderr for work that takes more than about a second.
///
/// Silent when stderr is not a terminal or with `--quiet`, so logs and pipes stay clean.
final class ProgressBar {
    private let label: String
    private let enabled: Bool
    private let start = ProgressBar.now()
    private var lastDraw = 0.0
    private var drawn = false

    init(label: String, quiet: Bool) {
        self.label = label
        enabled = !quiet && StandardStream.standardError.isTerminal
    }

    static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    func update(done: Int, total: Int) {
        guard enabled else { return }
        let t = Self.now()
        // Nothing for the first second; then at most ten redraws a second.
        guard t - start > 1.0, t - lastDraw > 0.1 || done == total else { return }
        lastDraw = t
        drawn = true
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 1
        let width = 30
        let filled = Int(fraction * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let elapsed = t - start
        let rate = elapsed > 0 ? Double(done) / elapsed : 0
        let eta = rate > 0 ? Double(total - done) / rate : 0
        let percent = Int(fraction * 100)
        StandardStream.standardError.write(
            "\r\(label) \(bar) \(percent)% \(ByteSize.describe(done))/\(ByteSize.describe(total)) \(ByteSize.describe(Int(rate)))/s eta \(Int(eta))s\u{1B}[K")
    }

    /// Progress as a fraction, with a rate of `units` per second (tokens, for eval).
    func update(fraction: Double, units: Int, unit: String) {
        guard enabled else { return }
        let t = Self.now()
        guard t - start > 1.0, t - lastDraw > 0.1 || fraction >= 1 else { return }
        lastDraw = t
        drawn = true
        let width = 30
        let filled = Int(min(1, fraction) * Double(width))
        let bar = String(repeating: "█", count: filled) + String(repeating: "·", count: width - filled)
        let elapsed = t - start
        let rate = elapsed > 0 ? Double(units) * fraction / elapsed : 0
        let eta = fraction > 0 ? elapsed * (1 - fraction) / fraction : 0
        StandardStream.standardError.write("\r\(label) \(bar) \(Int(fraction * 100))% \(Int(rate)) \(unit)/s eta \(Int(eta))s\u{1B}[K")
    }

    func finish() {
        guard enabled, drawn else { return }
        drawn = false
        StandardStream.standardError.write("\r\u{1B}[K")
    }
}

/// Runs a checkpoint writer with a progress bar, stopping cleanly on Ctrl-C/SIGTERM, and prints
/// its warnings: what every command that writes a model does the same way.
func runShowingProgress(
    _ writer: CheckpointWriter, label: String, quiet: Bool,
    lateFiles: () throws(EmitError) -> [(name: String, bytes: [UInt8])] = { [] }
) throws {
    let bar = ProgressBar(label: label, quiet: quiet)
    Interruption.install()
    defer { bar.finish() }
    let warnings = try writer.run(
        progress: { done, total in
            bar.update(done: done, total: total)
            return !Interruption.isRequested
        },
        lateFiles: lateFiles)
    bar.finish()
    warn(warnings)
}

/// Prints one `pare: warning:` line per warning.
func warn(_ warnings: [String]) {
    for warning in warnings { StandardStream.standardError.write("pare: warning: \(warning)\n") }
}

extension ProgressBar {
    /// Runs a long computation under a bar of `units` tokens, with Ctrl-C handling: `work`
    /// gets a callback that moves the bar to a fraction and returns false once a stop is
    /// asked for, and a run that stops with `RuntimeError.interrupted` ends the process
    /// with the signal's status after saying that nothing was written.
    static func running<T>(_ label: String, quiet: Bool, tokens: Int, _ work: (_ progress: (Double) -> Bool) throws -> T) throws -> T {
        let bar = ProgressBar(label: label, quiet: quiet)
        Interruption.install()
        let result: T
        do {
            result = try work { fraction in
                bar.update(fraction: fraction, units: tokens, unit: "tokens")
                return !Interruption.isRequested
            }
        } catch {
            bar.finish()
            guard case RuntimeError.interrupted = error else { throw error }
            StandardStream.standardError.write("pare: interrupted; nothing was written\n")
            throw ExitCode(Interruption.exitStatus)
        }
        bar.finish()
        return result
    }
}
