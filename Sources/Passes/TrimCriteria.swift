/// How a trim chooses what goes: a criterion for widths (heads, channels, hidden), one for
/// depth (`--drop-layers auto:N`) and one for experts, given together as `--score a,b`.
///
/// Without calibration statistics everything is chosen by magnitude, as before. With
/// them, widths and experts default to activation importance and depth to block influence.
public struct TrimCriteria: Sendable, Equatable {
    public enum Criterion: String, Sendable, CaseIterable {
        /// Group magnitude of the weights (no data).
        case magnitude
        /// Minitron activation importance (heads, channels, hidden); for experts, the norm of
        /// their outputs over the tokens routed to them.
        case activation
        /// ShortGPT's block influence: drop the layers that change the hidden state least.
        case bi
        /// Drop the last layers before the final one (no data).
        case last
        /// Experts by how many tokens the router sends them (NAEE's cheap baseline).
        case frequency
        /// NAEE's expert-subset search: the kept experts that reproduce each MoE layer's
        /// output best on the calibration tokens (needs a calibration run, not a file).
        case reconstruction
    }

    public var width: Criterion?
    public var depth: Criterion?
    public var experts: Criterion?

    public init(width: Criterion? = nil, depth: Criterion? = nil, experts: Criterion? = nil) {
        self.width = width
        self.depth = depth
        self.experts = experts
    }

    /// Parses `activation`, `bi,activation`, `magnitude,frequency`: each criterion goes to
    /// the choices it can make; two for the same choice is an error.
    public init(parsing text: String) throws(TrimError) {
        var result = TrimCriteria()
        var widthGiven: Criterion?
        for word in text.split(separator: ",").map({ String($0) }) {
            guard let criterion = Criterion(rawValue: word) else {
                throw .criterion(name: word, problem: "is not a criterion; use \(Criterion.allCases.map(\.rawValue).joined(separator: ", "))")
            }
            switch criterion {
            case .magnitude, .activation:
                if let w = widthGiven, w != criterion {
                    throw .criterion(name: text, problem: "names two criteria for the same choice (\(w.rawValue) and \(criterion.rawValue))")
                }
                widthGiven = criterion
                result.width = criterion
            case .bi, .last:
                if let d = result.depth, d != criterion {
                    throw .criterion(name: text, problem: "names two criteria for layers (\(d.rawValue) and \(criterion.rawValue))")
                }
                result.depth = criterion
            case .frequency, .reconstruction:
                if let x = result.experts, x != criterion {
                    throw .criterion(name: text, problem: "names two criteria for experts (\(x.rawValue) and \(criterion.rawValue))")
                }
                result.experts = criterion
            }
        }
        // magnitude/activation also rank experts unless another expert criterion is named.
        if result.experts == nil { result.experts = widthGiven }
        self = result
    }

    /// The criteria with defaults filled in: activation and block influence with statistics,
    /// magnitude without (depth has no default without them).
    public func resolved(hasStatistics: Bool) -> TrimCriteria {
        let w = width ?? (hasStatistics ? .activation : .magnitude)
        return TrimCriteria(width: w, depth: depth ?? (hasStatistics ? .bi : nil), experts: experts ?? w)
    }

    /// Whether any chosen criterion reads calibration statistics.
    public var needsStatistics: Bool {
        let dataAware: Set<Criterion> = [.activation, .bi, .frequency, .reconstruction]
        return [width, depth, experts].contains { $0.map(dataAware.contains) ?? false }
    }

    public var description: String {
        let parts: [(String, Criterion?)] = [("widths", width), ("layers", depth), ("experts", experts)]
        var words: [String] = []
        for (name, criterion) in parts {
            if let criterion { words.append(name + ": " + criterion.rawValue) }
        }
        return words.joined(separator: ", ")
    }
}
