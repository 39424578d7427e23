/**
 * GPTQ's host cost at PixArt-α's layer shapes: one job (runtime/quant/gptq_pool.ts
 * `runGptqJob`: Cholesky, triangular inverse and the rounding, as `quantize --gptq` runs it)
 * per shape, on one thread, W4 uniform on a synthetic H (diagonal + rank 16, positive
 * definite); then, timed apart, the two output SQNRs `quantize --gptq --report` adds. Checked
 * first: GPTQ must lower the output error. Writes `bench/results/host/<date>_gptq.{json,md}`
 * with `--write`, the model's one-core totals extrapolated from the shapes (28 blocks of:
 * 6 × 1152×1152 — q, k, v, out and the cross-attention's q, out — 2 × 1152×1152 caption k/v,
 * 4608×1152 ff.net.0, 1152×4608 ff.net.2).
 *
 * With `--pool`, instead, the whole model's 280 jobs on a pool of workers (one a core, or
 * WEBDIT_QUANT_WORKERS), as quantize queues them: the measured wall time. With `--gpu`, each
 * shape's job on the GPU (runtime/quant/gptq_gpu.ts; checked against the CPU's codes first)
 * beside the same job on one CPU core, then the whole model's jobs on the GPU. With
 * `--profile` (a GPU with timestamp-query), where a GPU job's time goes: per shape the wall
 * time of a job, and the GPU time of each kernel summed over its launches from a profiling
 * recording of the same job (every launch in a pass of its own: the sum is an upper bound of
 * the GPU's busy time), written as `<date>_gptq_gpu_profile`. `--dir D` writes under
 * bench/results/D/ (default host, or the GPU's folder with --gpu / --profile).
 *
 *     deno run -A bench/gptq_bench.ts [--write] [--quick] [--pool | --gpu | --profile] [--dir D]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { cpus } from "node:os";
import { uniformQuantizer } from "../plugins/quantizers/uniform.ts";
import { Prng } from "../runtime/io/prng.ts";
import { outputSqnrsDb } from "../runtime/quant/gptq.ts";
import { gptqRoundGpu, outputSqnrsDbGpu } from "../runtime/quant/gptq_gpu.ts";
import type { LaunchTime } from "../runtime/gpu/kernel.ts";
import {
  defaultQuantWorkers,
  type GptqJob,
  GptqPool,
  type GptqResult,
  runGptqJob,
  runGptqJobGpu,
} from "../runtime/quant/gptq_pool.ts";
import { createRuntime, type Runtime } from "../runtime/gpu/device.ts";
import { unpackCodes } from "../runtime/quant/pack.ts";
import { deviceSlug } from "./results_file.ts";
import type { BenchResult } from "./results_file.ts";
import {
  estimateRow,
  gitCommit,
  minutesRow,
  resultsHeader,
  secondsRow,
  writeResults,
} from "./results_file.ts";

/** `s` in lower_snake_case with single underscores (kernel names carry other characters). */
const snake = (s: string) => s.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_|_$/g, "");

/**
 * A synthetic Gram matrix H [K, K] (f32): a diagonal of 1..7 plus the outer products of 16
 * random rows drawn from `g` (positive definite), for the host benches of GPTQ and the hessian
 * low-rank fit.
 */
export function syntheticGram(g: Prng, K: number): Float32Array {
  const R = 16;
  const v = g.normals(R * K);
  const h = new Float32Array(K * K);
  for (let i = 0; i < K; i++) h[i * K + i] = 1 + (i % 7);
  for (let r = 0; r < R; r++) {
    for (let i = 0; i < K; i++) {
      const a = v[r * K + i];
      for (let j = 0; j < K; j++) h[i * K + j] += a * v[r * K + j];
    }
  }
  return h;
}

/** A synthetic layer: W [N, K], its plain W4 rounding, and H ({@linkcode syntheticGram}). */
function syntheticLayer(N: number, K: number) {
  const g = new Prng(N * 7 + K);
  const w = { data: g.normals(N * K).map((v) => v / Math.sqrt(K)), rows: N, cols: K };
  const h = syntheticGram(g, K);
  const q = uniformQuantizer.calibrate(w, { bits: 4 });
  return { w, q, h, grid: uniformQuantizer.grid!(q) };
}

/** The job of a synthetic layer (its buffers copied: a pool transfers them). */
function jobOf(l: ReturnType<typeof syntheticLayer>, sqnr: boolean): Omit<GptqJob, "id"> {
  const { rows, cols } = l.w;
  return {
    name: `${rows}x${cols}`,
    w: l.w.data.slice(),
    rows,
    cols,
    bits: 4,
    codes: l.q.codes.slice(),
    grid: l.grid,
    h: l.h.slice(),
    sqnr,
  };
}

/**
 * One job's wall time (s) at N×K, and the report's output SQNRs' (sqnrS), after checking
 * that GPTQ lowered the output error.
 */
function timeJob(
  N: number,
  K: number,
): { s: number; sqnrS: number; rtnDb: number; gptqDb: number } {
  const l = syntheticLayer(N, K);
  const t0 = performance.now();
  const r = runGptqJob({ id: 0, ...jobOf(l, false) });
  const s = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  const deq = (codes: Uint32Array) => uniformQuantizer.dequantize({ ...l.q, codes });
  const [rtnDb, gptqDb] = outputSqnrsDb(l.w.data, [deq(l.q.codes), deq(r.codes)], l.h, N, K);
  const sqnrS = (performance.now() - t1) / 1000;
  if (!(gptqDb > rtnDb)) {
    throw new Error(`${N}x${K}: GPTQ did not lower the output error (${rtnDb} → ${gptqDb})`);
  }
  return { s, sqnrS, rtnDb, gptqDb };
}

/**
 * One job at N×K on the GPU against the same job on one CPU core, after checking the GPU's
 * codes against the CPU's (≥ 99 % equal, output SQNR within 0.05 dB): both wall times (s;
 * the GPU's a second run, its kernels compiled) and the GPU's output SQNR.
 */
async function timeGpuJob(
  rt: Runtime,
  N: number,
  K: number,
): Promise<{ cpuS: number; gpuS: number; gptqDb: number; agree: number }> {
  const l = syntheticLayer(N, K);
  let t0 = performance.now();
  const c = runGptqJob({ id: 0, ...jobOf(l, false) });
  const cpuS = (performance.now() - t0) / 1000;
  await runGptqJobGpu(rt, { id: 0, ...jobOf(l, false) });
  t0 = performance.now();
  const g = await runGptqJobGpu(rt, { id: 0, ...jobOf(l, false) });
  const gpuS = (performance.now() - t0) / 1000;
  const [a, b] = [c, g].map((r) => unpackCodes(r.codes, N, K, 4));
  const agree = a.filter((x, i) => x === b[i]).length / a.length;
  const deq = (codes: Uint32Array) => uniformQuantizer.dequantize({ ...l.q, codes });
  const sq = [deq(c.codes), deq(g.codes)];
  const [cpuDb, gptqDb] = await outputSqnrsDbGpu(rt, l.w.data, sq, l.h, N, K); // both alike
  if (!(agree >= 0.99) || !(Math.abs(cpuDb - gptqDb) < 0.05)) {
    throw new Error(
      `${N}x${K}: the GPU's codes are not the CPU's: ${(100 * agree).toFixed(2)} % equal, ` +
        `output SQNR ${gptqDb} dB against ${cpuDb}`,
    );
  }
  return { cpuS, gpuS, gptqDb, agree };
}

/**
 * A GPU job at N×K taken apart: its wall time (ms, the median of 5 runs after one) and, from a
 * profiling run of the same job, each kernel's GPU time summed over its launches (ms).
 */
async function profileGpuJob(
  rt: Runtime,
  N: number,
  K: number,
): Promise<{ wallMs: number; kernels: Map<string, { ms: number; launches: number }> }> {
  const l = syntheticLayer(N, K);
  const job = () => gptqRoundGpu(rt, l.w, l.q, l.grid, l.h);
  await job();
  const walls: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    await job();
    walls.push(performance.now() - t0);
  }
  const wallMs = walls.sort((x, y) => x - y)[2];
  const times: LaunchTime[] = [];
  await gptqRoundGpu(rt, l.w, l.q, l.grid, l.h, {}, times);
  const kernels = new Map<string, { ms: number; launches: number }>();
  for (const t of times) {
    const k = kernels.get(t.name) ?? { ms: 0, launches: 0 };
    kernels.set(t.name, { ms: k.ms + t.ms, launches: k.launches + 1 });
  }
  return { wallMs, kernels };
}

/**
 * The whole model's jobs (28 blocks) on a {@linkcode GptqPool} of `workers` (or on `gpu`),
 * as `quantize --gptq` queues them (at most 2 a worker waiting): wall seconds.
 */
async function timePool(
  shapes: readonly (readonly [number, number, number])[],
  workers: number,
  gpu?: Runtime,
): Promise<number> {
  const layers = shapes.map(([N, K]) => syntheticLayer(N, K));
  const pool = new GptqPool(workers, gpu, 0); // with a GPU, every job on it
  const pending: Promise<GptqResult>[] = [];
  const t0 = performance.now();
  try {
    for (let b = 0; b < 28; b++) {
      for (const [i, [, , n]] of shapes.entries()) {
        for (let k = 0; k < n; k++) {
          pending.push(pool.run(jobOf(layers[i], false)));
          if (pending.length > 2 * Math.max(1, pool.size)) await pending.shift();
        }
      }
    }
    await Promise.all(pending);
  } finally {
    pool.close();
  }
  return (performance.now() - t0) / 1000;
}

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: {
      write: { type: "boolean" },
      quick: { type: "boolean" },
      pool: { type: "boolean" },
      gpu: { type: "boolean" },
      profile: { type: "boolean" },
      dir: { type: "string" },
    },
  });
  const d = v.quick ? 4 : 1; // --quick: the shapes ÷ 4, to try the script
  // PixArt-α's block: 8 layers 1152×1152, ff.net.0 4608×1152, ff.net.2 1152×4608 (N, K, count).
  const shapes = [[1152 / d, 1152 / d, 8], [4608 / d, 1152 / d, 1], [
    1152 / d,
    4608 / d,
    1,
  ]] as const;
  const results: BenchResult[] = [];
  const minutes = (name: string, s: number, note: string): BenchResult => {
    console.log(`${name}: ${(s / 60).toFixed(1)} min (${note})`);
    return minutesRow(name, s, note);
  };
  const cores = cpus().length;
  let adapter = "none (host CPU, one thread)";
  let rt: Runtime | undefined;
  if (v.profile) {
    rt = await createRuntime({ adapter: "auto" });
    if (!rt.info.timestamps) throw new Error("--profile needs a GPU with timestamp-query");
    adapter = `${rt.info.description} (GPU GPTQ, f32; kernel times from timestamp queries)`;
    const ms = (name: string, value: number, note: string): BenchResult => ({
      name,
      value: Number(value.toPrecision(4)),
      unit: "ms",
      median_ms: value,
      min_ms: value,
      note,
    });
    for (const [N, K] of shapes) {
      const r = await profileGpuJob(rt, N, K);
      let gpu = 0;
      for (const k of r.kernels.values()) gpu += k.ms;
      console.log(`${N}×${K}: wall ${r.wallMs.toFixed(1)} ms, kernels ${gpu.toFixed(1)} ms`);
      results.push(ms(`gptq_gpu_profile_${N}x${K}_wall`, r.wallMs, "one job, wall (median of 5)"));
      results.push(ms(`gptq_gpu_profile_${N}x${K}_kernels`, gpu, "Σ of every launch's GPU time"));
      for (const [name, k] of r.kernels) {
        console.log(`  ${name}: ${k.ms.toFixed(2)} ms over ${k.launches} launches`);
        results.push(
          ms(snake(`gptq_gpu_profile_${N}x${K}_${name}`), k.ms, `Σ over ${k.launches} launches`),
        );
      }
    }
  } else if (v.gpu) {
    rt = await createRuntime({ adapter: "auto" });
    adapter = `${rt.info.description} (GPU GPTQ, f32) against one CPU thread (f64)`;
    for (const [N, K] of shapes) {
      const r = await timeGpuJob(rt, N, K);
      const note = `one run each; ${(100 * r.agree).toFixed(2)} % of the codes equal, ` +
        `output SQNR ${r.gptqDb.toFixed(2)} dB`;
      console.log(
        `${N}×${K}: GPU ${r.gpuS.toFixed(2)} s, one CPU core ${r.cpuS.toFixed(1)} s; ${note}`,
      );
      results.push(secondsRow(`gptq_gpu_job_w4_${N}x${K}`, r.gpuS, note));
      results.push(secondsRow(`gptq_job_w4_${N}x${K}`, r.cpuS, "the same job on one CPU core"));
    }
    results.push(minutes(
      "gptq_pixart_alpha_gpu_wall",
      await timePool(shapes, 0, rt),
      "measured: 28 × (8 × 1152×1152 + 4608×1152 + 1152×4608) jobs on the GPU, one at a time",
    ));
  } else if (v.pool) {
    const workers = defaultQuantWorkers();
    adapter = `none (host CPU, ${workers} workers)`;
    const s = await timePool(shapes, workers);
    results.push(minutes(
      "gptq_pixart_alpha_pool_wall",
      s,
      `measured: 28 × (8 × 1152×1152 + 4608×1152 + 1152×4608) jobs on ${workers} workers`,
    ));
  } else {
    const t: number[] = [];
    const ts: number[] = [];
    for (const [N, K] of shapes) {
      const r = timeJob(N, K);
      t.push(r.s);
      ts.push(r.sqnrS);
      const db = `output SQNR ${r.rtnDb.toFixed(2)} → ${r.gptqDb.toFixed(2)} dB`;
      console.log(
        `${N}×${K}: ${r.s.toFixed(1)} s (+ ${r.sqnrS.toFixed(1)} s for the SQNRs), ${db}`,
      );
      results.push(secondsRow(`gptq_job_w4_${N}x${K}`, r.s, `one run; ${db}`));
      results.push(secondsRow(`gptq_sqnr_w4_${N}x${K}`, r.sqnrS, "one run; both output SQNRs"));
    }
    const est = (x: number[]) => 28 * (8 * x[0] + x[1] + x[2]);
    const from = "the rows above: 28 × (8 × 1152×1152 + 4608×1152 + 1152×4608), one core";
    const estimate = (name: string, s: number, what: string) => {
      console.log(`${name}: ${(s / 60).toFixed(1)} min (estimate; ${what})`);
      return estimateRow(name, Number((s / 60).toFixed(2)), "min", `${from}; ${what}`);
    };
    results.push(estimate("gptq_pixart_alpha_one_core_est", est(t), "quantize --gptq"));
    results.push(estimate(
      "gptq_report_pixart_alpha_one_core_est",
      est(t.map((x, i) => x + ts[i])),
      "with --report",
    ));
  }
  const cpu = `${cpus()[0]?.model ?? "unknown"}, ${cores} cores`;
  const device = rt ? `${rt.info.description} (host CPU ${cpu})` : `host CPU (${cpu})`;
  if (v.write && !v.quick) {
    const mode = v.profile ? " --profile" : v.gpu ? " --gpu" : v.pool ? " --pool" : "";
    const command = `deno run -A bench/gptq_bench.ts --write${mode}` +
      (v.dir ? ` --dir ${v.dir}` : "");
    const file = { ...resultsHeader(device, await gitCommit(), command), adapter, results };
    const name = v.profile
      ? "gptq_gpu_profile"
      : v.gpu
      ? "gptq_gpu"
      : v.pool
      ? "gptq_pool"
      : "gptq";
    const p = await writeResults(
      v.dir ?? (rt ? deviceSlug(rt.info.description, rt.info.fallback) : "host"),
      name,
      file,
    );
    console.error(`wrote ${p.json}`);
  }
  rt?.destroy();
}
