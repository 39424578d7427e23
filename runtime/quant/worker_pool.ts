/**
 * A pool of module workers running one kind of job: jobs queue, each goes to the next idle
 * worker, and its reply (or `{ error }`) settles its promise. The workers start with the
 * first job. GPTQ (gptq_pool.ts) and the quantizers' own search (calibrate_pool.ts) run on it.
 *
 * @module
 */

/** What a worker posts back: the result, or an error message. */
export type WorkerReply<R> = R | { error: string };

/** A pool of `size` workers of the module at `url`. */
export class WorkerPool<J, R> {
  /** Workers at most. */
  readonly size: number;
  readonly #url: string;
  #idle: Worker[] = [];
  #all: Worker[] = [];
  #queue: {
    job: J;
    transfer: Transferable[];
    resolve: (r: R) => void;
    reject: (e: Error) => void;
  }[] = [];

  /** `size` ≥ 1 workers of the module `url` (started with the first job). */
  constructor(url: string, size: number) {
    this.#url = url;
    this.size = size;
  }

  /** Workers running now. */
  get started(): number {
    return this.#all.length;
  }

  /** Queues `job` (the buffers in `transfer` go to the worker: do not reuse them). */
  run(job: J, transfer: Transferable[] = []): Promise<R> {
    if (!this.#all.length) {
      for (let i = 0; i < this.size; i++) {
        const w = new Worker(this.#url, { type: "module" });
        this.#all.push(w);
        this.#idle.push(w);
      }
    }
    return new Promise((resolve, reject) => {
      this.#queue.push({ job, transfer, resolve, reject });
      this.#pump();
    });
  }

  #pump(): void {
    while (this.#idle.length && this.#queue.length) {
      const w = this.#idle.pop()!;
      const { job, transfer, resolve, reject } = this.#queue.shift()!;
      const done = () => {
        w.onmessage = null;
        w.onerror = null;
        this.#idle.push(w);
        this.#pump();
      };
      w.onmessage = (e: MessageEvent<WorkerReply<R>>) => {
        done();
        const r = e.data;
        if (r && typeof r === "object" && "error" in r) reject(new Error(r.error));
        else resolve(r as R);
      };
      w.onerror = (e) => {
        e.preventDefault();
        done();
        reject(new Error(e.message));
      };
      w.postMessage(job, { transfer });
    }
  }

  /** Ends the workers (queued jobs are dropped). */
  close(): void {
    for (const w of this.#all) w.terminate();
    this.#all = [];
    this.#idle = [];
    this.#queue = [];
  }
}
