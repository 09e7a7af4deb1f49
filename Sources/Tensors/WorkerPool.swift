#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// Threads of pare's own for parallel loops, made once with `pthread_create`, in place of
/// `DispatchQueue.concurrentPerform`.
///
/// libdispatch, when the system refuses it a thread (under `ulimit -v`, say), sleeps and
/// retries forever: a run hung with one thread left. Here a thread the system refuses is
/// simply not there, and its share of every loop runs on the calling thread. A loop that
/// finds the pool busy (a nested or concurrent call) also runs on its caller.
public final class WorkerPool: @unchecked Sendable {
    /// One worker per core beyond the caller's.
    public static let shared = WorkerPool(workers: FloatConversion.activeCores - 1)

    /// The workers the system gave.
    public private(set) var workers = 0

    private var mutex = pthread_mutex_t()
    private var wake = pthread_cond_t()
    private var done = pthread_cond_t()
    /// Held by the caller of a loop for its length; a second caller runs alone.
    private var caller = pthread_mutex_t()

    // Guarded by `mutex`.
    private var job: ((Int) -> Void)?
    private var count = 0
    private var next = 0
    private var busy = 0
    private var generation = 0

    init(workers wanted: Int) {
        pthread_mutex_init(&mutex, nil)
        pthread_mutex_init(&caller, nil)
        pthread_cond_init(&wake, nil)
        pthread_cond_init(&done, nil)
        for _ in 0..<max(0, wanted) {
            let context = Unmanaged.passRetained(self).toOpaque()
            var thread = pthread_t()
            let started = pthread_create(&thread, nil, { context in
                let pool = Unmanaged<WorkerPool>.fromOpaque(context!).takeRetainedValue()
                pool.serve()
                return nil
            }, context)
            if started != 0 {
                Unmanaged<WorkerPool>.fromOpaque(context).release()
                break
            }
            pthread_detach(thread)
            workers += 1
        }
    }

    /// Runs `body(i)` for every `i` in `0..<iterations`, spread over the workers and the
    /// calling thread; returns when all are done.
    public func perform(_ iterations: Int, _ body: (Int) -> Void) {
        guard iterations > 1, workers > 0, pthread_mutex_trylock(&caller) == 0 else {
            for i in 0..<iterations { body(i) }
            return
        }
        defer { pthread_mutex_unlock(&caller) }
        withoutActuallyEscaping(body) { body in
            pthread_mutex_lock(&mutex)
            job = body
            count = iterations
            next = 0
            busy = workers
            generation &+= 1
            pthread_cond_broadcast(&wake)
            pthread_mutex_unlock(&mutex)
            work()
            pthread_mutex_lock(&mutex)
            while busy > 0 { pthread_cond_wait(&done, &mutex) }
            job = nil
            pthread_mutex_unlock(&mutex)
        }
    }

    /// Takes iterations of the current loop until none is left.
    private func work() {
        pthread_mutex_lock(&mutex)
        while next < count, let body = job {
            let i = next
            next += 1
            pthread_mutex_unlock(&mutex)
            body(i)
            pthread_mutex_lock(&mutex)
        }
        pthread_mutex_unlock(&mutex)
    }

    private func serve() {
        var seen = 0
        while true {
            pthread_mutex_lock(&mutex)
            while generation == seen { pthread_cond_wait(&wake, &mutex) }
            seen = generation
            pthread_mutex_unlock(&mutex)
            work()
            pthread_mutex_lock(&mutex)
            busy -= 1
            if busy == 0 { pthread_cond_signal(&done) }
            pthread_mutex_unlock(&mutex)
        }
    }
}
