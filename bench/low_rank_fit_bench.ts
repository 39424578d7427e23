/**
 * The hessian low-rank fit's host cost (`quantize --low-rank-fit hessian`, runtime/quant/
 * low_rank_fit.ts) at PixArt-α's layer shapes, one thread: H's Cholesky factor (once a layer)
 * and one round's branch (three a layer), rank 32, on a synthetic layer — W random, the rest
 * of its SVD split rounded plainly to W4 uniform, H diagonal + rank 16 (positive definite).
 * Checked first: on a sample of 64 output rows the hessian branch must leave less output error
 * (eᵀ·H·e summed) than the top-32 SVD branch of the same W − Ê. Writes
 * `bench/results/host/<date>_low_rank_fit.{json,md}` with `--write`, with the model's
 * one-core total extrapolated from the shapes (28 blocks of 8 × 1152×1152, 4608×1152 and
 * 1152×4608), and one block's eight 1152×1152 fits run together on this thread and then on
 * the quantize workers (runtime/quant/low_rank_pool.ts), same results, in the same run.
 *
 *     deno run -A bench/low_rank_fit_bench.ts [--write] [--quick]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { cpus } from "node:os";
import { uniformQuantizer } from "../plugins/quantizers/uniform.ts";
import type { HostMatrix } from "../plugins/types.ts";
import { Prng } from "../runtime/io/prng.ts";
import {
  branchResidual,
  hessianBranch,
  hessianFactor,
  lowRankSplit,
} from "../runtime/quant/low_rank.ts";
import { LOW_RANK_ROUNDS } from "../runtime/quant/low_rank_fit.ts";
import { type HessianFitter, LowRankPool } from "../runtime/quant/low_rank_pool.ts";
import { defaultQuantWorkers } from "../runtime/quant/gptq_pool.ts";
import { syntheticGram } from "./gptq_bench.ts";
import type { BenchResult } from "./results_file.ts";
import { estimateRow, gitCommit, resultsHeader, secondsRow, writeResults } from "./results_file.ts";

const RANK = 32;

/** W [N, K] random, D = W − Ê with Ê the plain W4 rounding of its SVD split's rest, and H. */
function syntheticLayer(N: number, K: number, seed = 0) {
  const g = new Prng(N * 5 + K + seed);
  const w: HostMatrix = { data: g.normals(N * K).map((v) => v / Math.sqrt(K)), rows: N, cols: K };
  const rest = lowRankSplit(w, w, RANK).residual;
  const deq = uniformQuantizer.dequantize(uniformQuantizer.calibrate(rest, { bits: 4 }));
  const d: HostMatrix = { data: w.data.map((v, i) => v - deq[i]), rows: N, cols: K };
  return { w, d, h: syntheticGram(g, K) };
}

/** Σ over `rows` of eᵀ·H·e for E = D − B·Bᵀ·D (the output error on H's inputs, sampled). */
function sampledOutputError(
  d: HostMatrix,
  b: Float32Array,
  h: Float32Array,
  rows: number[],
): number {
  const e = branchResidual(d, b, d).data;
  const K = d.cols;
  let t = 0;
  for (const n of rows) {
    for (let i = 0; i < K; i++) {
      const ei = e[n * K + i];
      if (ei === 0) continue;
      let s = 0;
      for (let j = 0; j < K; j++) s += h[i * K + j] * e[n * K + j];
      t += ei * s;
    }
  }
  return t;
}

/** One shape: the factor's and one round's wall seconds, after the check. */
function timeShape(N: number, K: number): { factorS: number; branchS: number; gain: number } {
  const { d, h } = syntheticLayer(N, K);
  let t0 = performance.now();
  const c = hessianFactor(h, K);
  const factorS = (performance.now() - t0) / 1000;
  t0 = performance.now();
  const b = hessianBranch(d, c, RANK);
  const branchS = (performance.now() - t0) / 1000;
  const rows = Array.from({ length: Math.min(64, N) }, (_, i) => Math.floor((i * N) / 64));
  const svd = sampledOutputError(d, lowRankSplit(d, d, RANK).b, h, rows);
  const hess = sampledOutputError(d, b, h, rows);
  if (!(hess < svd)) {
    throw new Error(`${N}x${K}: the hessian branch left more output error (${hess} ≥ ${svd})`);
  }
  return { factorS, branchS, gain: 10 * Math.log10(svd / hess) };
}

/** `layers` fits (factor, then a branch each round) started together on `fitter`: wall s, Bs. */
async function timeLayers(
  layers: ReturnType<typeof syntheticLayer>[],
  fitter: HessianFitter,
): Promise<{ s: number; bs: Float32Array[] }> {
  const t0 = performance.now();
  const bs = await Promise.all(layers.map(async ({ d, h }) => {
    const c = await fitter.factor(h, d.cols);
    let b: Float32Array = new Float32Array();
    for (let r = 0; r <= LOW_RANK_ROUNDS; r++) b = await fitter.branch(d, c, RANK);
    return b;
  }));
  return { s: (performance.now() - t0) / 1000, bs };
}

if (import.meta.main) {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: { write: { type: "boolean" }, quick: { type: "boolean" } },
  });
  const q = v.quick ? 4 : 1; // --quick: the shapes ÷ 4, to try the script
  const shapes = [[1152 / q, 1152 / q], [4608 / q, 1152 / q], [1152 / q, 4608 / q]] as const;
  const results: BenchResult[] = [];
  const perLayer: number[] = [];
  for (const [N, K] of shapes) {
    const r = timeShape(N, K);
    const layer = r.factorS + (LOW_RANK_ROUNDS + 1) * r.branchS;
    perLayer.push(layer);
    const check = `sampled output error ${r.gain.toFixed(2)} dB below the SVD branch's`;
    console.log(
      `${N}×${K}: factor ${r.factorS.toFixed(2)} s, a round ${r.branchS.toFixed(2)} s, ` +
        `a layer ${layer.toFixed(1)} s; ${check}`,
    );
    results.push(secondsRow(`hessian_factor_${N}x${K}`, r.factorS, "one run"));
    results.push(secondsRow(`hessian_branch_r${RANK}_${N}x${K}`, r.branchS, `one run; ${check}`));
    results.push(
      secondsRow(`hessian_fit_layer_r${RANK}_${N}x${K}`, layer, "factor + 3 rounds' branches"),
    );
  }
  const est = 28 * (8 * perLayer[0] + perLayer[1] + perLayer[2]);
  const from = "the hessian_fit_layer rows: 28 × (8 × 1152×1152 + 4608×1152 + 1152×4608), one core";
  console.log(`hessian_fit_pixart_alpha_one_core_est: ${(est / 60).toFixed(1)} min (estimate)`);
  results.push(
    estimateRow(
      "hessian_fit_pixart_alpha_one_core_est",
      Number((est / 60).toFixed(2)),
      "min",
      from,
    ),
  );
  // One block's eight square layers together: this thread, then the workers.
  const n = 1152 / q;
  const block = Array.from({ length: 8 }, (_, i) => syntheticLayer(n, n, i + 1));
  const workers = defaultQuantWorkers();
  const here = await timeLayers(block, new LowRankPool(1));
  const pool = new LowRankPool(workers, 0);
  const there = await timeLayers(block, pool).finally(() => pool.close());
  if (here.bs.some((b, i) => b.some((x, j) => x !== there.bs[i][j]))) {
    throw new Error("the workers' branches differ from this thread's");
  }
  const same = "8 layers' factor + 3 rounds' branches, started together; one run";
  console.log(
    `8 × ${n}×${n} together: this thread ${here.s.toFixed(1)} s, ` +
      `${workers} workers ${there.s.toFixed(1)} s (same branches)`,
  );
  results.push(secondsRow(`hessian_fit_8x${n}x${n}_this_thread`, here.s, same));
  results.push(
    secondsRow(`hessian_fit_8x${n}x${n}_workers${workers}`, there.s, `${same}; same branches`),
  );
  if (v.write && !v.quick) {
    const cpu = `${cpus()[0]?.model ?? "unknown"}, ${cpus().length} cores`;
    const command = "deno run -A bench/low_rank_fit_bench.ts --write";
    const file = {
      ...resultsHeader(`host CPU (${cpu})`, await gitCommit(), command),
      adapter: "none (host CPU: one thread, and the quantize workers where named)",
      results,
    };
    const out = await writeResults("host", "low_rank_fit", file);
    console.log(`wrote ${out.json}`);
  }
}
