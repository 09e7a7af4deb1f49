#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// One background thread that runs submitted work in order, made with `pthread_create`
/// in place of a serial `DispatchQueue`: when the system refuses the thread (libdispatch
/// would sleep and retry forever), the work runs on the submitting thread instead, in the
/// same order. The thread ends when the worker goes, after its queued work.
public final class SerialWorker: @unchecked Sendable {
    private let state = State()
    private let threaded: Bool

    public init() {
        let context = Unmanaged.passRetained(state).toOpaque()
        var thread = pthread_t()
        let started = pthread_create(&thread, nil, { context in
            Unmanaged<State>.fromOpaque(context!).takeRetainedValue().serve()
            return nil
        }, context)
        if started == 0 {
            pthread_detach(thread)
            threaded = true
        } else {
            Unmanaged<State>.fromOpaque(context).release()
            threaded = false
        }
    }

    deinit { state.stop() }

    /// Queues `work` (or, with no thread, runs it now).
    public func async(_ work: @escaping @Sendable () -> Void) {
        guard threaded else { return work() }
        state.append(work)
    }

    /// Waits until everything queued so far has run.
    public func sync() {
        if threaded { state.drain() }
    }

    /// What the owner and the thread share: the thread never holds the owner, so the
    /// owner's deinit can tell it to end.
    private final class State: @unchecked Sendable {
        private var mutex = pthread_mutex_t()
        private var changed = pthread_cond_t()
        private var queue: [() -> Void] = []
        private var head = 0
        private var running = false
        private var stopping = false

        init() {
            pthread_mutex_init(&mutex, nil)
            pthread_cond_init(&changed, nil)
        }

        func append(_ work: @escaping () -> Void) {
            pthread_mutex_lock(&mutex)
            queue.append(work)
            pthread_cond_broadcast(&changed)
            pthread_mutex_unlock(&mutex)
        }

        func drain() {
            pthread_mutex_lock(&mutex)
            while head < queue.count || running { pthread_cond_wait(&changed, &mutex) }
            pthread_mutex_unlock(&mutex)
        }

        func stop() {
            pthread_mutex_lock(&mutex)
            stopping = true
            pthread_cond_broadcast(&changed)
            pthread_mutex_unlock(&mutex)
        }

        func serve() {
            while true {
                pthread_mutex_lock(&mutex)
                while head == queue.count && !stopping { pthread_cond_wait(&changed, &mutex) }
                if head == queue.count {
                    pthread_mutex_unlock(&mutex)
                    return
                }
                let work = queue[head]
                head += 1
                if head == queue.count {
                    queue.removeAll(keepingCapacity: true)
                    head = 0
                }
                running = true
                pthread_mutex_unlock(&mutex)
                work()
                pthread_mutex_lock(&mutex)
                running = false
                pthread_cond_broadcast(&changed)
                pthread_mutex_unlock(&mutex)
            }
        }
    }
}
