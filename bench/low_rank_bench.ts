/**
 * The low-rank branch (runtime/ops/low_rank.ts: U = X·Aᵀ by the dense GEMM, then U·Bᵀ
 * accumulated into the product with the epilogue) beside the W4A8 GEMM of the residual it
 * rides on, in one run on one device: what `quantize --low-rank R` adds to a layer.
 *
 *     WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/low_rank_bench.ts
 *     # GPU machine: source .gpu/env.sh && WEBDIT_COMMIT=<hash> WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/low_rank_bench.ts
 *
 * Rows (ms), at the bundled model's layer (M = 2048: one image's 1024 tokens × 2 for CFG,
 * K = N = 128) and, on GPUs, PixArt-α's FFN up-projection (M = 4096, K = 1152, N = 4608):
 * - low_rank_r{R}_{M}x{K}x{N}: the branch as layers run it (lowRankAdd's GEMM versions);
 * - low_rank_r{R}_down_v1_…: the same, the X·Aᵀ GEMM forced to version 1 (16×16 tiles: more
 *   workgroups for a thin output than version 2's 128-column tiles); `_down_vA_up_vB_` force
 *   both GEMMs (CPU adapters: version 3 against 2; GPUs: 1 and 4, the thin kernel, against 2);
 * - low_rank_down_r{R}_v{V}_… (GPUs): X·Aᵀ alone on version V; low_rank_up_r{R}_…: U·Bᵀ
 *   accumulated alone (the adapter's version): where the branch's time goes;
 * - gemm_w4a8_{M}x{K}x{N}_ms: qgemmInt of a uniform W4 weight (per row) on per-token A8 codes
 *   (`_ms`: BENCHMARKS.md's gemm_w4a8_4096x1152x4608 is the same GEMM in TFLOP/s, from
 *   qgemm_bench; the committed files of 2026-11-28 keep the 2048x128x128 row unsuffixed);
 *   gemm_w4a8_lr32_…: the same with a rank-32 branch as layers run it on GPUs (qgemmIntLowRank:
 *   X·Aᵀ, then U·Bᵀ added in the GEMM's store; elsewhere the unfused path);
 * `extra.shares` holds each branch row as a percentage of the W4A8 GEMM of its shape.
 *
 * Every case is checked on sampled entries against f64 sums on the host before it is timed.
 *
 * @module
 */
import { type AdapterChoice, createRuntime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { readTensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import { actQuant } from "../runtime/ops/act_quant.ts";
import { gemm, type GemmVersion } from "../runtime/ops/gemm.ts";
import { lowRankAdd } from "../runtime/ops/low_rank.ts";
import { type BenchCase, BenchSuite, deviceSlug } from "./harness.ts";
import { checkSampled, productRef, type SampledRef } from "./sampled_check.ts";
import { prepareW4a8 } from "./w4a8_gemm.ts";

const rt = await createRuntime({
  adapter: (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as AdapterChoice,
});
const onGpu = !rt.info.fallback;

/** One layer shape and its host data. */
interface Shape {
  M: number;
  K: number;
  N: number;
  name: string;
  xs: Float32Array;
  zs: Float32Array;
}

function shapeOf(M: number, K: number, N: number): Shape {
  const g = new Prng(M + K + N);
  return { M, K, N, name: `${M}x${K}x${N}`, xs: g.normals(M * K), zs: g.normals(M * N) };
}

const SHAPES = [shapeOf(2048, 128, 128), ...(onGpu ? [shapeOf(4096, 1152, 4608)] : [])];

/** The branch's (X·Aᵀ)·Bᵀ at (m, n) in f64, and the sum of its terms' magnitudes. */
function branchRef(
  s: Shape,
  R: number,
  as: Float32Array,
  bs: Float32Array,
): (m: number, n: number) => SampledRef {
  const u = productRef(s.xs, as, s.K); // U = X·Aᵀ at (m, j)
  return (m, n) => {
    let v = 0;
    let mag = 0;
    for (let j = 0; j < R; j++) {
      const p = u(m, j);
      v += p.v * bs[n * R + j];
      mag += p.mag * Math.abs(bs[n * R + j]);
    }
    return { v, mag };
  };
}

/** The branch's factors: A [R, K] ~ N(0, 1/K), B [N, R] ~ N(0, 1/R). */
function factors(s: Shape, R: number): [Float32Array, Float32Array] {
  const g = new Prng(R);
  return [
    g.normals(R * s.K).map((v) => v / Math.sqrt(s.K)),
    g.normals(s.N * R).map((v) => v / Math.sqrt(R)),
  ];
}

function branchCase(s: Shape, R: number, down?: GemmVersion, up?: GemmVersion): BenchCase {
  const { M, K, N } = s;
  const forced = (down ? `_down_v${down}` : "") + (up ? `_up_v${up}` : "");
  return {
    name: `low_rank_r${R}${forced}_${s.name}`,
    unit: "ms",
    setup: async () => {
      const [as, bs] = factors(s, R);
      const t = (v: Float32Array, sh: number[]) => uploadTensor(rt, v, sh);
      const [x, a, b] = [t(s.xs, [M, K]), t(as, [R, K]), t(bs, [N, R])];
      const z = t(s.zs, [M, N]);
      const opts = {
        ...(down ? { down: { version: down } } : {}),
        ...(up ? { up: { version: up } } : {}),
      };
      const rec = new Recorder(rt);
      lowRankAdd(rec, z, x, a, b, opts);
      await rec.submit();
      const y = await readTensor(rt, z);
      const ref = branchRef(s, R, as, bs);
      const note = checkSampled(s.name, y, M, N, (m, n) => {
        const r = ref(m, n);
        return { v: s.zs[m * N + n] + r.v, mag: Math.abs(s.zs[m * N + n]) + r.mag };
      });
      return {
        device: rt.device,
        // In place on z: each rep adds again (the time, not the values, is what is read).
        run: (reps) => {
          const r = new Recorder(rt);
          for (let i = 0; i < reps; i++) lowRankAdd(r, z, x, a, b, opts);
          return r.submit();
        },
        dispose: () => [x, a, b, z].forEach((v) => v.release()),
        note: `${note}; X·Aᵀ by gemm ${
          down ? `v${down}` : "(lowRankAdd's choice)"
        }, then U·Bᵀ accumulated by gemm ${up ? `v${up}` : "(the adapter's version)"}`,
      };
    },
  };
}

/** One of the branch's two GEMMs alone: X·Aᵀ on `version`, or (no version) U·Bᵀ accumulated. */
function partCase(s: Shape, R: number, version?: GemmVersion): BenchCase {
  const { M, K, N } = s;
  const down = version !== undefined;
  return {
    name: down ? `low_rank_down_r${R}_v${version}_${s.name}` : `low_rank_up_r${R}_${s.name}`,
    unit: "ms",
    setup: async () => {
      const g = new Prng(R + 1);
      // down: X [M, K]·A [R, K]ᵀ → [M, R]; up: U [M, R]·B [N, R]ᵀ accumulated into Z [M, N].
      const [rows, depth, cols] = down ? [M, K, R] : [M, R, N];
      const xs = down ? s.xs : g.normals(M * R);
      const ws = g.normals(cols * depth).map((v) => v / Math.sqrt(depth));
      const zs = down ? new Float32Array(M * R) : s.zs;
      const x = uploadTensor(rt, xs, [rows, depth]);
      const w = uploadTensor(rt, ws, [cols, depth]);
      const z = uploadTensor(rt, zs, [rows, cols]);
      const opts = down ? { version, out: z } : { accumulate: true, out: z };
      const rec = new Recorder(rt);
      gemm(rec, x, w, opts);
      await rec.submit();
      const y = await readTensor(rt, z);
      const product = productRef(xs, ws, depth);
      const note = checkSampled(s.name, y, rows, cols, (m, n) => {
        const p = product(m, n);
        return { v: zs[m * cols + n] + p.v, mag: Math.abs(zs[m * cols + n]) + p.mag };
      });
      return {
        device: rt.device,
        run: (reps) => {
          const r = new Recorder(rt);
          for (let i = 0; i < reps; i++) gemm(r, x, w, opts);
          return r.submit();
        },
        dispose: () => [x, w, z].forEach((v) => v.release()),
        note: `${note}; ${
          down
            ? `X·Aᵀ alone, gemm v${version}`
            : "U·Bᵀ accumulated alone, gemm (the adapter's version)"
        }`,
      };
    },
  };
}

/** The W4A8 GEMM alone, or (R > 0) with the branch fused in its store (qgemmIntLowRank). */
function w4a8Case(s: Shape, R = 0): BenchCase {
  const { M, K, N } = s;
  return {
    name: R ? `gemm_w4a8_lr${R}_${s.name}` : `gemm_w4a8_${s.name}_ms`,
    unit: "ms",
    setup: async () => {
      const ws = new Prng(7).normals(N * K).map((v) => v / Math.sqrt(K));
      const x = uploadTensor(rt, s.xs, [M, K]);
      const [as, bs] = factors(s, R);
      const lr = R
        ? {
          x,
          a: uploadTensor(rt, as, [R, K]),
          b: uploadTensor(rt, bs, [N, R]),
          ref: branchRef(s, R, as, bs),
        }
        : undefined;
      const p = await prepareW4a8(rt, s, ws, (r) => actQuant(r, x, 8), undefined, lr);
      return {
        ...p,
        dispose: () => {
          p.dispose?.();
          [x, lr?.a, lr?.b].forEach((t) => t?.release());
        },
        note: `${p.note}; qgemmInt, uniform W4 per row, per-token A8 codes${
          R
            ? `, + a rank-${R} branch: X·Aᵀ (lowRankDown), U·Bᵀ ${
              onGpu ? "in the GEMM's store" : "accumulated after it (unfused on CPU adapters)"
            }`
            : ""
        }`,
      };
    },
  };
}

const suite = new BenchSuite({
  what: "low_rank",
  denoIterations: onGpu ? 3 : 2,
  describe: () =>
    Promise.resolve({
      device: rt.info.description,
      slug: deviceSlug(rt.info.description, rt.info.fallback),
      extra: { shapes: SHAPES.map((s) => s.name), fallback: rt.info.fallback },
    }),
  // Each branch row as a share of the W4A8 GEMM of its shape, in percent.
  extraOf: (rows) => {
    const shares: Record<string, number> = {};
    for (const s of SHAPES) {
      const gemmMs = rows.find((r) => r.name === `gemm_w4a8_${s.name}_ms`)?.median_ms ?? NaN;
      for (const r of rows) {
        const branch = r.name.startsWith("low_rank_") || r.name.startsWith("gemm_w4a8_lr");
        if (branch && r.name.endsWith(s.name) && gemmMs > 0) {
          shares[`${r.name}_over_gemm_w4a8_pct`] = Number((100 * r.median_ms / gemmMs).toFixed(1));
        }
      }
    }
    return { shares };
  },
  teardown: () => rt.destroy(),
});

for (const s of SHAPES) {
  for (const R of [16, 32]) suite.add(branchCase(s, R));
  // A/B of the two GEMMs' versions: GPUs 1 (and 4, the thin kernel) against 2; CPU adapters 3
  // (their small-M kernel) against 2.
  const [alt, base] = onGpu ? [1, 2] as const : [3, 2] as const;
  suite.add(branchCase(s, 32, alt));
  suite.add(branchCase(s, 32, alt, alt));
  suite.add(branchCase(s, 32, base, alt));
  if (onGpu) {
    suite.add(branchCase(s, 32, 4));
    suite.add(branchCase(s, 32, 4, 1));
    for (const v of [1, 2, 4] as const) suite.add(partCase(s, 32, v));
    suite.add(partCase(s, 32));
  }
  suite.add(w4a8Case(s));
  suite.add(w4a8Case(s, 32));
}
suite.register();
