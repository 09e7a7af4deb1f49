import OrderedJSON

/// A Hugging Face tokenizer read from `tokenizer.json`, encoding text to the ids the
/// `tokenizers` library gives: added tokens first, then the normalizer, the pre-tokenizer,
/// the model (BPE or WordPiece) and the post-processor's special tokens.
///
/// Truncation and padding settings in the file are ignored: pare cuts its own windows.
public final class Tokenizer: Sendable {
    /// The tokenizer.json the tokenizer came from.
    public let path: String
    /// One line per stage, for `--json` summaries and error reports: model, normalizer,
    /// pre-tokenizer and post-processor types.
    public let components: [(stage: String, type: String)]
    /// One past the largest id the tokenizer can produce.
    public let vocabularySize: Int

    let normalizer: Normalizer?
    let preTokenizer: PreTokenizer?
    let model: Model
    let postProcessor: PostProcessor
    let added: AddedVocabulary

    enum Model: Sendable {
        case bytePair(BytePairModel)
        case wordPiece(WordPieceModel)

        var vocabulary: Vocabulary {
            switch self {
            case .bytePair(let model): model.vocabulary
            case .wordPiece(let model): model.vocabulary
            }
        }
    }

    init(path: String, components: [(stage: String, type: String)], vocabularySize: Int, normalizer: Normalizer?,
         preTokenizer: PreTokenizer?, model: Model, postProcessor: PostProcessor, added: AddedVocabulary) {
        self.path = path
        self.components = components
        self.vocabularySize = vocabularySize
        self.normalizer = normalizer
        self.preTokenizer = preTokenizer
        self.model = model
        self.postProcessor = postProcessor
        self.added = added
    }

    /// Encodes one document. With `addSpecialTokens`, the post-processor's tokens (BOS,
    /// `[CLS]`/`[SEP]`) are put around it, as `Tokenizer.encode` does by default.
    public func encode(_ text: String, addSpecialTokens: Bool = true) throws(TokenizerError) -> [Int32] {
        var encoder = Encoder()
        return try encode(text, addSpecialTokens: addSpecialTokens, with: &encoder)
    }

    /// Buffers and word caches kept across the documents of one run.
    public struct Encoder {
        var split = SplitScratch()
        var bytePair = BytePairModel.Scratch()
        var wordPieces: [[UInt32]: [Int32]] = [:]
        public init() {}
    }

    public func encode(_ text: String, addSpecialTokens: Bool, with encoder: inout Encoder) throws(TokenizerError) -> [Int32] {
        let scalars = text.unicodeScalars.map(\.value)
        var pieces: [Piece] = []
        added.split(Piece(scalars: scalars, token: nil, atOrigin: true), normalizedTokens: false, into: &pieces)
        if normalizer != nil || added.hasNormalized {
            var normalized: [Piece] = []
            normalized.reserveCapacity(pieces.count)
            for var piece in pieces {
                if piece.token != nil { normalized.append(piece); continue }
                if let normalizer { piece.scalars = normalizer.apply(piece.scalars) }
                added.split(piece, normalizedTokens: true, into: &normalized)
            }
            pieces = normalized
        }
        if let preTokenizer { pieces = preTokenizer.apply(pieces, scratch: &encoder.split) }
        var ids: [Int32] = []
        ids.reserveCapacity(scalars.count / 3 + 8)
        for piece in pieces {
            if let token = piece.token { ids.append(token); continue }
            switch model {
            case .bytePair(let bpe): try bpe.encode(piece.scalars, into: &ids, scratch: &encoder.bytePair)
            case .wordPiece(let wp): wp.encode(piece.scalars, into: &ids, cache: &encoder.wordPieces)
            }
        }
        return addSpecialTokens ? postProcessor.apply(ids) : ids
    }
}
