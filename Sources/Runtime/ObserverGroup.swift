/// Several observers watching one run: each sees only the points it asked for.
public final class ObserverGroup: ExecutionObserver {
    public let observers: [ExecutionObserver]

    public init(_ observers: [ExecutionObserver]) { self.observers = observers }

    public var points: ObservationPoints { observers.reduce([]) { $0.union($1.points) } }
    public var candidateExperts: Int { observers.map(\.candidateExperts).max() ?? 0 }

    public func observe(_ observation: Observation) {
        let point = observation.point
        for observer in observers where observer.points.contains(point) { observer.observe(observation) }
    }
}

extension Observation {
    /// The observation point that produces this observation.
    public var point: ObservationPoints {
        switch self {
        case .layerInput: return .layerInput
        case .layerOutput: return .layerOutput
        case .headOutputs: return .headOutputs
        case .ffnActivations: return .ffnActivations
        case .linearInput: return .linearInputs
        case .router: return .router
        case .expertOutput: return .expertOutputs
        case .expertCandidate: return .expertCandidates
        }
    }
}
