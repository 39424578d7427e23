/**
 * One GPU queue per runtime: a bounded backlog of generation jobs, run one batch at a
 * time, with micro-batching of compatible waiting jobs (same model, plan, size, steps,
 * sampler and guidance) into one batch, and cancellation that really stops the GPU work
 * (the batch's AbortSignal is checked between sampler steps).
 *
 * @module
 */
import { Prng } from "../io/prng.ts";
import { latentGeometry } from "../latent_geometry.ts";
import type { SamplerName } from "../pipeline.ts";
import type { ModelEntry } from "./models.ts";
import { checkPrompt } from "./checks.ts";

/** A step preview of one job: its own images' latents [n, C, H, W]. */
export interface JobPreview {
  /** Steps done (1-based). */
  step: number;
  /** Steps in all. */
  total: number;
  /** Milliseconds since the batch's sampling loop started. */
  elapsedMs: number;
  /** This job's latents [n, C, H, W] after `step`. */
  latents: Float32Array;
}

/** One generation request as the queue runs it. */
export interface ImageJob {
  /** The model + artifact. */
  entry: ModelEntry;
  /** The prompt (all `n` images). */
  prompt: string;
  /** Its negative prompt (diffusers' negative_prompt), or undefined for the model's default. */
  negativePrompt?: string;
  /** Images. */
  n: number;
  /** Seed of this job's noise. */
  seed: number;
  /** Sampler steps. */
  steps: number;
  /** Guidance scale. */
  guidance: number;
  /** FLUX's true-CFG scale (with negativePrompt), or undefined (off). */
  trueCfg?: number;
  /** Sampler. */
  sampler: SamplerName;
  /** Image height in model cells (pixels for pixel-space models). */
  height: number;
  /** Image width in model cells (pixels for pixel-space models). */
  width: number;
  /** Most images a batch holding this job may have (what the adapter fits at its size). */
  maxBatchImages?: number;
  /** Steps (1-based) after which `onPreview` wants the latents. */
  previewSteps?: readonly number[];
  /** Called with this job's latents at each of `previewSteps`. */
  onPreview?: (p: JobPreview) => void | Promise<void>;
  /** Aborts the job: removed from the backlog, or its share of the batch dropped. */
  signal?: AbortSignal;
}

/** What a finished job resolves to. */
export interface JobResult {
  /** This job's final latents [n, C, H, W]. */
  latents: Float32Array;
  /** [n, C, H, W]. */
  shape: [number, number, number, number];
  /** Its images [n, 3, H', W'] in [−1, 1]: the latents, or a latent model's VAE decode. */
  images: Float32Array;
  /** [n, 3, H', W']. */
  imageShape: [number, number, number, number];
  /** Prompt words the tokenizer did not know. */
  unknownWords: string[];
  /** The prompt was cut to fit a real checkpoint's text encoder (T5's max_sequence_length, CLIP's 77). */
  promptTruncated: boolean;
  /** Timings in ms, and the batch the job ran in. */
  timings: {
    queueMs: number;
    encodeMs: number;
    stepMs: number[];
    totalMs: number;
    batchImages: number;
    batchRequests: number;
  };
}

/** The backlog is full: answer 429 with Retry-After. */
export class QueueFullError extends Error {
  /** Suggested seconds to wait. */
  readonly retryAfter: number;
  /** Creates the error. */
  constructor(retryAfter: number, depth: number) {
    super(`The GPU queue is full (${depth} requests waiting); retry in ${retryAfter} s.`);
    this.name = "QueueFullError";
    this.retryAfter = retryAfter;
  }
}

/** The server is shutting down: answer 503 with Retry-After. */
export class ShuttingDownError extends Error {
  /** Suggested seconds to wait (for the server to be back). */
  readonly retryAfter: number;
  /** Creates the error. */
  constructor(retryAfter = 5) {
    super("The server is shutting down; retry later.");
    this.name = "ShuttingDownError";
    this.retryAfter = retryAfter;
  }
}

/** Observers the server's metrics hang on the queue. */
export interface QueueObserver {
  /** A job left the backlog for the GPU after `ms`. */
  onDequeue?(ms: number): void;
  /** One sampler step of a batch took `ms`. */
  onStep?(ms: number): void;
  /** A batch of `images` images (from `requests` jobs) starts. */
  onBatch?(images: number, requests: number): void;
}

/** Options of {@linkcode GpuQueue}. */
export interface GpuQueueOptions {
  /** Jobs that may wait (not counting the running batch); default 16. */
  maxQueue?: number;
  /** Images in one batch; 1 turns micro-batching off; default 16. */
  maxBatchImages?: number;
  /** Metric hooks. */
  observer?: QueueObserver;
}

interface Pending {
  job: ImageJob;
  key: string;
  enqueued: number;
  resolve: (r: JobResult) => void;
  reject: (e: unknown) => void;
  settled: boolean;
  detach: () => void;
}

/** The batching key: jobs with equal keys can share a batch. */
export function batchKey(j: ImageJob): string {
  // One negative prompt a batch (the pipeline takes one for all its images): JSON keeps
  // undefined apart from "" and any text apart from the separators.
  const neg = JSON.stringify(j.negativePrompt ?? null);
  const key = [j.entry.id, j.steps, j.sampler, j.guidance, j.trueCfg ?? 1, j.height, j.width];
  return [...key, neg].join("|");
}

/** The GPU queue of one runtime. */
export class GpuQueue {
  /** Jobs that may wait, not counting the running batch (default 16). */
  readonly maxQueue: number;
  /** Most images in one batch (default 16; 1 = no micro-batching). */
  readonly maxBatchImages: number;
  #waiting: Pending[] = [];
  #running: Pending[] = [];
  #busy = false;
  #closed = false;
  #observer: QueueObserver;
  #batchMs = 0; // moving average of a batch's time, for Retry-After
  #idle: Promise<void> = Promise.resolve();

  /** Creates an empty queue. */
  constructor(o: GpuQueueOptions = {}) {
    this.maxQueue = o.maxQueue ?? 16;
    this.maxBatchImages = o.maxBatchImages ?? 16;
    if (!Number.isInteger(this.maxQueue) || this.maxQueue < 0) {
      throw new RangeError(`maxQueue must be an integer ≥ 0, got ${this.maxQueue}`);
    }
    if (!Number.isInteger(this.maxBatchImages) || this.maxBatchImages < 1) {
      throw new RangeError(`maxBatchImages must be a positive integer, got ${this.maxBatchImages}`);
    }
    this.#observer = o.observer ?? {};
  }

  /** Jobs waiting. */
  get depth(): number {
    return this.#waiting.length;
  }

  /** Jobs in the running batch (still wanted). */
  get running(): number {
    return this.#running.filter((p) => !p.settled).length;
  }

  /** Seconds a newcomer would wait, roughly: batches ahead × the mean batch time. */
  retryAfterSeconds(): number {
    const batches = 1 + Math.ceil(this.#waiting.length / Math.max(1, this.maxBatchImages));
    return Math.max(1, Math.ceil((batches * (this.#batchMs || 1000)) / 1000));
  }

  /**
   * Queues a job; the promise resolves with its images, or rejects with the signal's
   * reason when it is aborted.
   * @throws {QueueFullError} at once (synchronously) when the backlog is full.
   * @throws {ShuttingDownError} at once once the queue is closed.
   */
  enqueue(job: ImageJob): Promise<JobResult> {
    if (this.#closed) throw new ShuttingDownError();
    if (this.#busy && this.#waiting.length >= this.maxQueue) {
      throw new QueueFullError(this.retryAfterSeconds(), this.#waiting.length);
    }
    if (job.signal?.aborted) return Promise.reject(job.signal.reason);
    return new Promise<JobResult>((resolve, reject) => {
      const p: Pending = {
        job,
        key: batchKey(job),
        enqueued: performance.now(),
        resolve,
        reject,
        settled: false,
        detach: () => {},
      };
      if (job.signal) {
        const onAbort = () => this.#cancel(p, job.signal!.reason);
        job.signal.addEventListener("abort", onAbort, { once: true });
        p.detach = () => job.signal!.removeEventListener("abort", onAbort);
      }
      this.#waiting.push(p);
      this.#pump();
    });
  }

  /** Resolves when the queue has nothing running or waiting. */
  async idle(): Promise<void> {
    while (this.#busy || this.#waiting.length) await this.#idle;
  }

  /**
   * Rejects everything waiting and running with a {@linkcode ShuttingDownError} and stops
   * taking jobs (enqueue throws one); the running batch is aborted at its next step.
   */
  close(): void {
    this.#closed = true;
    const err = new ShuttingDownError();
    for (const p of [...this.#waiting, ...this.#running]) this.#settle(p, undefined, err);
    this.#waiting = [];
    this.#batchAbort?.abort(err);
  }

  #batchAbort: AbortController | undefined;

  #settle(p: Pending, r: JobResult | undefined, e?: unknown): void {
    if (p.settled) return;
    p.settled = true;
    p.detach();
    if (r) p.resolve(r);
    else p.reject(e);
  }

  #cancel(p: Pending, reason: unknown): void {
    const i = this.#waiting.indexOf(p);
    if (i >= 0) this.#waiting.splice(i, 1); // frees its backlog slot at once
    this.#settle(p, undefined, reason);
    // A batch nobody wants any more stops at the next step.
    if (this.#running.length && this.#running.every((q) => q.settled)) {
      this.#batchAbort?.abort(reason);
    }
  }

  #pump(): void {
    if (this.#busy || !this.#waiting.length) return;
    this.#busy = true;
    this.#idle = this.#loop().finally(() => {
      this.#busy = false;
      this.#pump(); // a job queued after the loop's last check
    });
  }

  async #loop(): Promise<void> {
    while (this.#waiting.length && !this.#closed) {
      const head = this.#waiting[0];
      const batch: Pending[] = [];
      // Jobs of one key share a size and guidance, so what fits the adapter is the same.
      const cap = Math.min(this.maxBatchImages, head.job.maxBatchImages ?? Infinity);
      let images = 0;
      for (const p of this.#waiting) {
        if (p.key !== head.key) continue;
        if (batch.length && images + p.job.n > cap) continue;
        batch.push(p);
        images += p.job.n;
        if (images >= cap) break;
      }
      this.#waiting = this.#waiting.filter((p) => !batch.includes(p));
      await this.#run(batch);
    }
  }

  /**
   * Runs a batch. A job the model cannot take (its prompt) is rejected on its own first;
   * when the batch fails before its first step was submitted to the GPU (the pipeline's
   * `onSubmitted`) and held several jobs, each job is run alone, so that one job's input
   * never fails the others; once a step was submitted, a failure fails every job.
   */
  async #run(all: Pending[]): Promise<void> {
    const now = performance.now();
    for (const p of all) this.#observer.onDequeue?.(now - p.enqueued);
    const batch: Pending[] = [];
    for (const p of all) {
      try {
        checkPrompt(p.job.entry, p.job.prompt);
        batch.push(p);
      } catch (e) {
        this.#settle(p, undefined, e);
      }
    }
    if (!batch.length) return;
    const retry = await this.#runBatch(batch);
    for (const p of retry) {
      if (!p.settled && !this.#closed) await this.#runBatch([p]);
    }
  }

  /** Runs one batch; returns its jobs to run again alone (it failed before a step was submitted). */
  async #runBatch(batch: Pending[]): Promise<Pending[]> {
    const images = batch.reduce((a, p) => a + p.job.n, 0);
    this.#running = batch;
    const t0 = performance.now();
    this.#observer.onBatch?.(images, batch.length);
    const ctl = new AbortController();
    this.#batchAbort = ctl;
    const j0 = batch[0].job;
    const pipe = j0.entry.pipeline;
    const C = latentGeometry(pipe).channels, H = j0.height, W = j0.width;
    const plane = C * H * W;
    // Each job's noise comes from its own seed, exactly as if it ran alone.
    const noise = new Float32Array(images * plane);
    const offsets: number[] = [];
    let off = 0;
    for (const p of batch) {
      offsets.push(off);
      noise.set(new Prng(p.job.seed).normals(p.job.n * plane), off * plane);
      off += p.job.n;
    }
    let submitted = false; // a step reached the GPU (onSubmitted); see #run
    const prompts = batch.flatMap((p) => Array<string>(p.job.n).fill(p.job.prompt));
    const slice = (all: Float32Array, k: number) =>
      all.slice(offsets[k] * plane, (offsets[k] + batch[k].job.n) * plane);
    try {
      const res = await pipe.generate({
        prompts,
        negativePrompt: j0.negativePrompt,
        latents: noise,
        steps: j0.steps,
        guidance: j0.guidance,
        trueCfg: j0.trueCfg,
        sampler: j0.sampler,
        height: H,
        width: W,
        signal: ctl.signal,
        onSubmitted: () => submitted = true,
        onStep: async (s) => {
          this.#observer.onStep?.(s.stepMs);
          const want = batch.map((p) =>
            !p.settled && p.job.onPreview && (p.job.previewSteps ?? []).includes(s.step)
          );
          if (!want.some(Boolean)) return;
          const lat = await s.latents();
          await Promise.all(batch.map(async (p, k) => {
            if (!want[k]) return;
            try {
              await p.job.onPreview!({
                step: s.step,
                total: s.total,
                elapsedMs: s.elapsedMs,
                latents: slice(lat, k),
              });
            } catch { /* a failing preview consumer must not fail the batch */ }
          }));
        },
      });
      // A latent model's images come from its VAE, decoded here while the queue holds the GPU
      // (a recording of another batch must not run beside it: the pool would share buffers).
      const dec = await pipe.decode(res.latents, res.shape, { tiling: j0.entry.vaeTiling });
      const [, oc, oh, ow] = dec.shape;
      const total = performance.now() - t0;
      this.#batchMs = this.#batchMs ? 0.7 * this.#batchMs + 0.3 * total : total;
      batch.forEach((p, k) => {
        const unknown = pipe.tokenizer?.encode(p.job.prompt).unknown ?? [];
        const per = oc * oh * ow;
        const latents = slice(res.latents, k);
        this.#settle(p, {
          latents,
          shape: [p.job.n, C, H, W],
          // A pixel-space model's images are its latents: one copy for both.
          images: dec.images === res.latents
            ? latents
            : dec.images.slice(offsets[k] * per, (offsets[k] + p.job.n) * per),
          imageShape: [p.job.n, oc, oh, ow],
          unknownWords: [...new Set(unknown)],
          // The batch's prompt list has each job's prompt n times from its offset on.
          promptTruncated: (res.truncatedPrompts ?? []).includes(offsets[k]),
          timings: {
            queueMs: t0 - p.enqueued,
            encodeMs: res.timings.encodeMs,
            stepMs: res.timings.stepMs,
            totalMs: performance.now() - p.enqueued,
            batchImages: images,
            batchRequests: batch.length,
          },
        });
      });
      return [];
    } catch (e) {
      const left = batch.filter((p) => !p.settled);
      if (!submitted && left.length > 1 && !ctl.signal.aborted && !this.#closed) return left;
      for (const p of batch) this.#settle(p, undefined, e);
      return [];
    } finally {
      this.#running = [];
      this.#batchAbort = undefined;
    }
  }
}
