import Foundation
import OrderedJSON

extension Tokenizer {
    /// Loads `tokenizer.json` from a model folder (or the file itself).
    ///
    /// `tokenizer_config.json` is not read: its `add_bos_token` and `add_eos_token` do not
    /// change the ids of `tokenizers`, nor of transformers 5's AutoTokenizer (the interop
    /// suite checks both), which apply tokenizer.json's post-processor alone.
    public convenience init(folder: String) throws(TokenizerError) {
        var isDirectory: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: folder, isDirectory: &isDirectory)
        guard exists else { throw .unreadable(path: folder, problem: "does not exist") }
        let path = isDirectory.boolValue ? (folder as NSString).appendingPathComponent("tokenizer.json") : folder
        guard FileManager.default.fileExists(atPath: path) else { throw .missing(folder: folder) }
        try self.init(json: try Self.readJSON(path), path: path)
    }

    static func readJSON(_ path: String) throws(TokenizerError) -> JSONValue {
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable(path: path, problem: "cannot be read") }
        do {
            return try data.withUnsafeBytes { raw throws(JSONParseError) in try JSONParser.parse(raw) }
        } catch {
            throw .unreadable(path: path, problem: "is not valid JSON (\(error))")
        }
    }

    /// Builds the tokenizer from the parsed tokenizer.json.
    convenience init(json: JSONValue, path: String) throws(TokenizerError) {
        let reader = ComponentReader(path: path)
        guard json.objectMembers != nil else { throw .invalid(path: path, key: "(top level)", problem: "is not a JSON object") }
        var components: [(stage: String, type: String)] = []

        guard let modelJSON = json["model"], modelJSON.objectMembers != nil else {
            throw .invalid(path: path, key: "model", problem: "is missing or not an object")
        }
        let (model, modelType, vocabularyMax) = try reader.model(modelJSON)
        components.append(("model", modelType))

        var normalizer: Normalizer?
        if let n = json["normalizer"], !n.isNull {
            normalizer = try reader.normalizer(n, key: "normalizer")
            components.append(("normalizer", reader.describe(n)))
        }
        var preTokenizer: PreTokenizer?
        if let p = json["pre_tokenizer"], !p.isNull {
            preTokenizer = try reader.preTokenizer(p, key: "pre_tokenizer")
            components.append(("pre_tokenizer", reader.describe(p)))
        }
        var postProcessor = PostProcessor.none
        if let p = json["post_processor"], !p.isNull {
            postProcessor = try reader.postProcessor(p, key: "post_processor")
            components.append(("post_processor", reader.describe(p)))
        }

        // `tokenizers` adds the added tokens again on load, in file order: a token already
        // added or in the model's vocabulary keeps that id, any other takes the next id from
        // the vocabulary's entry count on, whatever id the file writes beside it.
        struct Declared { let entry: AddedVocabulary.Entry; let normalized: Bool }
        var idOfContent: [[UInt32]: Int32] = [:]
        var declared: [Int32: Declared] = [:]
        var order: [Int32] = []
        var nextID = Int32(clamping: model.vocabulary.count)
        for (k, token) in (json["added_tokens"]?.arrayValue ?? []).enumerated() {
            let key = "added_tokens[\(k)]"
            guard let content = token["content"]?.stringValue, let fileID = token["id"]?.intValue, fileID >= 0, fileID <= Int(Int32.max) else {
                throw .invalid(path: path, key: key, problem: "needs a string 'content' and an integer 'id'")
            }
            let raw = content.unicodeScalars.map(\.value)
            guard !raw.isEmpty else { continue }
            let id: Int32
            if let known = idOfContent[raw] ?? model.vocabulary[raw] {
                id = known
            } else {
                guard nextID < Int32.max else { throw .invalid(path: path, key: key, problem: "takes an id past the largest pare can hold") }
                id = nextID
                nextID += 1
            }
            idOfContent[raw] = id
            let isNormalized = token["normalized"]?.boolValue ?? !(token["special"]?.boolValue ?? false)
            var scalars = raw
            if isNormalized, let normalizer { scalars = normalizer.apply(scalars) }
            if declared[id] == nil { order.append(id) }
            declared[id] = Declared(entry: .init(scalars: scalars, id: id, singleWord: token["single_word"]?.boolValue ?? false,
                                                 stripLeft: token["lstrip"]?.boolValue ?? false,
                                                 stripRight: token["rstrip"]?.boolValue ?? false),
                                    normalized: isNormalized)
        }
        var added = AddedVocabulary()
        var largest = vocabularyMax
        for id in order {
            let token = declared[id]!
            added.add(token.entry, normalized: token.normalized)
            largest = max(largest, Int(id))
        }

        self.init(path: path, components: components, vocabularySize: largest + 1, normalizer: normalizer,
                  preTokenizer: preTokenizer, model: model, postProcessor: postProcessor, added: added)
    }
}

/// Reads the components of tokenizer.json, naming the key of anything it refuses.
struct ComponentReader {
    let path: String

    func describe(_ json: JSONValue) -> String {
        let type = json["type"]?.stringValue ?? "?"
        for key in ["normalizers", "pretokenizers", "processors"] {
            if let items = json[key]?.arrayValue {
                return "\(type)[\(items.map(describe).joined(separator: ", "))]"
            }
        }
        return type
    }

    private func type(_ json: JSONValue, _ key: String) throws(TokenizerError) -> String {
        guard let type = json["type"]?.stringValue else { throw .invalid(path: path, key: "\(key).type", problem: "is missing") }
        return type
    }

    private func string(_ json: JSONValue, _ name: String, _ key: String) throws(TokenizerError) -> String {
        guard let value = json[name]?.stringValue else { throw .invalid(path: path, key: "\(key).\(name)", problem: "is missing or not a string") }
        return value
    }

    private func bool(_ json: JSONValue, _ name: String, default value: Bool) -> Bool {
        json[name]?.boolValue ?? value
    }

    private func pattern(_ json: JSONValue?, _ key: String) throws(TokenizerError) -> Pattern {
        guard let json else { throw .invalid(path: path, key: key, problem: "is missing") }
        if let literal = json["String"]?.stringValue { return Pattern(literal: literal) }
        guard let source = json["Regex"]?.stringValue else {
            throw .invalid(path: path, key: key, problem: "is neither {\"String\": …} nor {\"Regex\": …}")
        }
        do { return try Pattern(source) } catch {
            throw .pattern(path: path, pattern: source, problem: error.problem)
        }
    }

    private func scalars(_ text: String) -> [UInt32] { text.unicodeScalars.map(\.value) }

    /// The components of a `Sequence`, each read with `read` under its indexed key.
    private func steps<T>(_ json: JSONValue, _ key: String, _ member: String,
                          _ read: (JSONValue, String) throws(TokenizerError) -> T) throws(TokenizerError) -> [T] {
        guard let items = json[member]?.arrayValue else { throw .invalid(path: path, key: "\(key).\(member)", problem: "is missing") }
        var out: [T] = []
        for (k, item) in items.enumerated() { out.append(try read(item, "\(key).\(member)[\(k)]")) }
        return out
    }

    func normalizer(_ json: JSONValue, key: String) throws(TokenizerError) -> Normalizer {
        let type = try type(json, key)
        switch type {
        case "Sequence":
            return .sequence(try steps(json, key, "normalizers", normalizer))
        case "Prepend": return .prepend(scalars(try string(json, "prepend", key)))
        case "Replace":
            return .replace(try pattern(json["pattern"], "\(key).pattern"), with: scalars(try string(json, "content", key)))
        case "Lowercase": return .lowercase
        case "NFC": return .nfc
        case "NFD": return .nfd
        case "NFKC": return .nfkc
        case "NFKD": return .nfkd
        case "Strip": return .strip(left: bool(json, "strip_left", default: true), right: bool(json, "strip_right", default: true))
        case "StripAccents": return .stripAccents
        case "BertNormalizer":
            let lowercase = bool(json, "lowercase", default: true)
            let strip = json["strip_accents"].flatMap { $0.isNull ? nil : $0.boolValue } ?? lowercase
            return .bert(cleanText: bool(json, "clean_text", default: true), chineseCharacters: bool(json, "handle_chinese_chars", default: true),
                         stripAccents: strip, lowercase: lowercase)
        case "Precompiled":
            throw .unsupported(path: path, component: "the normalizer 'Precompiled' (\(key))",
                               reason: "it is a compiled SentencePiece character map")
        default:
            throw .unsupported(path: path, component: "the normalizer '\(type)' (\(key))", reason: "pare implements Sequence, Prepend, Replace, Lowercase, NFC, NFD, NFKC, NFKD, Strip, StripAccents and BertNormalizer")
        }
    }

    func preTokenizer(_ json: JSONValue, key: String) throws(TokenizerError) -> PreTokenizer {
        let type = try type(json, key)
        switch type {
        case "Sequence":
            return .sequence(try steps(json, key, "pretokenizers", preTokenizer))
        case "Split":
            let behaviorName = try string(json, "behavior", key)
            guard let behavior = SplitBehavior(rawValue: behaviorName) else {
                throw .unsupported(path: path, component: "the split behavior '\(behaviorName)' (\(key).behavior)", reason: "unknown")
            }
            return .split(try pattern(json["pattern"], "\(key).pattern"), behavior, invert: bool(json, "invert", default: false))
        case "ByteLevel":
            return .byteLevel(addPrefixSpace: bool(json, "add_prefix_space", default: true), useRegex: bool(json, "use_regex", default: true))
        case "Metaspace":
            let replacement = scalars(try string(json, "replacement", key))
            guard replacement.count == 1 else { throw .invalid(path: path, key: "\(key).replacement", problem: "is not one character") }
            var scheme = PreTokenizer.PrependScheme.always
            if let name = json["prepend_scheme"]?.stringValue {
                guard let s = PreTokenizer.PrependScheme(rawValue: name) else {
                    throw .unsupported(path: path, component: "the prepend scheme '\(name)' (\(key).prepend_scheme)", reason: "unknown")
                }
                scheme = s
            }
            if json["add_prefix_space"]?.boolValue == false { scheme = .never }
            return .metaspace(replacement: replacement[0], prepend: scheme, split: bool(json, "split", default: true))
        case "BertPreTokenizer": return .bert
        case "WhitespaceSplit": return .whitespaceSplit
        case "Digits": return .digits(individually: bool(json, "individual_digits", default: false))
        case "Punctuation":
            let name = json["behavior"]?.stringValue ?? "Isolated"
            guard let behavior = SplitBehavior(rawValue: name) else {
                throw .unsupported(path: path, component: "the split behavior '\(name)' (\(key).behavior)", reason: "unknown")
            }
            return .punctuation(behavior)
        default:
            throw .unsupported(path: path, component: "the pre-tokenizer '\(type)' (\(key))",
                               reason: "pare implements Sequence, Split, ByteLevel, Metaspace, BertPreTokenizer, WhitespaceSplit, Digits and Punctuation")
        }
    }

    func postProcessor(_ json: JSONValue, key: String) throws(TokenizerError) -> PostProcessor {
        let type = try type(json, key)
        switch type {
        case "Sequence":
            return .sequence(try steps(json, key, "processors", postProcessor))
        case "ByteLevel": return .none
        case "BertProcessing", "RobertaProcessing":
            guard let cls = json["cls"]?.arrayValue, cls.count == 2, let clsID = cls[1].intValue,
                  let sep = json["sep"]?.arrayValue, sep.count == 2, let sepID = sep[1].intValue else {
                throw .invalid(path: path, key: key, problem: "needs 'cls' and 'sep' as [token, id]")
            }
            return .template(before: [Int32(clsID)], after: [Int32(sepID)])
        case "TemplateProcessing":
            guard let single = json["single"]?.arrayValue else { throw .invalid(path: path, key: "\(key).single", problem: "is missing") }
            let specials = json["special_tokens"]
            var before: [Int32] = [], after: [Int32] = []
            var seenSequence = false
            for (k, item) in single.enumerated() {
                if item["Sequence"] != nil {
                    guard !seenSequence else { throw .invalid(path: path, key: "\(key).single", problem: "holds the sequence twice") }
                    seenSequence = true
                } else if let name = item["SpecialToken"]?["id"]?.stringValue {
                    guard let ids = specials?[name]?["ids"]?.arrayValue else {
                        throw .invalid(path: path, key: "\(key).special_tokens.\(name)", problem: "is missing")
                    }
                    for id in ids {
                        guard let v = id.intValue, v >= 0, v <= Int(Int32.max) else {
                            throw .invalid(path: path, key: "\(key).special_tokens.\(name).ids", problem: "holds a non-id")
                        }
                        if seenSequence { after.append(Int32(v)) } else { before.append(Int32(v)) }
                    }
                } else {
                    throw .invalid(path: path, key: "\(key).single[\(k)]", problem: "is neither a SpecialToken nor a Sequence")
                }
            }
            return .template(before: before, after: after)
        default:
            throw .unsupported(path: path, component: "the post-processor '\(type)' (\(key))",
                               reason: "pare implements TemplateProcessing, BertProcessing, RobertaProcessing, ByteLevel and Sequence")
        }
    }

    /// The model, its type name, and its largest id.
    func model(_ json: JSONValue) throws(TokenizerError) -> (Tokenizer.Model, String, Int) {
        var type = json["type"]?.stringValue
        if type == nil {
            // Files from before the `type` key: recognised by their fields, as `tokenizers` does.
            if json["merges"] != nil { type = "BPE" } else if json["max_input_chars_per_word"] != nil { type = "WordPiece" }
        }
        guard let vocabJSON = json["vocab"]?.objectMembers else {
            if let type, type != "BPE", type != "WordPiece" {
                throw .unsupported(path: path, component: "the model '\(type)'", reason: "pare implements BPE and WordPiece")
            }
            throw .invalid(path: path, key: "model.vocab", problem: "is missing or not an object")
        }
        var vocabulary = Vocabulary()
        var largest = -1
        for (token, value) in vocabJSON {
            guard let id = value.intValue, id >= 0, id <= Int(Int32.max) else {
                throw .invalid(path: path, key: "model.vocab", problem: "maps \(TokenizerError.quoted(token)) to something that is not an id")
            }
            vocabulary.insert(token, id: Int32(id))
            largest = max(largest, id)
        }
        switch type {
        case "BPE":
            return (.bytePair(try bytePair(json, vocabulary)), "BPE", largest)
        case "WordPiece":
            let unknownName = json["unk_token"]?.stringValue ?? "[UNK]"
            guard let unknown = vocabulary[unknownName] else {
                throw .notInVocabulary(path: path, token: unknownName, needed: "WordPiece needs it as its unknown token")
            }
            return (.wordPiece(WordPieceModel(vocabulary: vocabulary, unknown: unknown,
                                              prefix: scalars(json["continuing_subword_prefix"]?.stringValue ?? "##"),
                                              maximumScalars: json["max_input_chars_per_word"]?.intValue ?? 100)), "WordPiece", largest)
        default:
            throw .unsupported(path: path, component: "the model '\(type ?? "(untyped)")'", reason: "pare implements BPE and WordPiece")
        }
    }

    private func bytePair(_ json: JSONValue, _ vocabulary: Vocabulary) throws(TokenizerError) -> BytePairModel {
        if let dropout = json["dropout"]?.doubleValue, dropout > 0 {
            throw .unsupported(path: path, component: "BPE dropout \(dropout) (model.dropout)", reason: "it makes ids random")
        }
        let prefix = json["continuing_subword_prefix"]?.stringValue
        let suffix = json["end_of_word_suffix"]?.stringValue
        var unknown: Int32?
        if let name = json["unk_token"]?.stringValue {
            guard let id = vocabulary[name] else {
                throw .notInVocabulary(path: path, token: name, needed: "the BPE model names it as its unknown token")
            }
            unknown = id
        }
        var fallback: [Int32]?
        if json["byte_fallback"]?.boolValue == true {
            fallback = (0..<256).map { b in vocabulary[String(format: "<0x%02X>", b)] ?? -1 }
        }
        guard let mergeList = json["merges"]?.arrayValue else { throw .invalid(path: path, key: "model.merges", problem: "is missing") }
        var merges = PairTable<BytePairModel.Merge>(capacity: mergeList.count, filler: .init(rank: 0, id: 0))
        let prefixLength = prefix?.unicodeScalars.count ?? 0
        for (rank, entry) in mergeList.enumerated() {
            let parts: [String]
            if let line = entry.stringValue {
                parts = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
            } else if let pair = entry.arrayValue {
                parts = pair.compactMap(\.stringValue)
            } else {
                parts = []
            }
            guard parts.count == 2 else {
                throw .invalid(path: path, key: "model.merges[\(rank)]", problem: "is not a pair of tokens")
            }
            guard let a = vocabulary[parts[0]] else { throw .notInVocabulary(path: path, token: parts[0], needed: "merge \(rank) uses it") }
            guard let b = vocabulary[parts[1]] else { throw .notInVocabulary(path: path, token: parts[1], needed: "merge \(rank) uses it") }
            // The merged token drops the right part's continuation prefix.
            let right = Array(parts[1].unicodeScalars.map(\.value).dropFirst(prefixLength))
            let joined = parts[0].unicodeScalars.map(\.value) + right
            guard let id = vocabulary[joined] else {
                throw .notInVocabulary(path: path, token: String(scalars: joined), needed: "merge \(rank) produces it")
            }
            merges.set(BytePairModel.key(a, b), .init(rank: Int32(rank), id: id))
        }
        return BytePairModel(vocabulary: vocabulary, merges: merges,
                             adjacent: prefix == nil && suffix == nil ? BytePairModel.adjacentPairs(vocabulary) : nil,
                             unknown: unknown, fuseUnknown: json["fuse_unk"]?.boolValue ?? false,
                             byteFallback: fallback, continuingPrefix: prefix.map(scalars), endOfWordSuffix: suffix.map(scalars),
                             ignoreMerges: json["ignore_merges"]?.boolValue ?? false)
    }
}
