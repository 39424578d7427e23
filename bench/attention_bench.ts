/**
 * Attention benchmark: the dense flash kernel (runtime/ops/attention.ts) and PARO's
 * block-sparse kernels (runtime/ops/attn_sparse.ts) at densities 0.5/0.3/0.2 with INT8 and
 * INT4 (and float) Q/K/P/V, in one run, each checked against a CPU reference on sampled
 * rows before it is timed.
 *
 *     WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/attention_bench.ts
 *                          # + bench/results/<device>/<date>_attention.{json,md}
 *
 * GPU: 4096 tokens (a 64×64 grid), 16 heads, batch 1: dense f16 at head dim 64, 72 and 128 (ms,
 * TFLOP/s in value2 counting 4·T²·D·H, against the 53 TFLOP/s f16 FMA ceiling), PARO at
 * D = 64 (ms; value2 = speed-up over dense f16 at the same shape, same run), and the same
 * at 1024 tokens. A PARO row times the whole op: K mean + quantize-to-blocks (with the
 * reordering) + the sparse kernel; `_kernel` rows time the sparse kernel alone and
 * `attn_paro_prep_int8_…` the prep alone (quantizeQkv, codes checked exactly). GPUs run
 * the register-tiled integer kernel; `attn_paro_rows_…` forces the one-row-per-thread one
 * (the CPU adapter's) at 0.3 INT8, and `attn_paro_d30_int8_…_d72` is PixArt-α's head dim.
 * Befores in the same run: `attn_dense_tiled_…_d72_noprefetch` (the tiled kernel staging
 * every block directly) and `attn_dense_tiled_…_d128` (the tiled kernel where the chunked one
 * runs by default: 32 threads on 48 KiB).
 * CPU adapter: 1024 tokens (the bundled model's grid), 2 heads, GFLOP/s for dense.
 * WEBDIT_ATTN_SWEEP=1 adds the rows INT8 kernel at 0.3 under several launch shapes, and
 * WEBDIT_ATTN_TILED_SWEEP=1 the tiled dense kernel under several launch shapes, and
 * WEBDIT_ATTN_CHUNKED_SWEEP=1 the head-dim-chunked one; WEBDIT_ATTN_SWEEP_DTYPE=f32 sweeps
 * those on f32 operands where the adapter has f16 (the f32 step's attention).
 *
 * Masks are synthetic but shaped like calibrated ones: per head, block mass decays with the
 * block distance (plus noise), the diagonal is always kept (runtime/quant/paro_plan.ts
 * selectMask); heads use the candidate orders in turn.
 *
 * @module
 */
import { type AdapterChoice, createRuntime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { readTensor, readTensorRaw, type Tensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import { attention, type AttentionTuning } from "../runtime/ops/attention.ts";
import {
  attnSparse,
  attnSparseQuantized,
  type AttnSparseTuning,
  type QuantizedQkv,
  quantizeQkv,
} from "../runtime/ops/attn_sparse.ts";
import {
  blocksOf,
  candidatePermutations,
  maskDensity,
  maskWords,
  selectMask,
} from "../runtime/quant/paro_plan.ts";
import {
  attnSparseFloatRef,
  attnSparseQuantRef,
  kMeanRef,
  quantizeBlocksRef,
} from "../runtime/reference/attn_sparse.ts";
import type { HostHeads } from "../runtime/reference/attention.ts";
import { type BenchCase, BenchSuite, deviceSlug, tflops } from "./harness.ts";
import { denseSweeps } from "./attention_sweeps.ts";

const rt = await createRuntime({
  adapter: (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as AdapterChoice,
});
const onGpu = !rt.info.fallback;
const HEADS = onGpu ? 16 : 2;
const RATE_UNIT = onGpu ? "TFLOP/s" : "GFLOP/s";
const rate = (flops: number, ms: number) => tflops(flops, ms) * (onGpu ? 1 : 1e3);
/** Measured f16 FMA ceiling of the H100 through Deno's WebGPU (BENCHMARKS.md). */
const F16_CEILING = 53.0;

type Float = "f32" | "f16";

interface Inputs {
  T: number;
  D: number;
  h: number;
  w: number;
  host: Float32Array[];
  gpu: Tensor[];
}

const inputCache = new Map<string, Inputs>();

/** q/k/v [1, T, H·D], N(0, 1) with a channel offset on k, rounded to f16 for f16 storage. */
function inputs(T: number, D: number, dt: Float): Inputs {
  const key = `${T}:${D}:${dt}`;
  let x = inputCache.get(key);
  if (!x) {
    const g = new Prng(T + D);
    const host = [0, 1, 2].map((i) => {
      let a = g.normals(T * HEADS * D);
      if (i === 1) a = a.map((v, j) => v + ((j % D) % 3) - 1);
      return dt === "f16" ? Float32Array.from(Float16Array.from(a)) : a;
    });
    const side = Math.sqrt(T);
    x = {
      T,
      D,
      h: side,
      w: side,
      host,
      gpu: host.map((a) => uploadTensor(rt, a, [1, T, HEADS * D], dt)),
    };
    inputCache.set(key, x);
  }
  return x;
}

/** Per-head orders (candidates in turn) and masks at `density` from a distance-decaying mass. */
function planFor(h: number, w: number, density: number) {
  const T = h * w;
  const nb = blocksOf(T);
  const cands = candidatePermutations(h, w);
  const perm = new Uint32Array(HEADS * T);
  const masks = new Uint32Array(HEADS * nb * maskWords(nb));
  const g = new Prng(nb * 100 + Math.round(density * 100));
  for (let hd = 0; hd < HEADS; hd++) {
    perm.set(cands[hd % cands.length].perm, hd * T);
    const mass = new Float64Array(nb * nb);
    for (let q = 0; q < nb; q++) {
      for (let k = 0; k < nb; k++) mass[q * nb + k] = Math.exp(-Math.abs(q - k) / 4) + g.uniform();
    }
    masks.set(selectMask(mass, nb, density), hd * nb * maskWords(nb));
  }
  return {
    perm,
    masks,
    nb,
    density: maskDensity(masks.subarray(0, nb * maskWords(nb)), nb),
    permT: uploadTensor(rt, perm, [HEADS, T], "u32"),
    masksT: uploadTensor(rt, masks, [HEADS, 1, nb, maskWords(nb)], "u32"),
  };
}

/** 24 sampled raster rows. */
function sampleRows(T: number): number[] {
  const g = new Prng(T);
  return Array.from({ length: 24 }, () => g.nextU32() % T);
}

/**
 * Checks sampled rows: max |got − ref| ≤ tol, and, with `rare` given, at most `rare.share`
 * of the entries above `rare.tol` (flips that a tight bound cannot exclude); returns a note.
 */
function check(
  name: string,
  got: Float32Array,
  ref: Float32Array,
  rows: number[],
  width: number,
  tol: number,
  rare?: { tol: number; share: number },
): string {
  let max = 0;
  let over = 0;
  for (const r of rows) {
    for (let c = 0; c < width; c++) {
      const d = Math.abs(got[r * width + c] - ref[r * width + c]);
      if (!(d <= max)) max = d;
      if (rare && !(d <= rare.tol)) over++;
    }
  }
  if (!(max <= tol)) throw new Error(`${name}: max |err| ${max} on sampled rows > ${tol}`);
  const n = rows.length * width;
  if (rare && over > rare.share * n) {
    throw new Error(`${name}: ${over} of ${n} sampled entries have |err| > ${rare.tol}`);
  }
  const flips = rare ? `, ${over} of ${n} entries above ${rare.tol.toPrecision(3)}` : "";
  return `checked ${rows.length} rows: max |err| ${max.toExponential(2)}${flips}`;
}

const hh = (x: Inputs, i: number): HostHeads => ({
  data: x.host[i],
  batch: 1,
  tokens: x.T,
  width: HEADS * x.D,
});

const denseMs = new Map<string, () => number | undefined>();

function denseCase(T: number, D: number, dt: Float, tuning?: AttentionTuning): BenchCase {
  // The default kernel has the plain name; a forced one is named (attn_dense_rows_…), and a
  // forced launch shape (…_rg16_tc9_cv2[_qpt2][_half][_kpt8], …_rg8_tc16_nch2) or rows a thread
  // (…_rpt4) carries it.
  const t = tuning ?? {};
  const shape = t.tiled
    ? `_rg${t.tiled.rg}_tc${t.tiled.tc}_cv${t.tiled.cv}${
      (t.tiled.qpt ?? 1) > 1 ? `_qpt${t.tiled.qpt}` : ""
    }${t.tiled.half ? "_half" : ""}${t.tiled.kpt === 8 ? "_kpt8" : ""}`
    : "";
  const chunks = t.chunked ? `_rg${t.chunked.rg}_tc${t.chunked.tc}_nch${t.chunked.nch}` : "";
  const tag = shape + chunks + (t.rowsPerThread ? `_rpt${t.rowsPerThread}` : "") +
    (t.prefetch === false ? "_noprefetch" : "");
  const name = `attn_dense_${t.kernel ? `${t.kernel}_` : ""}${dt}_${T}_d${D}${tag}`;
  const flops = 4 * T * T * D * HEADS;
  return {
    name,
    unit: "ms",
    unit2: RATE_UNIT,
    setup: async () => {
      if (dt === "f16" && !rt.info.f16) throw new Error("this adapter has no shader-f16");
      const x = inputs(T, D, dt);
      const out = attention(new Recorder(rt), x.gpu[0], x.gpu[1], x.gpu[2], {
        heads: HEADS,
        tuning,
      });
      const record = (reps: number) => {
        const rec = new Recorder(rt);
        for (let i = 0; i < reps; i++) {
          attention(rec, x.gpu[0], x.gpu[1], x.gpu[2], { heads: HEADS, out, tuning });
        }
        return rec.submit();
      };
      await record(1);
      const rows = sampleRows(T);
      const nb = blocksOf(T);
      const full = new Uint32Array(HEADS * nb * maskWords(nb)).fill(0xffffffff);
      const ref = attnSparseFloatRef(hh(x, 0), hh(x, 1), hh(x, 2), identity(T), {
        heads: HEADS,
        headDim: D,
        masks: full,
        groups: 1,
        group: 0,
        rows,
      });
      const note = check(
        name,
        await readTensor(rt, out),
        ref,
        rows,
        HEADS * D,
        dt === "f16" ? 2e-3 : 1e-5,
      );
      const ceiling = onGpu && dt === "f16" ? `; ceiling ${F16_CEILING} TFLOP/s f16 FMA` : "";
      return {
        device: rt.device,
        run: record,
        value2: (ms) => rate(flops, ms),
        note: `B=1 H=${HEADS}; ${note}${ceiling}`,
        dispose: () => out.release(),
      };
    },
  };
}

function identity(T: number): Uint32Array {
  const p = new Uint32Array(HEADS * T);
  for (let h = 0; h < HEADS; h++) for (let t = 0; t < T; t++) p[h * T + t] = t;
  return p;
}

function paroCase(
  T: number,
  D: number,
  density: number,
  bits: 8 | 4 | 16,
  o: { kernelOnly?: boolean; tuning?: AttnSparseTuning; name?: string } = {},
): BenchCase {
  const tag = bits === 16 ? "f16" : `int${bits}`;
  const tune = o.tuning?.threads ? `_wg${o.tuning.threads}x${o.tuning.rowsPerThread}` : "";
  const name = o.name ??
    `attn_paro_d${Math.round(density * 100)}_${tag}_${T}_d${D}${
      o.kernelOnly ? "_kernel" : ""
    }${tune}`;
  const dt: Float = rt.info.f16 ? "f16" : "f32";
  const denseName = `attn_dense_${dt}_${T}_d${D}`;
  return {
    name,
    unit: "ms",
    unit2: "× dense",
    setup: async () => {
      const x = inputs(T, D, dt);
      const p = planFor(x.h, x.w, density);
      const common = { heads: HEADS, perm: p.permT, masks: p.masksT, bits, tuning: o.tuning };
      // Kernel-only rows quantize once here; the others time quantize + kernel.
      let qq: QuantizedQkv | undefined;
      if (o.kernelOnly && bits !== 16) {
        const rec = new Recorder(rt);
        qq = quantizeQkv(rec, x.gpu[0], x.gpu[1], x.gpu[2], { ...common, bits });
        await rec.submit();
      }
      let out: Tensor | undefined;
      const record = (reps: number) => {
        const rec = new Recorder(rt);
        for (let i = 0; i < reps; i++) {
          out = qq
            ? attnSparseQuantized(rec, qq, { ...common, out })
            : attnSparse(rec, x.gpu[0], x.gpu[1], x.gpu[2], { ...common, out });
        }
        return rec.submit();
      };
      await record(1);
      const rows = sampleRows(T);
      const ro = { heads: HEADS, headDim: D, masks: p.masks, groups: 1, group: 0, rows };
      let ref: Float32Array;
      let tol: number;
      let rare: { tol: number; share: number } | undefined;
      if (bits === 16) {
        ref = attnSparseFloatRef(hh(x, 0), hh(x, 1), hh(x, 2), p.perm, ro);
        tol = dt === "f16" ? 2e-3 : 1e-5;
      } else {
        const qo = { heads: HEADS, headDim: D, bits };
        const mean = kMeanRef(hh(x, 1), HEADS, D);
        const ops = {
          q: quantizeBlocksRef(hh(x, 0), p.perm, qo),
          k: quantizeBlocksRef(hh(x, 1), p.perm, { ...qo, mean }),
          v: quantizeBlocksRef(hh(x, 2), p.perm, qo),
        };
        ref = attnSparseQuantRef(ops, p.perm, { ...ro, batch: 1, tokens: T, bits });
        // A P code may round the other way on the GPU (exp2): ≤ max|v|/qp per flip, where qp
        // is P's top code (127 for INT8, 7 for INT4's per-block codes); flips are rare, so
        // beyond INT8's bound only 1 % of the entries may lie.
        const f16 = dt === "f16" ? 2e-3 : 0;
        tol = 4.5 / (bits === 4 ? 7 : 127) + f16;
        rare = { tol: 4.5 / 127 + f16, share: 0.01 };
      }
      const note = check(name, await readTensor(rt, out!), ref, rows, HEADS * D, tol, rare);
      return {
        device: rt.device,
        run: record,
        // No ratio without the dense row of this shape in this run (filtered out, failed).
        value2: (ms) => {
          const d = denseMs.get(denseName)?.();
          return d && Number.isFinite(d) ? d / ms : undefined;
        },
        note: `mask density ${p.density.toFixed(3)} (head 0); ${note}`,
        dispose: () => {
          qq?.release();
          out?.release();
        },
      };
    },
  };
}

/**
 * PARO's prep alone (`quantizeQkv`: K mean + quantize-to-blocks of q, k, v with the
 * reordering), the part of a full PARO row that its `_kernel` row leaves out; checked
 * before timing: K mean against the reference, q/k/v codes bit for bit (on the GPU's inv).
 */
function paroPrepCase(T: number, D: number, bits: 8 | 4): BenchCase {
  const name = `attn_paro_prep_int${bits}_${T}_d${D}`;
  const dt: Float = rt.info.f16 ? "f16" : "f32";
  return {
    name,
    unit: "ms",
    setup: async () => {
      const x = inputs(T, D, dt);
      const p = planFor(x.h, x.w, 0.3);
      const o = { heads: HEADS, perm: p.permT, bits };
      const record = (reps: number) => {
        const rec = new Recorder(rt);
        // Released once recorded: the pool hands the buffers to the next rep in queue order.
        for (let i = 0; i < reps; i++) quantizeQkv(rec, x.gpu[0], x.gpu[1], x.gpu[2], o).release();
        return rec.submit();
      };
      const rec = new Recorder(rt);
      const qq = quantizeQkv(rec, x.gpu[0], x.gpu[1], x.gpu[2], o);
      await rec.submit();
      const mean = await readTensor(rt, qq.kmean);
      const ref = kMeanRef(hh(x, 1), HEADS, D);
      let maxMean = 0;
      for (let i = 0; i < ref.length; i++) maxMean = Math.max(maxMean, Math.abs(mean[i] - ref[i]));
      if (!(maxMean <= 1e-5)) throw new Error(`${name}: K mean off by ${maxMean}`);
      const nbh = HEADS * p.nb;
      const sc = await readTensor(rt, qq.scales);
      const words = [qq.q, qq.k, qq.v].map((t) => readTensorRaw(rt, t));
      for (let i = 0; i < 3; i++) {
        const inv = Float32Array.from({ length: nbh }, (_, j) => sc[(i * nbh + j) * 2 + 1]);
        const r = quantizeBlocksRef(hh(x, i), p.perm, {
          heads: HEADS,
          headDim: D,
          bits,
          mean: i === 1 ? mean : undefined,
          inv,
        });
        const u = (await words[i]) as Uint32Array;
        const got = new Int8Array(u.buffer, u.byteOffset, u.length * 4);
        const DP = r.codes.length / (nbh * 64);
        for (let j = 0; j < r.codes.length; j++) {
          // V codes are channel-major per block: [bh, block, d, 64 positions].
          const row = Math.floor(j / DP);
          const d = j % DP;
          const g = i < 2
            ? got[j]
            : d < D
            ? got[((Math.floor(row / 64) * D) + d) * 64 + row % 64]
            : 0;
          if (g !== r.codes[j]) {
            throw new Error(`${name}: ${"qkv"[i]} code ${j}: ${g} ≠ ${r.codes[j]}`);
          }
        }
      }
      qq.release();
      return {
        device: rt.device,
        run: record,
        note: `B=1 H=${HEADS}, ${dt}; K mean max |err| ${maxMean.toExponential(2)}, codes exact`,
      };
    },
  };
}

const suite = new BenchSuite({
  what: "attention",
  denoIterations: 2,
  describe: () =>
    Promise.resolve({
      device: rt.info.description,
      slug: deviceSlug(rt.info.description, rt.info.fallback),
      extra: {
        vendor: rt.info.vendor,
        architecture: rt.info.architecture,
        fallback: rt.info.fallback,
        f16: rt.info.f16,
        packed_dot: rt.info.packedDot,
        heads: HEADS,
        batch: 1,
      },
    }),
});

/** Adds a dense case and makes its median visible to the PARO rows' speed-up. */
function addDense(T: number, D: number, dt: Float, tuning?: AttentionTuning): void {
  const c = denseCase(T, D, dt, tuning);
  suite.add(c);
  denseMs.set(c.name, () => suite.lastResults.find((r) => r.name === c.name)?.median_ms);
}

const dt: Float = rt.info.f16 ? "f16" : "f32";
const sizes = onGpu ? [4096, 1024] : [1024];
for (const T of sizes) {
  addDense(T, 64, dt);
  if (T === 4096) {
    addDense(T, 72, dt);
    // The tiled kernel without fetching the next block ahead (before 2026-11-29's prefetch).
    addDense(T, 72, dt, { kernel: "tiled", prefetch: false });
    // The one-row-per-thread kernel GPUs used before the tiled one, and f32 (the f32 step's).
    addDense(T, 72, dt, { kernel: "rows" });
    addDense(T, 72, "f32");
    // FLUX's (and SD3's) head dim: the default (the chunked kernel on 48 KiB GPUs) and the
    // tiled kernel's 32-thread shape it replaced there.
    addDense(T, 128, dt);
    addDense(T, 128, "f32");
    addDense(T, 128, dt, { kernel: "tiled" });
  }
  for (const density of [0.5, 0.3, 0.2]) {
    for (const bits of [8, 4] as const) suite.add(paroCase(T, 64, density, bits));
  }
  suite.add(paroCase(T, 64, 0.3, 16));
  suite.add(paroCase(T, 64, 0.3, 8, { kernelOnly: true }));
  suite.add(paroPrepCase(T, 64, 8));
  if (T === sizes[0]) {
    // The one-row-per-thread integer kernel GPUs used before the tiled one (issue #7's
    // before/after in one run), and the PixArt-α head dim.
    suite.add(paroCase(T, 64, 0.3, 8, {
      tuning: { kernel: "rows" },
      name: `attn_paro_rows_d30_int8_${T}_d64`,
    }));
    suite.add(paroCase(T, 72, 0.3, 8));
  }
}
if (!onGpu) {
  addDense(1024, 64, "f32");
  addDense(1024, 72, dt); // PixArt-α's head dim (the tiled sweep's shapes beside it)
  // The row kernel, the CPU adapter's default at head dim 64 before 2026-11-29 (now the tiled
  // kernel with 4 row groups a thread: attention_kernel.ts's cpuTiledShape).
  addDense(1024, 64, dt, { kernel: "rows" });
  // The CPU adapter's launch before 2026-11-28 (4 query rows a thread instead of 8).
  addDense(1024, 64, "f32", { kernel: "rows", rowsPerThread: 4 });
}
// WEBDIT_ATTN_TILED_SWEEP=1, WEBDIT_ATTN_CHUNKED_SWEEP=1: the dense kernels' launch shapes.
const sweepDt: Float = Deno.env.get("WEBDIT_ATTN_SWEEP_DTYPE") === "f32" ? "f32" : dt;
const sweeps = denseSweeps(
  {
    tiled: Deno.env.get("WEBDIT_ATTN_TILED_SWEEP") === "1",
    chunked: Deno.env.get("WEBDIT_ATTN_CHUNKED_SWEEP") === "1",
    half: sweepDt === "f16",
  },
  rt.info.limits.maxComputeWorkgroupStorageSize ?? 16384,
  rt.info.limits.maxComputeInvocationsPerWorkgroup ?? 256,
);
for (const c of sweeps) addDense(sizes[0], c.headDim, sweepDt, c.tuning);
// WEBDIT_ATTN_SWEEP=1: launch shapes of the INT8 kernel at 0.3 (threads × rows per thread).
if (Deno.env.get("WEBDIT_ATTN_SWEEP") === "1") {
  for (const [threads, rowsPerThread] of [[32, 1], [64, 1], [16, 2], [32, 2], [16, 4]]) {
    suite.add(
      paroCase(sizes[0], 64, 0.3, 8, {
        kernelOnly: true,
        tuning: { kernel: "rows", threads, rowsPerThread },
      }),
    );
  }
}

suite.register();
