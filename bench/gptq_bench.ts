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
 *     deno run -A bench/gptq_bench.ts [--write] [--quick]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { cpus } from "node:os";
import { uniformQuantizer } from "../plugins/quantizers/uniform.ts";
import { Prng } from "../runtime/io/prng.ts";
import { outputSqnrsDb } from "../runtime/quant/gptq.ts";
import { runGptqJob } from "../runtime/quant/gptq_pool.ts";
import type { BenchResult } from "./results_file.ts";
import { gitCommit, resultsHeader, writeResults } from "./results_file.ts";

/**
 * One job's wall time (s) at N×K, and the report's output SQNRs' (sqnrS), after checking
 * that GPTQ lowered the output error.
 */
function timeJob(
  N: number,
  K: number,
): { s: number; sqnrS: number; rtnDb: number; gptqDb: number } {
  const g = new Prng(N * 7 + K);
  const w = { data: g.normals(N * K).map((v) => v / Math.sqrt(K)), rows: N, cols: K };
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
  const q = uniformQuantizer.calibrate(w, { bits: 4 });
  const t0 = performance.now();
  const r = runGptqJob({
    id: 0,
    name: `${N}x${K}`,
    w: w.data.slice(),
    rows: N,
    cols: K,
    bits: 4,
    codes: q.codes,
    grid: uniformQuantizer.grid!(q),
    h,
    sqnr: false,
  });
  const s = (performance.now() - t0) / 1000;
  const t1 = performance.now();
  const deq = (codes: Uint32Array) => uniformQuantizer.dequantize({ ...q, codes });
  const [rtnDb, gptqDb] = outputSqnrsDb(w.data, [deq(q.codes), deq(r.codes)], h, N, K);
  const sqnrS = (performance.now() - t1) / 1000;
  if (!(gptqDb > rtnDb)) {
    throw new Error(`${N}x${K}: GPTQ did not lower the output error (${rtnDb} → ${gptqDb})`);
  }
  return { s, sqnrS, rtnDb, gptqDb };
}

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: { write: { type: "boolean" }, quick: { type: "boolean" } },
  });
  const d = v.quick ? 4 : 1; // --quick: the shapes ÷ 4, to try the script
  const shapes = [[1152 / d, 1152 / d], [4608 / d, 1152 / d], [1152 / d, 4608 / d]] as const;
  const results: BenchResult[] = [];
  const t: number[] = [];
  const ts: number[] = [];
  const seconds = (name: string, s: number, note: string): BenchResult => ({
    name,
    value: Number(s.toFixed(2)),
    unit: "s",
    median_ms: s * 1000,
    min_ms: s * 1000,
    note,
  });
  for (const [N, K] of shapes) {
    const r = timeJob(N, K);
    t.push(r.s);
    ts.push(r.sqnrS);
    const db = `output SQNR ${r.rtnDb.toFixed(2)} → ${r.gptqDb.toFixed(2)} dB`;
    console.log(`${N}×${K}: ${r.s.toFixed(1)} s (+ ${r.sqnrS.toFixed(1)} s for the SQNRs), ${db}`);
    results.push(seconds(`gptq_job_w4_${N}x${K}`, r.s, `one run; ${db}`));
    results.push(seconds(`gptq_sqnr_w4_${N}x${K}`, r.sqnrS, "one run; both output SQNRs"));
  }
  const minutes = (name: string, x: number[], what: string): BenchResult => {
    const s = 28 * (8 * x[0] + x[1] + x[2]);
    console.log(`PixArt-α extrapolated, ${what}: ${(s / 60).toFixed(1)} min on one core`);
    return {
      name,
      value: Number((s / 60).toFixed(1)),
      unit: "min",
      median_ms: s * 1000,
      min_ms: s * 1000,
      note: `extrapolated: 28 × (8 × 1152×1152 + 4608×1152 + 1152×4608), one core; ${what}`,
    };
  };
  results.push(minutes("gptq_pixart_alpha_one_core_est", t, "quantize --gptq"));
  results.push(
    minutes("gptq_report_pixart_alpha_one_core_est", t.map((x, i) => x + ts[i]), "with --report"),
  );
  const cores = cpus().length;
  const device = `host CPU (${cpus()[0]?.model ?? "unknown"}, ${cores} cores)`;
  if (v.write && !v.quick) {
    const command = "deno run -A bench/gptq_bench.ts --write";
    const file = {
      ...resultsHeader(device, await gitCommit(), command),
      adapter: "none (host CPU, one thread)",
      results,
    };
    const p = await writeResults("host", "gptq", file);
    console.error(`wrote ${p.json}`);
  }
}
