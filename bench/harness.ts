/**
 * The benchmark harness shared by every `bench/*_bench.ts`: GPU timing by the protocol of
 * shared/design/BENCHMARKS.md (check first, warm up, ≥ 10 timed iterations each awaiting
 * `queue.onSubmittedWorkDone()`, median and min). The results files
 * `bench/results/<device-slug>/<date>_<what>.{json,md}` are bench/results_file.ts's (re-exported
 * here).
 *
 * A bench file builds a {@linkcode BenchSuite} of cases and calls
 * {@linkcode BenchSuite.register}: every case becomes a `Deno.bench` (so `deno task bench`
 * shows them), and one last bench times every case by the protocol and writes the results
 * files when `WEBDIT_BENCH_WRITE=1` (always printing the table).
 *
 * @module
 */
import type { BenchResult, ResultsFile } from "./results_file.ts";
import { fmt, gitCommit, resultsHeader, resultsMarkdown, writeResults } from "./results_file.ts";
export * from "./results_file.ts";

/** Options of {@linkcode timeGpu}. */
export interface TimingOptions {
  /** Untimed samples first; default 1. */
  warmup?: number;
  /** Timed samples; default 10 (the protocol's minimum). */
  iterations?: number;
  /**
   * Grow the units per sample (doubling) until one sample takes this long; default 200 ms.
   * Deno resolves `onSubmittedWorkDone()` some 10–15 ms after short GPU work, so a sample of
   * one short unit would time that latency instead of the GPU.
   */
  minSampleMs?: number;
  /** Most units per sample; default 4096. */
  maxReps?: number;
  /**
   * Submit a sample's units in up to this many `run` calls; default 8. The host then records
   * the next chunk while the GPU runs the last one, so a short kernel is timed at the GPU's
   * pace instead of host recording + GPU. Recording one launch costs the host ~10–20 µs since
   * a recording reuses its bind groups (it was ~40–100 µs, as much as the 64-row GEMMs, which
   * then ran at the host's pace). 1 gives one recording and one submit.
   */
  chunks?: number;
}

/** Timings of one case, per unit of work. */
export interface Timing {
  /** Median over the timed samples of sample time / reps. */
  median_ms: number;
  /** Fastest sample time / reps. */
  min_ms: number;
  /** Every timed sample / reps, in order. */
  samples: number[];
  /** Units of work per sample. */
  reps: number;
}

/** Median of a list (the mean of the middle two for even lengths). */
export function median(xs: readonly number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const h = s.length >> 1;
  return s.length % 2 ? s[h] : (s[h - 1] + s[h]) / 2;
}

/**
 * Times GPU work on `device`: `run(reps)` records and submits `reps` units, and a sample
 * of n units — n split over up to {@linkcode TimingOptions.chunks} `run` calls, so that the
 * host records a chunk while the GPU runs the one before — lasts from before the first `run`
 * until `device.queue.onSubmittedWorkDone()` resolves. Calibrates reps (see
 * {@linkcode TimingOptions.minSampleMs}), runs the warm-up samples, then the timed ones.
 */
export async function timeGpu(
  device: GPUDevice,
  run: (reps: number) => unknown | Promise<unknown>,
  options: TimingOptions = {},
): Promise<Timing> {
  const warmup = options.warmup ?? 1;
  const iterations = Math.max(1, options.iterations ?? 10);
  const minSample = options.minSampleMs ?? 200;
  const maxReps = Math.max(1, options.maxReps ?? 4096);
  const maxChunks = Math.max(1, options.chunks ?? 8);
  const sample = async (reps: number) => {
    const t0 = performance.now();
    let left = reps;
    for (let c = Math.min(reps, maxChunks); c > 0; c--) {
      const n = Math.ceil(left / c);
      await run(n);
      left -= n;
    }
    await device.queue.onSubmittedWorkDone();
    return performance.now() - t0;
  };
  // One unit untimed first: a one-off first-use cost (seen: ≥ 200 ms for rotq's W4A8 GEMM
  // on the H200) would otherwise end the calibration at 1 unit, and samples of one unit
  // time onSubmittedWorkDone's latency.
  await sample(1);
  let reps = 1;
  for (let dt = await sample(reps); dt < minSample && reps < maxReps; dt = await sample(reps)) {
    reps = Math.min(maxReps, reps * 2);
  }
  for (let i = 0; i < warmup; i++) await sample(reps);
  const samples: number[] = [];
  for (let i = 0; i < iterations; i++) samples.push((await sample(reps)) / reps);
  return { median_ms: median(samples), min_ms: Math.min(...samples), samples, reps };
}

/** A prepared case: what to run, how much work it is, and how to turn ms into the value. */
export interface PreparedCase {
  /** The GPU device the work runs on (timing waits on its queue). */
  device: GPUDevice;
  /** Records and submits `reps` units of work (one submit where it can). */
  run: (reps: number) => unknown | Promise<unknown>;
  /** The headline figure from the time of one unit of work in ms; default: the ms themselves. */
  value?: (ms: number) => number;
  /**
   * A second figure from a time in ms; undefined where this run has none (e.g. the peer row a
   * ratio needs is filtered out): the row then has no value2 and its note says so.
   */
  value2?: (ms: number) => number | undefined;
  /** Remarks for the results row. */
  note?: string;
  /** Frees what setup made. */
  dispose?: () => unknown | Promise<unknown>;
}

/** A benchmark case: a name, its unit, and a setup that checks correctness before timing. */
export interface BenchCase {
  /** lower_snake_case result name. */
  name: string;
  /** Unit of the headline figure ("TFLOP/s", "ms", …). */
  unit: string;
  /** Unit of the second figure, if any. */
  unit2?: string;
  /** Builds the inputs and checks the result against a reference; throws if wrong. */
  setup: () => Promise<PreparedCase>;
  /** Timing options of the protocol for this case. */
  timing?: TimingOptions;
}

/** TFLOP/s of `flops` done in `ms`. */
export function tflops(flops: number, ms: number): number {
  return flops / (ms * 1e-3) / 1e12;
}

/** Options of a {@linkcode BenchSuite}. */
export interface SuiteOptions {
  /** The results file's `<what>`, e.g. "gemm". */
  what: string;
  /** Describes the device the suite runs on (for the results file). */
  describe: () => Promise<{ device: string; slug: string; extra?: Record<string, unknown> }>;
  /** Iterations of each `Deno.bench` case (a suggestion to deno); default 10. */
  denoIterations?: number;
  /** Write files only when this is true; default: WEBDIT_BENCH_WRITE=1. */
  write?: boolean;
  /** Runs after all cases (e.g. destroying devices). */
  teardown?: () => unknown | Promise<unknown>;
  /** More `extra` fields from the rows so far (figures derived from several rows). */
  extraOf?: (results: readonly BenchResult[]) => Record<string, unknown>;
}

/**
 * A list of cases run two ways: as `Deno.bench` cases, and by the harness protocol in a
 * final bench that writes the results file.
 */
export class BenchSuite {
  readonly #cases: BenchCase[] = [];
  readonly #prepared = new Map<string, Promise<PreparedCase>>();
  readonly #options: SuiteOptions;

  /** Creates an empty suite. */
  constructor(options: SuiteOptions) {
    this.#options = options;
  }

  /** Adds a case; names must be unique. WEBDIT_BENCH_FILTER (a regex) skips non-matching names. */
  add(c: BenchCase): this {
    if (this.#cases.some((x) => x.name === c.name)) {
      throw new RangeError(`Duplicate bench case ${c.name}`);
    }
    const filter = Deno.env.get("WEBDIT_BENCH_FILTER");
    if (filter && !new RegExp(filter).test(c.name)) return this;
    this.#cases.push(c);
    return this;
  }

  /** The cases, in order. */
  get cases(): readonly BenchCase[] {
    return this.#cases;
  }

  /** Sets a case up once (checking it); later calls share the result. */
  prepare(c: BenchCase): Promise<PreparedCase> {
    let p = this.#prepared.get(c.name);
    if (!p) {
      p = c.setup();
      this.#prepared.set(c.name, p);
    }
    return p;
  }

  /** The rows of the last {@linkcode run} (empty before). */
  lastResults: BenchResult[] = [];

  /**
   * Times every case by the protocol; a failing case gives a row with NaN and a note.
   * `onRow` sees the rows so far after each case (partial results files).
   */
  async run(
    log: (line: string) => void = console.log,
    onRow?: (rows: BenchResult[]) => unknown | Promise<unknown>,
  ): Promise<BenchResult[]> {
    const results: BenchResult[] = [];
    this.lastResults = results;
    for (const c of this.#cases) {
      if (results.length > 0) await onRow?.(results);
      try {
        const p = await this.prepare(c);
        const t = await timeGpu(p.device, p.run, c.timing);
        const valueOf = p.value ?? ((ms: number) => ms);
        const row: BenchResult = {
          name: c.name,
          value: round(valueOf(t.median_ms)),
          unit: c.unit,
          median_ms: round(t.median_ms),
          min_ms: round(t.min_ms),
          reps: t.reps,
        };
        const v2 = p.value2?.(t.median_ms);
        if (v2 !== undefined) {
          row.value2 = round(v2);
          row.unit2 = c.unit2;
        }
        const no2 = p.value2 && v2 === undefined
          ? `no value2${c.unit2 ? ` (${c.unit2})` : ""}: its peer is not in this run`
          : undefined;
        const note = [p.note, no2].filter((n) => n).join("; ");
        if (note) row.note = note;
        results.push(row);
        log(
          `${c.name}: ${fmt(row.value)} ${c.unit} (median ${fmt(row.median_ms)} ms, min ${
            fmt(row.min_ms)
          } ms)${note ? `  ${note}` : ""}`,
        );
      } catch (e) {
        const msg = (e as Error).message ?? String(e);
        results.push({
          name: c.name,
          value: NaN,
          unit: c.unit,
          median_ms: NaN,
          min_ms: NaN,
          note: `failed: ${msg.split("\n")[0].slice(0, 200)}`,
        });
        log(`${c.name}: FAILED ${msg}`);
      }
    }
    return results;
  }

  #ran: Promise<ResultsFile> | undefined;

  /** Runs the suite once and writes (when enabled) the results file; later calls share it. */
  runAndWrite(): Promise<ResultsFile> {
    this.#ran ??= this.#runAndWrite();
    return this.#ran;
  }

  async #runAndWrite(): Promise<ResultsFile> {
    const d = await this.#options.describe();
    const commit = await gitCommit();
    const fileOf = (results: BenchResult[], partial: boolean): ResultsFile => {
      const file: ResultsFile = { ...resultsHeader(d.device, commit), results };
      // The host's 1/5/15-minute load: CPU-adapter figures are only comparable on a quiet host.
      file.extra = {
        ...d.extra,
        ...this.#options.extraOf?.(results),
        host_load_average: Deno.loadavg().map((v) => round(v)),
      };
      if (partial) file.extra.partial = `${results.length} of ${this.#cases.length} cases`;
      return file;
    };
    const write = this.#options.write ?? Deno.env.get("WEBDIT_BENCH_WRITE") === "1";
    // Written after every case too, so a run stopped at a time limit keeps what it measured.
    const results = await this.run(
      console.log,
      write
        ? (rows) => writeResults(d.slug, this.#options.what, fileOf([...rows], true))
        : undefined,
    );
    const file = fileOf(results, false);
    console.log("\n" + resultsMarkdown(file));
    if (write) {
      const paths = await writeResults(d.slug, this.#options.what, file);
      console.log(`wrote ${paths.json} and ${paths.md}`);
    }
    await this.#options.teardown?.();
    return file;
  }

  /**
   * Registers one `Deno.bench` per case (setup and check happen before the first timed
   * iteration) and a last one, "<what>: protocol and results file", that runs
   * {@linkcode runAndWrite} (once, however often deno calls it).
   */
  register(): void {
    const n = this.#options.denoIterations ?? 10;
    // WEBDIT_BENCH_PROTOCOL_ONLY=1 (bench/gpu_all.sh): only the protocol times the cases,
    // which halves a suite's time where device time is scarce.
    const denoCases = Deno.env.get("WEBDIT_BENCH_PROTOCOL_ONLY") === "1" ? [] : this.#cases;
    for (const c of denoCases) {
      // No groups: deno runs ungrouped benches before grouped ones, and the results bench
      // (which ends with the suite's teardown) must come last.
      Deno.bench({
        name: c.name,
        n,
        warmup: 1,
        fn: async (b) => {
          const p = await this.prepare(c);
          b.start();
          await p.run(1);
          await p.device.queue.onSubmittedWorkDone();
          b.end();
        },
      });
    }
    Deno.bench({
      name: `${this.#options.what}: protocol and results file`,
      n: 1,
      warmup: 0,
      fn: async () => {
        await this.runAndWrite();
      },
    });
  }
}

function round(v: number): number {
  if (!Number.isFinite(v)) return v;
  return Number(v.toPrecision(4));
}
