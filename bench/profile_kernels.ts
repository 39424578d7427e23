/**
 * GPU-side time of each launch of the short kernels (timestamp-query), beside the protocol's
 * wall-clock figures: where a multi-launch path spends its time, and a kernel's time without
 * the host's jitter. A diagnostic, not the protocol (BENCHMARKS.md times whole units from the
 * host); compare its rows within one file.
 *
 *     deno run -A bench/profile_kernels.ts [--reps N] [--write]
 *     # GPU machine: source .gpu/env.sh && WEBDIT_COMMIT=<hash> deno run -A --no-check bench/profile_kernels.ts --write
 *
 * Cases (GPU shapes; a CPU adapter runs 128 tokens / rows): rotq hadamard and outlier (the
 * default fused kernel and the tiled path's three launches) at 4096×1152; the W4A16 skinny
 * GEMM (TLQ compact) and the f32 GEMM at 64×1152×4608; the W4A8 TLQ GEMM (its table
 * expansion and GEMM launches) at 4096×1152×4608. Each case records `reps` units in one
 * profiling recorder (every launch in a pass of its own), after one untimed unit. Rows:
 * `<case>_<kernel>`, the median of that kernel's launches in µs (min in the row; files before
 * 2026-11-29 joined the two with `__`). Checks: the two 64-row GEMMs' outputs on 256 sampled
 * entries against f64 sums on the host (each row's note says so); the rotq and W4A8 launches
 * are not checked here (rotq_bench and qgemm_bench check the same kernels before timing them).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createRuntime, type Runtime } from "../runtime/gpu/device.ts";
import { type LaunchTime, Recorder } from "../runtime/gpu/kernel.ts";
import { createTensor, readTensor, type Tensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import { actQuant } from "../runtime/ops/act_quant.ts";
import { gemm } from "../runtime/ops/gemm.ts";
import { qgemmA16, qgemmInt } from "../runtime/ops/qgemm.ts";
import { uploadQWeight } from "../runtime/ops/qweight.ts";
import { rotqHadamard, rotqOutlier, uploadOutlierTransform } from "../runtime/ops/rotq.ts";
import { randomOrthogonal } from "../runtime/reference/rotq.ts";
import { tlqQuantize } from "../plugins/quantizers/tlq.ts";
import {
  type BenchResult,
  deviceSlug,
  gitCommit,
  median,
  resultsHeader,
  resultsMarkdown,
  writeResults,
} from "./harness.ts";
import { weightAt } from "./qgemm_weights.ts";
import { checkSampled, productRef } from "./sampled_check.ts";

const { values: args } = parseArgs({
  options: { reps: { type: "string" }, write: { type: "boolean", default: false } },
});

/** Records `reps` units of `unit` (after an untimed one) and returns every launch's time. */
async function profile(rt: Runtime, unit: (rec: Recorder) => void, reps: number) {
  const warm = new Recorder(rt);
  unit(warm);
  await warm.submit();
  const rec = new Recorder(rt, "profile", { profile: true });
  for (let i = 0; i < reps; i++) unit(rec);
  await rec.submit();
  return rec.launchTimes();
}

/** One row per kernel name: the median and min of its launches, in µs. */
function rows(what: string, times: LaunchTime[], note: string): BenchResult[] {
  const by = new Map<string, number[]>();
  for (const t of times) {
    if (!by.has(t.name)) by.set(t.name, []);
    by.get(t.name)!.push(t.ms);
  }
  return [...by].map(([name, ms]) => ({
    name: profileRowName(what, name),
    value: Number((1e3 * median(ms)).toPrecision(4)),
    unit: "µs GPU (timestamps)",
    median_ms: median(ms),
    min_ms: Math.min(...ms),
    reps: ms.length,
    note,
  }));
}

/** `<case>_<kernel>` in lower_snake_case, single underscores. */
function profileRowName(what: string, kernel: string): string {
  return `${what}_${kernel}`.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_|_$/g, "");
}

const rt = await createRuntime();
if (!rt.info.timestamps) {
  console.error("profile_kernels: this adapter has no timestamp-query");
  Deno.exit(2);
}
const onGpu = !rt.info.fallback;
const reps = Number(args.reps ?? (onGpu ? 50 : 3));
const [M, K, N, B] = [onGpu ? 4096 : 128, 1152, 4608, 128];
const g = new Prng(11);
const x = uploadTensor(rt, g.normals(M * K), [M, K]);
const outlier = uploadOutlierTransform(rt, {
  s: g.uniforms(K, 0.5, 2),
  q1: randomOrthogonal(B, g),
  q2: randomOrthogonal(B, g),
  perm: new Uint32Array(K).map((_, k) => (k * 5 + 3) % K),
  block: B,
});
const s = outlier.s;
const release = (...ts: Tensor[]) => ts.forEach((t) => t.release());
const shape = `${M}x${K}`;
const results: BenchResult[] = [];
const unchecked = (bench: string) => `not checked here (${bench} checks this kernel before timing)`;
const run = async (what: string, unit: (rec: Recorder) => void, note: string) => {
  const r = rows(what, await profile(rt, unit, reps), note);
  for (const row of r) {
    console.log(`${row.name}: ${row.value} µs (min ${(1e3 * row.min_ms).toPrecision(4)} µs)`);
  }
  results.push(...r);
};

await run(`rotq_hadamard_${shape}`, (rec) => {
  const q = rotqHadamard(rec, x, { s, block: B }, 8);
  release(q.q, q.scales);
}, unchecked("rotq_bench"));
for (const kernel of ["fused", "tiled"] as const) {
  if (kernel === "tiled" && !onGpu) continue;
  await run(`rotq_outlier_${kernel}_${shape}`, (rec) => {
    const q = rotqOutlier(rec, x, outlier, 8, { kernel });
    release(q.q, q.scales);
  }, unchecked("rotq_bench"));
}

// The GEMMs: a TLQ W4 weight N × K (host search at one η and percentile: seconds, not minutes).
const wq = tlqQuantize(
  { data: g.normals(N * K).map((v) => v / Math.sqrt(K)), rows: N, cols: K },
  { bits: 4, etas: [0.01], percentiles: [0.999] },
);
const a16 = uploadQWeight(rt, wq);
const int = uploadQWeight(rt, wq, { a16: false, int: true });
const w32s = g.normals(N * K);
const x64s = g.normals(64 * K);
const w32 = uploadTensor(rt, w32s, [N, K]);
const x64 = uploadTensor(rt, x64s, [64, K]);
const y64 = createTensor(rt, [64, N]);
// The 64-row GEMMs are checked before they are profiled (cheap: 256 entries of 64 × 4608).
const checked = async (label: string, unit: (rec: Recorder) => void, w: ArrayLike<number>) => {
  const rec = new Recorder(rt);
  unit(rec);
  await rec.submit();
  return checkSampled(label, await readTensor(rt, y64), 64, N, productRef(x64s, w, K));
};
const a16Unit = (rec: Recorder) => qgemmA16(rec, x64, a16, { out: y64 });
const w4 = Float32Array.from({ length: N * K }, (_, i) => weightAt(wq, Math.floor(i / K), i % K));
await run(`gemm_w4a16_64x${K}x${N}`, a16Unit, await checked("gemm_w4a16_64", a16Unit, w4));
const f32Unit = (rec: Recorder) => gemm(rec, x64, w32, { out: y64 });
await run(`gemm_f32_64x${K}x${N}`, f32Unit, await checked("gemm_f32_64", f32Unit, w32s));
const prep = new Recorder(rt);
const xa = actQuant(prep, x, 8);
await prep.submit();
const y = createTensor(rt, [M, N]);
await run(
  `gemm_w4a8_${M}x${K}x${N}`,
  (rec) => qgemmInt(rec, xa, int, { out: y }),
  unchecked("qgemm_bench"),
);

const file = {
  ...resultsHeader(
    rt.info.description,
    await gitCommit(),
    Deno.env.get("WEBDIT_BENCH_COMMAND") ?? "deno run -A bench/profile_kernels.ts --write",
  ),
  results,
  extra: { reps, shape: { M, K, N, block: B }, fallback: rt.info.fallback },
};
console.log("\n" + resultsMarkdown(file));
if (args.write) {
  const paths = await writeResults(
    deviceSlug(rt.info.description, rt.info.fallback),
    "profile",
    file,
  );
  console.log(`wrote ${paths.json} and ${paths.md}`);
}
rt.destroy();
