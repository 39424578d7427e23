/**
 * Fused rotate + per-token quantize (runtime/ops/rotq.ts) beside the GEMM it feeds, in one
 * run on one device: issue 6's target is rotq ≤ 15% of the W4A8 GEMM at M=4096, K=1152,
 * N=4608 (PixArt-α's FFN up-projection: 4096 tokens, hidden 1152).
 *
 *     WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/rotq_bench.ts
 *     # GPU machine: source .gpu/env.sh && WEBDIT_COMMIT=<hash> WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/rotq_bench.ts
 *
 * Rows (GPU; the CPU adapter runs M = 128 and names rows by that shape):
 * - rotq_hadamard_4096x1152, rotq_outlier_4096x1152 (ms): f32 input, 8-bit codes; `_f16`
 *   variants read f16 activations. rotq_hadamard runs the adapter's kernel (the register
 *   kernel, wgsl/rotq_hadamard_reg.wgsl); rotq_hadamard_workgroup_… forces the one it replaced
 *   (a workgroup a row, butterflies in workgroup memory). rotq_outlier runs the default
 *   path: the fused kernel, wgsl/rotq_outlier_fused.wgsl, one launch with 2 token rows a
 *   workgroup in workgroup memory on GPUs (on CPU adapters the most that fit: 4 on
 *   lavapipe's 32 KiB);
 * - on GPUs, the paths it replaced, forced: rotq_outlier_tiled_4096x1152 (two tiled block
 *   GEMMs, wgsl/rotq_outlier_tiled.wgsl, + rotq_outlier_quant.wgsl: three launches timed as
 *   one figure), rotq_outlier_tiled_ty8_… (64-token tiles), rotq_outlier_rows_… (the row
 *   kernel, wgsl/rotq_outlier.wgsl); rotq_outlier_fused_t1_…, _t4_… and _t8_… run the fused
 *   kernel with 1, 4 and 8 tokens a workgroup (the default takes 2);
 * - on CPU adapters, whose outlier-aware default is the barrier-free CPU kernels
 *   (runtime/ops/rotq_cpu.ts), the kernels they replaced, forced: rotq_outlier_fused_… (the
 *   fused kernel, as many tokens a workgroup as fit), rotq_outlier_rows_… (the row kernel);
 *   rotq_hadamard_cpu_… forces the Hadamard CPU kernel (their default before the register
 *   kernel); on GPUs the outlier-aware CPU kernels, forced, the other way round
 *   (rotq_outlier_cpu_…; the Hadamard one runs on CPU adapters only); where K
 *   is one block, rotq_outlier_cpu_composed_… times the CPU kernel's one product by Q1·P·Q2,
 *   what a model's layer runs there (these transform tensors carry no composed matrix, so the
 *   default row times the two products);
 * - actquant_4096x1152 (ms): the plain per-token quantizer (runtime/ops/act_quant.ts), the
 *   cost of quantizing without a rotation;
 * - center_mean_4096x1152, center_midrange_4096x1152 (ms): what activation centring
 *   (runtime/ops/act_center.ts) adds before the quantizer, the M rows as one sample: the
 *   centres, x − centre, and the centre's product with the W4 weight (qgemmA16, one row);
 * - gemm_w4a8_4096x1152x4608 (TFLOP/s, 2·M·N·K): runtime/ops/qgemm.ts qgemmInt, uniform 4-bit weight
 *   (per row), fed by the hadamard kernel's codes; gemm_f32_4096x1152x4608 (TFLOP/s);
 * - the shares rotq / W4A8 GEMM (%) are in the results file's `extra.shares`.
 *
 * WEBDIT_ROTQ_SHAPE=MxKxN runs another shape (default 4096x1152x4608 on GPUs, 128x1152x4608
 * on CPU adapters; 512x128x128 is the bundled model's CFG batch), written as <date>_rotq_MxK;
 * WEBDIT_ROTQ_BLOCK=b another block (default 128; 512 is PixArt-α's FFN down-projection
 * input's), the file name then ending in _b<b>.
 *
 * Every kernel is checked against its CPU reference before it is timed: rotq codes must
 * equal the reference (sampled rows), the GEMMs match f64 sums on sampled entries.
 *
 * @module
 */
import { type AdapterChoice, createRuntime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { readTensor, readTensorRaw, uploadTensor } from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import { actQuant } from "../runtime/ops/act_quant.ts";
import { centerActivations } from "../runtime/ops/act_center.ts";
import { actCentresRef, type CenterMode } from "../runtime/reference/act_center.ts";
import { gemm } from "../runtime/ops/gemm.ts";
import { qgemmA16, uploadQWeight } from "../runtime/ops/qgemm.ts";
import {
  detectFmaContraction,
  hadamardKernel,
  type HadamardTransformTensors,
  outlierKernel,
  type OutlierKernelOptions,
  type OutlierTransformTensors,
  rotqHadamard,
  rotqOutlier,
  uploadOutlierTransform,
} from "../runtime/ops/rotq.ts";
import { actQuantRef } from "../runtime/reference/act_quant.ts";
import { isPowerOfTwo } from "../runtime/reference/hadamard.ts";
import type { QuantizedActivations } from "../runtime/quant/transform.ts";
import type { ActQuantSpec } from "../runtime/quant/rotation_error.ts";
import {
  composeOutlierQ,
  quantizeRows,
  randomOrthogonal,
  rotateHadamardRef,
  rotateOutlierRef,
  unpackCodes,
} from "../runtime/reference/rotq.ts";
import { uniformQuantize } from "../plugins/quantizers/uniform.ts";
import { type BenchCase, BenchSuite, deviceSlug, tflops } from "./harness.ts";
import { checkSampled, productRef, type SampledRef } from "./sampled_check.ts";
import { prepareW4a8 } from "./w4a8_gemm.ts";

/** WEBDIT_ROTQ_BLOCK: a power of two from 8 to 1024 (default 128). */
function blockOf(v: string): number {
  const b = Number(v);
  if (!isPowerOfTwo(b) || b < 8 || b > 1024) {
    throw new RangeError(`WEBDIT_ROTQ_BLOCK must be a power of two from 8 to 1024, got ${v}`);
  }
  return b;
}

/** M×K×N of WEBDIT_ROTQ_SHAPE: K a multiple of the block. */
function shapeOf(v: string, block: number): [number, number, number] {
  const d = v.split("x").map(Number);
  const ok = d.length === 3 && d.every((n) => Number.isInteger(n) && n > 0);
  if (!ok || d[1] % block !== 0 || d[1] % 5 === 0) {
    throw new RangeError(
      `WEBDIT_ROTQ_SHAPE must be MxKxN with K a multiple of ${block} and not of 5, got ${v}`,
    );
  }
  return d as [number, number, number];
}

const rt = await createRuntime({
  adapter: (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as AdapterChoice,
});
const onGpu = !rt.info.fallback;
// The hadamard block and the outlier block (1152 = 9 × 128).
const B = blockOf(Deno.env.get("WEBDIT_ROTQ_BLOCK") ?? "128");
const [M, K, N] = shapeOf(
  Deno.env.get("WEBDIT_ROTQ_SHAPE") ?? (onGpu ? "4096x1152x4608" : "128x1152x4608"),
  B,
);
const UNIT = onGpu ? "TFLOP/s" : "GFLOP/s";
const rate = (flops: number, ms: number) => tflops(flops, ms) * (onGpu ? 1 : 1e3);
const shape = `${M}x${K}`;

// Activations: N(0, 1) with a few salient channels (the rotations' use case), f32 and f16.
const g = new Prng(6);
const xs = g.normals(M * K);
for (let r = 0; r < M; r++) for (const c of [7, 300, 1000]) xs[r * K + c % K] += 60;
const xs16 = Float32Array.from(Float16Array.from(xs));
const x32 = uploadTensor(rt, xs, [M, K]);
const x16 = rt.info.f16 ? uploadTensor(rt, xs16, [M, K], "f16") : undefined;

// Transform parameters: random signs / (m·√b) with smoothing-like factors; random Q1, Q2.
const s = Float32Array.from(
  { length: K },
  () => (g.uniform() < 0.5 ? -1 : 1) / Math.sqrt(B) / (0.5 + g.uniform()),
);
const q1 = randomOrthogonal(B, g);
const q2 = randomOrthogonal(B, g);
const perm = new Uint32Array(K).map((_, k) => (k * 5 + 3) % K); // 5 ⊥ K (shapeOf)
const sOut = Float32Array.from({ length: K }, () => 1 / (0.5 + g.uniform()));
const had: HadamardTransformTensors = { s: uploadTensor(rt, s, [K]), block: B };
const outParams = { s: sOut, q1, q2, perm, block: B };
const out = uploadOutlierTransform(rt, outParams);
// K one block (the bundled model's 128): Q1·P·Q2 composed, as CPU adapters' models multiply by it.
const composedQ = K === B ? composeOutlierQ(outParams) : undefined;
const outComposed: OutlierTransformTensors | undefined = composedQ
  ? { ...out, composed: uploadTensor(rt, composedQ, [K, K]) }
  : undefined;
const fused = await detectFmaContraction(rt);

/** Rows checked against the CPU reference (the outlier reference is ~K·B per row). */
const CHECK_ROWS = [0, 1, 2, 3, M >> 1, M - 1];

/** The activation quantizer of a case: per-token A8, or A4 in asymmetric groups of 16. */
const A8: ActQuantSpec = { bits: 8 };
const A4G16: ActQuantSpec = { bits: 4, group: 16, asym: true };

async function checkCodes(
  q: QuantizedActivations,
  ref: (x: Float32Array, rows: number) => Float32Array,
  xsrc: Float32Array,
  act: ActQuantSpec,
): Promise<string> {
  const words = (await readTensorRaw(rt, q.q)) as Uint32Array;
  const scales = await readTensor(rt, q.scales);
  const W = K / 4;
  const S = act.group ? K / act.group : 1; // scales a row
  // Per token: exact. Grouped: Δ = (hi − lo)/(2^b − 1) is a division WGSL lets a GPU round
  // within 2.5 ulp, so Δ and z = lo + 2^(b−1)·Δ get a few ulps of their operands and a code
  // may differ by one where x·inv sits at a rounding tie; anything else fails.
  const ulps = act.group ? 8 : 0;
  const bad = { codes: 0, ties: 0, scales: 0, zeros: 0 };
  for (const r of CHECK_ROWS) {
    const row = xsrc.subarray(r * K, (r + 1) * K);
    const want: {
      codes: Int8Array;
      scales: Float32Array;
      zeros?: Float32Array;
      scaled?: Float32Array;
    } = act.group
      ? actQuantRef(ref(row, 1), 1, K, act.bits, act.group, act.asym)
      : quantizeRows(ref(row, 1), 1, K, act.bits);
    const got = unpackCodes(words.subarray(r * W, (r + 1) * W), 1, K);
    for (let k = 0; k < K; k++) {
      if (got[k] === want.codes[k]) continue;
      const t = want.scaled?.[k] ?? NaN;
      const tie = Math.abs(Math.abs(t - Math.trunc(t)) - 0.5) <= 1e-6 * Math.abs(t) + 1e-6;
      if (ulps && tie && Math.abs(got[k] - want.codes[k]) === 1) bad.ties++;
      else bad.codes++;
    }
    for (let i = 0; i < S; i++) {
      const d = want.scales[i];
      if (!(Math.abs(scales[r * S + i] - d) <= (ulps || 4) * 2 ** -24 * d)) bad.scales++;
      if (!want.zeros) continue;
      const mag = Math.abs(want.zeros[i]) + 2 ** act.bits * d; // ≥ |lo| + 2^(b−1)·Δ
      if (!(Math.abs(scales[(M + r) * S + i] - want.zeros[i]) <= ulps * 2 ** -24 * mag)) {
        bad.zeros++;
      }
    }
  }
  if (bad.codes || bad.scales || bad.zeros) {
    throw new Error(
      `differ from the CPU reference: ${bad.codes} codes, ${bad.scales} scales, ${bad.zeros} zero points (${bad.ties} codes at rounding ties)`,
    );
  }
  const ties = bad.ties ? ` (${bad.ties} off by one at rounding ties)` : "";
  return `codes of ${CHECK_ROWS.length} rows equal the CPU reference${ties}`;
}

/**
 * Which kernel a case forces ("default": the adapter's choice): the outlier kernels, or
 * "workgroup", the hadamard kernel of GPUs.
 */
type OutlierPath =
  | "default"
  | "rows"
  | "tiled"
  | "tiled_ty8"
  | "fused"
  | "fused_t1"
  | "fused_t4"
  | "fused_t8"
  | "cpu"
  | "cpu_composed"
  | "workgroup";

/** The kernel options of a path. */
function pathOptions(path: OutlierPath): OutlierKernelOptions {
  if (path === "default" || path === "workgroup") return {};
  if (path === "tiled_ty8") return { kernel: "tiled", ty: 8, bk: 16 };
  if (path === "fused_t1") return { kernel: "fused", tokens: 1 };
  if (path === "fused_t4") return { kernel: "fused", tokens: 4 };
  if (path === "fused_t8") return { kernel: "fused", tokens: 8 };
  if (path === "cpu_composed") return { kernel: "cpu" };
  return { kernel: path as "rows" | "tiled" | "fused" | "cpu" };
}

/** The kernel an outlier case runs, in words (rotq.ts's own choice for these options). */
function kernelOf(path: OutlierPath): string {
  if (path === "cpu_composed") return "CPU kernel (one product by Q1·P·Q2 composed, then actQuant)";
  const k = outlierKernel(rt, M, K, B, true, pathOptions(path));
  if (k.kernel === "fused") {
    return `fused kernel (${k.tokens} token${k.tokens === 1 ? "" : "s"} a workgroup)`;
  }
  if (k.kernel === "cpu") return "CPU kernels (two block products, then actQuant)";
  return k.kernel === "tiled" ? "tiled kernels" : "row kernel";
}

/** The hadamard kernel a path forces: "workgroup" (and "cpu"), else the adapter's. */
function hadamardPath(path: OutlierPath): "workgroup" | "cpu" | undefined {
  return path === "workgroup" || path === "cpu" ? path : undefined;
}

function rotqCase(
  kind: "hadamard" | "outlier" | "actquant",
  dt: "f32" | "f16",
  path: OutlierPath = "default",
  act: ActQuantSpec = A8,
): BenchCase {
  const grouped = act.group ? `_a${act.bits}g${act.group}${act.asym ? "asym" : ""}` : "";
  const suffix = (path === "default" ? "" : `_${path}`) + grouped + (dt === "f16" ? "_f16" : "");
  const name = kind === "actquant"
    ? `actquant${suffix}_${shape}`
    : `rotq_${kind}${suffix}_${shape}`;
  const opts = pathOptions(path);
  return {
    name,
    unit: "ms",
    setup: async () => {
      const x = dt === "f16" ? x16 : x32;
      if (!x) throw new Error("this adapter has no shader-f16");
      const host = dt === "f16" ? xs16 : xs;
      const { bits, group, asym } = act;
      const record = (rec: Recorder): QuantizedActivations =>
        kind === "hadamard"
          ? rotqHadamard(rec, x, had, bits, { group, asym, kernel: hadamardPath(path) })
          : kind === "outlier"
          ? rotqOutlier(rec, x, path === "cpu_composed" ? outComposed! : out, bits, {
            ...opts,
            group,
            asym,
          })
          : actQuant(rec, x, bits, { group, asym });
      const rec = new Recorder(rt);
      const q = record(rec);
      await rec.submit();
      const note = await checkCodes(
        q,
        kind === "hadamard"
          ? (row, n) => rotateHadamardRef(row, n, K, s, B)
          : kind === "outlier"
          ? (row, n) =>
            rotateOutlierRef(
              row,
              n,
              K,
              outParams,
              fused,
              path === "cpu_composed" ? composedQ : undefined,
            )
          : (row) => row,
        host,
        act,
      );
      q.q.release();
      q.scales.release();
      return {
        device: rt.device,
        run: (reps) => {
          const r = new Recorder(rt);
          for (let i = 0; i < reps; i++) {
            const o = record(r);
            // Released at once: the next unit reuses the buffers (constant memory at any reps).
            o.q.release();
            o.scales.release();
          }
          return r.submit();
        },
        note: `${
          kind === "outlier"
            ? `${kernelOf(path)}; ${fused ? "fused" : "unfused"} FMA; `
            : kind === "hadamard"
            ? `${hadamardKernel(rt, M, K, B, { kernel: hadamardPath(path) })} kernel; `
            : ""
        }${note}`,
      };
    },
  };
}

/** The GEMMs' check: |y − ref| ≤ 1e-4·Σ|terms| + 1e-6 on sampled entries. */
const tol = (r: SampledRef) => 1e-4 * r.mag + 1e-6;

const ws = new Prng(7).normals(N * K).map((v) => v / Math.sqrt(K));

function w4a8Case(): BenchCase {
  return {
    name: `gemm_w4a8_${shape}x${N}`,
    unit: UNIT,
    setup: async () => {
      const p = await prepareW4a8(rt, { M, K, N }, ws, (r) => rotqHadamard(r, x32, had, 8), tol);
      return {
        ...p,
        value: (ms) => rate(2 * M * N * K, ms),
        note: `qgemmInt (uniform W4 per row, A8 from rotq_hadamard); ${p.note}`,
      };
    },
  };
}

function f32Case(): BenchCase {
  return {
    name: `gemm_f32_${shape}x${N}`,
    unit: UNIT,
    setup: async () => {
      const w = uploadTensor(rt, ws, [N, K]);
      const rec = new Recorder(rt);
      const y = gemm(rec, x32, w);
      await rec.submit();
      const note = checkSampled("f32", await readTensor(rt, y), M, N, productRef(xs, ws, K), tol);
      return {
        device: rt.device,
        run: (reps) => {
          const r = new Recorder(rt);
          for (let i = 0; i < reps; i++) gemm(r, x32, w, { out: y });
          return r.submit();
        },
        value: (ms) => rate(2 * M * N * K, ms),
        note,
      };
    },
  };
}

function centerCase(mode: CenterMode): BenchCase {
  return {
    name: `center_${mode}_${shape}`,
    unit: "ms",
    setup: async () => {
      const qw = uniformQuantize({ data: ws, rows: N, cols: K }, { bits: 4 });
      const w = uploadQWeight(rt, qw, { a16: true, int: true });
      const record = (rec: Recorder) => {
        const c = centerActivations(rec, x32, M, mode);
        const bias = qgemmA16(rec, c.centres, w);
        c.centred.release();
        return { centres: c.centres, bias };
      };
      const rec = new Recorder(rt);
      const o = record(rec);
      await rec.submit();
      const got = await readTensor(rt, o.centres);
      const want = actCentresRef(xs, M, K, mode);
      const tol = mode === "mean" ? 1e-5 : 0;
      for (let k = 0; k < K; k++) {
        if (!(Math.abs(got[k] - want[k]) <= tol * (1 + Math.abs(want[k])))) {
          throw new Error(`centre ${k}: ${got[k]} vs ${want[k]}`);
        }
      }
      o.centres.release();
      o.bias.release();
      return {
        device: rt.device,
        run: (reps) => {
          const r = new Recorder(rt);
          for (let i = 0; i < reps; i++) {
            const c = record(r);
            c.centres.release();
            c.bias.release();
          }
          return r.submit();
        },
        note: `centres (${mode === "mean" ? "to 1e-5" : "exactly"}) equal the CPU reference; ` +
          "three launches: centres, x − centre, qgemmA16 of one row",
      };
    },
  };
}

const suite = new BenchSuite({
  what: (Deno.env.get("WEBDIT_ROTQ_SHAPE") ? `rotq_${shape}` : "rotq") +
    (Deno.env.get("WEBDIT_ROTQ_BLOCK") ? `_b${B}` : ""),
  denoIterations: onGpu ? 3 : 2,
  describe: () =>
    Promise.resolve({
      device: rt.info.description,
      slug: deviceSlug(rt.info.description, rt.info.fallback),
      extra: {
        shape: { M, K, N, block: B },
        fallback: rt.info.fallback,
        packed_dot: rt.info.packedDot,
        fma_contraction: fused,
      },
    }),
  // rotq's cost as a share of the W4A8 GEMM it feeds, in percent (issue 6: ≤ 15).
  extraOf: (rows) => {
    const gemmMs = rows.find((r) => r.name === `gemm_w4a8_${shape}x${N}`)?.median_ms ?? NaN;
    const shares: Record<string, number> = {};
    for (const r of rows) {
      if (r.unit === "ms" && Number.isFinite(r.median_ms) && Number.isFinite(gemmMs)) {
        shares[`${r.name}_over_gemm_w4a8_pct`] = Number((100 * r.median_ms / gemmMs).toFixed(2));
      }
    }
    return { shares };
  },
});

for (const dt of rt.info.f16 ? ["f32", "f16"] as const : ["f32"] as const) {
  suite.add(rotqCase("hadamard", dt));
  suite.add(rotqCase("outlier", dt));
  if (dt === "f32") suite.add(rotqCase("outlier", dt, onGpu ? "tiled" : "rows"));
  if (dt === "f32" && !onGpu) suite.add(rotqCase("outlier", dt, "fused")); // the CPU kernels' peers
  // The Hadamard kernels the register kernel replaced as the default (CPU adapters: also cpu).
  if (dt === "f32") suite.add(rotqCase("hadamard", dt, "workgroup"));
  if (dt === "f32" && !onGpu) suite.add(rotqCase("hadamard", dt, "cpu"));
  // One block on a CPU adapter: the composed product models run (the default row: two products).
  if (dt === "f32" && !onGpu && outComposed) suite.add(rotqCase("outlier", dt, "cpu_composed"));
  if (dt === "f32" && onGpu) suite.add(rotqCase("outlier", dt, "cpu")); // … and it on GPUs
  if (dt === "f32" && onGpu) suite.add(rotqCase("outlier", dt, "tiled_ty8"));
  if (dt === "f32" && onGpu) suite.add(rotqCase("outlier", dt, "fused_t1"));
  if (dt === "f32" && onGpu) suite.add(rotqCase("outlier", dt, "fused_t4"));
  if (dt === "f32" && onGpu) suite.add(rotqCase("outlier", dt, "fused_t8"));
  if (dt === "f32" && onGpu) suite.add(rotqCase("outlier", dt, "rows"));
  suite.add(rotqCase("actquant", dt));
  if (dt === "f32") {
    // quantize --act-group 16 --act-asym at A4 (the groups quantized in the rotation's kernel).
    for (const kind of ["hadamard", "outlier", "actquant"] as const) {
      suite.add(rotqCase(kind, dt, "default", A4G16));
    }
  }
}
suite.add(centerCase("mean"));
suite.add(centerCase("midrange"));
suite.add(w4a8Case());
suite.add(f32Case());
suite.register();
