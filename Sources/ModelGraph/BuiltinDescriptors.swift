/// The descriptors of `formats/`, embedded in the binary by SwiftPM (`.embedInCode`, through
/// the `Sources/ModelGraph/formats` link), so a pare executable works wherever it is copied.
///
/// SwiftPM names each embedded file but cannot list them: a new descriptor needs its line
/// here, and `embeddedDescriptorsMatchFormatsFolder` fails until it has one.
enum BuiltinDescriptors {
    static let files: [(name: String, bytes: [UInt8])] = [
        ("bert.json", PackageResources.bert_json),
        ("gemma2.json", PackageResources.gemma2_json),
        ("gpt2.json", PackageResources.gpt2_json),
        ("llama.json", PackageResources.llama_json),
        ("mistral.json", PackageResources.mistral_json),
        ("mixtral.json", PackageResources.mixtral_json),
        ("olmo2.json", PackageResources.olmo2_json),
        ("qwen2.json", PackageResources.qwen2_json),
        ("qwen2_moe.json", PackageResources.qwen2_moe_json),
        ("qwen3.json", PackageResources.qwen3_json),
        ("qwen3_moe.json", PackageResources.qwen3_moe_json),
    ]
}
