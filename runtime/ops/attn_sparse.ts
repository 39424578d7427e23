/**
 * PAROAttention kernels: block-sparse self-attention over per-head reordered tokens,
 * with Q/K/V/P in INT8 or INT4 (dot4I8Packed, f32 softmax statistics) or in float.
 *
 * The reordering is never a separate pass: the quantize-to-blocks kernel reads q/k/v in
 * raster order and writes each head's codes in its own order (the float kernel gathers
 * rows through the permutation as it stages them), and the attention kernels write each
 * output row to its raster token, so the output projection reads the result as is.
 * Masks are bitsets [H, G, nb, ⌈nb/32⌉] over 64-position blocks; a kernel walks the set
 * bits of its query block's row, so a masked key block costs nothing.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import type { StorageType } from "../gpu/compose.ts";
import { Recorder } from "../gpu/kernel.ts";
import { createTensor, readTensor, Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import type { AttentionInput, HeadsView } from "./attention.ts";
import { maxError, type SelfCheckResult } from "./selfcheck.ts";
import { BLOCK, blocksOf, maskWords } from "../quant/paro_plan.ts";
import {
  attnSparseFloatRef,
  attnSparseQuantRef,
  kMeanRef,
  paddedHeadDim,
  quantizeBlocksRef,
} from "../reference/attn_sparse.ts";
import {
  type BlockLaunch,
  kmeanChunks,
  kmeanSpec,
  type Layout,
  quantSpec,
  sparseFSpec,
  sparseSpec,
} from "./attn_sparse_kernels.ts";
import { sparseTiledBytes, sparseTiledFits, sparseTiledSpec } from "./attn_sparse_tiled.ts";

/** Bits of a sparse attention: INT8, INT4 or 16 (float, sparsity only). */
export type SparseBits = 8 | 4 | 16;

/** Launch shape of the sparse kernels (benchmarks, tests). */
export interface AttnSparseTuning {
  /**
   * Integer kernel: "rows" (wgsl/attn_sparse.wgsl, WG threads × RPT query rows each) or
   * "tiled" (wgsl/attn_sparse_tiled.wgsl, 256 threads as a 16 × 16 grid of 4×4 score tiles;
   * default on GPUs where the head dim fits its workgroup memory). `threads`,
   * `rowsPerThread` and `dynamicHeadDim` shape the rows kernel only.
   */
  kernel?: "rows" | "tiled";
  /** Threads per workgroup. */
  threads?: number;
  /** Query rows per thread (1..4); threads·rows must divide 64. */
  rowsPerThread?: number;
  /** Float kernel: keys staged per sub-block (8, 16, 32 or 64); default the most that fit. */
  keys?: number;
  /** Integer kernels: emulate dot4I8Packed with shifts and multiplies (default: only without it). */
  emulateDot4?: boolean;
  /**
   * Read the head dim (and the integer kernel's key count) from the params instead of
   * compiling them in: one pipeline for every head dim, no unrolling. Default: on CPU
   * adapters only (where compiling an unrolled pipeline takes 10+ s).
   */
  dynamicHeadDim?: boolean;
}

/** Options of {@linkcode quantizeQkv}. */
export interface QuantizeQkvOptions {
  /** Heads H. */
  heads: number;
  /** Head dim D (a multiple of 4, ≤ 128); default q's width / heads. */
  headDim?: number;
  /** Per-head order [H, T] u32: perm[h, i] = raster token at position i. */
  perm: Tensor;
  /** 8 or 4. */
  bits: 8 | 4;
}

/** Q/K/V as per-block codes in each head's order (layouts: runtime/reference/attn_sparse.ts). */
export interface QuantizedQkv {
  /** Q codes u32 [B, H, nb·64, DP/4]. */
  q: Tensor;
  /** K codes (mean-subtracted) u32 [B, H, nb·64, DP/4]. */
  k: Tensor;
  /** V codes transposed per block u32 [B, H, nb, D, 16]. */
  v: Tensor;
  /** (scale, inv) per block: f32 [3, B, H, nb, 2] for q, k, v. */
  scales: Tensor;
  /** K's mean over tokens f32 [B, H, D]. */
  kmean: Tensor;
  /** Batch size B. */
  batch: number;
  /** Heads H. */
  heads: number;
  /** Head dim D. */
  headDim: number;
  /** Tokens T. */
  tokens: number;
  /** Bits of the codes. */
  bits: 8 | 4;
  /** The output storage type (q's). */
  dtype: StorageType;
  /** Frees the tensors. */
  release(): void;
}

/** Options of {@linkcode attnSparse}. */
export interface AttnSparseOptions {
  /** Heads H. */
  heads: number;
  /** Head dim D (a multiple of 4, ≤ 128); default q's width / heads. */
  headDim?: number;
  /** Score scale; default 1/√D. */
  scale?: number;
  /** Per-head order [H, T] u32. */
  perm: Tensor;
  /** Mask bitsets u32 [H, G, nb, ⌈nb/32⌉]. */
  masks: Tensor;
  /** Mask group G index; default 0. */
  group?: number;
  /** 8, 4 or 16 (float). */
  bits: SparseBits;
  /** INT8 P scale: "fixed" 1/127 (default) or per block (INT4 always per block). */
  pScale?: "fixed" | "block";
  /** Where to write [B, T, H·D] (q's dtype); default a new tensor. */
  out?: Tensor;
  /** Kernel launch shape. */
  tuning?: AttnSparseTuning;
}

function asView(x: AttentionInput): HeadsView {
  return x instanceof Tensor ? { tensor: x } : x;
}

/** Checks q/k/v and returns their shapes and layouts. */
function operands(
  fn: string,
  qkv: readonly [AttentionInput, AttentionInput, AttentionInput],
  heads: number,
  headDim: number | undefined,
): { B: number; T: number; D: number; dtype: StorageType; views: HeadsView[]; l: Layout[] } {
  if (!Number.isInteger(heads) || heads < 1) {
    throw new RangeError(`${fn}: heads must be a positive integer, got ${heads}`);
  }
  const views = qkv.map(asView);
  const q0 = views[0];
  const D = headDim ?? (q0.width ?? q0.tensor.shape[2] - (q0.column ?? 0)) / heads;
  if (!Number.isInteger(D) || D < 4 || D > 128 || D % 4 !== 0) {
    throw new RangeError(`${fn}: headDim must be a multiple of 4 in 4..128, got ${D}`);
  }
  const dtype = q0.tensor.dtype;
  if (dtype !== "f32" && dtype !== "f16") {
    throw new TypeError(`${fn}: q must be f32 or f16, got ${dtype}`);
  }
  const names = ["q", "k", "v"];
  const l: Layout[] = [];
  let B = 0;
  let T = 0;
  views.forEach((x, i) => {
    const s = x.tensor.shape;
    if (s.length !== 3) throw new RangeError(`${fn}: ${names[i]} must be [B, T, W], got [${s}]`);
    if (x.tensor.dtype !== dtype) {
      throw new TypeError(`${fn}: q is ${dtype} but ${names[i]} is ${x.tensor.dtype}`);
    }
    const col = x.column ?? 0;
    if (!Number.isInteger(col) || col < 0 || col + heads * D > s[2]) {
      throw new RangeError(`${fn}: ${names[i]} columns ${col}..${col + heads * D} exceed ${s[2]}`);
    }
    if (i === 0) [B, T] = s;
    else if (s[0] !== B || s[1] !== T) {
      throw new RangeError(`${fn}: ${names[i]} is [${s}], q has ${B}×${T} tokens`);
    }
    l.push({ off: col, row: s[2], batch: s[1] * s[2] });
  });
  if (T < 1) throw new RangeError(`${fn}: q has no tokens`);
  return { B, T, D, dtype, views, l };
}

function checkPerm(fn: string, perm: Tensor, H: number, T: number): void {
  if (perm.dtype !== "u32" || perm.size !== H * T) {
    throw new RangeError(`${fn}: perm must be u32 [${H}, ${T}], got ${perm.dtype} [${perm.shape}]`);
  }
}

/**
 * Records K's mean and the quantize-to-blocks pass of q, k (mean subtracted) and v: each
 * head reordered by `perm`, one symmetric scale per block of 64 positions.
 */
export function quantizeQkv(
  rec: Recorder,
  q: AttentionInput,
  k: AttentionInput,
  v: AttentionInput,
  opts: QuantizeQkvOptions,
): QuantizedQkv {
  const fn = "quantizeQkv";
  const H = opts.heads;
  const { B, T, D, dtype, views, l } = operands(fn, [q, k, v], H, opts.headDim);
  if (opts.bits !== 8 && opts.bits !== 4) {
    throw new RangeError(`${fn}: bits must be 8 or 4, got ${opts.bits}`);
  }
  checkPerm(fn, opts.perm, H, T);
  const rt = rec.runtime;
  const nb = blocksOf(T);
  const dp4 = paddedHeadDim(D) / 4;
  const qc = createTensor(rt, [B, H, nb * BLOCK, dp4], "u32");
  const kc = createTensor(rt, [B, H, nb * BLOCK, dp4], "u32");
  const vc = createTensor(rt, [B, H, nb, D, 16], "u32");
  const scales = createTensor(rt, [3, B, H, nb, 2], "f32");
  const kmean = createTensor(rt, [B, H, D], "f32");
  // K's mean in two passes (chunk sums, then their sum in chunk order): T tokens spread
  // over ⌈T/64⌉·H·B workgroups instead of one per head.
  const part = createTensor(rt, [B, H, kmeanChunks(T), D], "f32");
  const km = { t: T, hd: D, h: H, b: B, l: l[1] };
  rec.dispatch(kmeanSpec(dtype, "partial"), km, [views[1].tensor, part, kmean]);
  rec.dispatch(kmeanSpec(dtype, "total"), km, [views[1].tensor, part, kmean]);
  part.release();
  const qmax = opts.bits === 8 ? 127 : 7;
  const outs = [qc, kc, vc];
  for (let i = 0; i < 3; i++) {
    rec.dispatch(
      quantSpec(dtype),
      {
        t: T,
        nb,
        h: H,
        b: B,
        hd: D,
        l: l[i],
        useMean: i === 1,
        sOff: i * B * H * nb * 2,
        transpose: i === 2,
        qmax,
      },
      [views[i].tensor, opts.perm, kmean, outs[i], scales],
    );
  }
  const all = [qc, kc, vc, scales, kmean];
  return {
    q: qc,
    k: kc,
    v: vc,
    scales,
    kmean,
    batch: B,
    heads: H,
    headDim: D,
    tokens: T,
    bits: opts.bits,
    dtype,
    release: () => all.forEach((t) => t.release()),
  };
}

/** Threads and rows per thread: CPU adapters share each staged load over 4 rows. */
function launchShape(fn: string, rt: Runtime, t: AttnSparseTuning): { wg: number; rpt: number } {
  const cpu = rt.info.fallback;
  const rpt = t.rowsPerThread ?? (cpu ? 4 : 1);
  const wg = t.threads ?? (cpu ? 16 : 64);
  if (!Number.isInteger(rpt) || rpt < 1 || rpt > 4) {
    throw new RangeError(`${fn}: tuning.rowsPerThread must be 1..4, got ${rpt}`);
  }
  if (!Number.isInteger(wg) || wg < 1 || BLOCK % (wg * rpt) !== 0) {
    throw new RangeError(`${fn}: tuning.threads × rowsPerThread must divide 64, got ${wg}×${rpt}`);
  }
  return { wg, rpt };
}

/** Checks the masks and group against [H, G, nb, mw]; returns G. */
function checkMasks(fn: string, masks: Tensor, H: number, nb: number, group: number): number {
  const mw = maskWords(nb);
  const s = masks.shape;
  if (masks.dtype !== "u32" || s.length !== 4 || s[0] !== H || s[2] !== nb || s[3] !== mw) {
    throw new RangeError(
      `${fn}: masks must be u32 [${H}, G, ${nb}, ${mw}], got ${masks.dtype} [${s}]`,
    );
  }
  if (!Number.isInteger(group) || group < 0 || group >= s[1]) {
    throw new RangeError(`${fn}: group must be in 0..${s[1] - 1}, got ${group}`);
  }
  return s[1];
}

function outputOf(
  fn: string,
  rec: Recorder,
  o: Tensor | undefined,
  shape: number[],
  dtype: StorageType,
) {
  const out = o ?? createTensor(rec.runtime, shape, dtype);
  if (out.size !== shape[0] * shape[1] * shape[2] || out.dtype !== dtype) {
    throw new RangeError(`${fn}: out must be [${shape}] ${dtype}`);
  }
  return out;
}

/**
 * Checks what both block-sparse kernels take from `opts` (masks and group, perm, scale) for
 * B × T tokens of H heads of D; their common launch fields.
 */
function blockLaunch(
  fn: string,
  opts: Pick<AttnSparseOptions, "masks" | "group" | "perm" | "scale">,
  [B, T, H, D]: [number, number, number, number],
): BlockLaunch {
  const nb = blocksOf(T);
  const group = opts.group ?? 0;
  const G = checkMasks(fn, opts.masks, H, nb, group);
  checkPerm(fn, opts.perm, H, T);
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale)) throw new RangeError(`${fn}: scale must be finite, got ${scale}`);
  const mw = maskWords(nb);
  const [mOff, mHead] = [group * nb * mw, G * nb * mw];
  return { t: T, nb, mw, h: H, b: B, hd: D, mOff, mHead, scaleLog2: scale * Math.LOG2E };
}

/** Records block-sparse attention on quantized operands → out [B, T, H·D] (raster order). */
export function attnSparseQuantized(
  rec: Recorder,
  qq: QuantizedQkv,
  opts: Omit<AttnSparseOptions, "heads" | "headDim" | "bits">,
): Tensor {
  const fn = "attnSparseQuantized";
  const { batch: B, heads: H, headDim: D, tokens: T } = qq;
  const base = blockLaunch(fn, opts, [B, T, H, D]);
  const rt = rec.runtime;
  const t = opts.tuning ?? {};
  const { wg, rpt } = launchShape(fn, rt, t);
  const limit = rt.info.limits.maxComputeWorkgroupStorageSize ?? 16384;
  const threads = rt.info.limits.maxComputeInvocationsPerWorkgroup ?? 256;
  if (t.kernel !== undefined && t.kernel !== "rows" && t.kernel !== "tiled") {
    throw new RangeError(`${fn}: tuning.kernel must be "rows" or "tiled", got ${t.kernel}`);
  }
  const fits = sparseTiledFits(D, limit, threads);
  if (t.kernel === "tiled" && !fits) {
    throw new RangeError(
      `${fn}: the tiled kernel needs ${sparseTiledBytes(D)} B of workgroup memory (${limit}) ` +
        `and 256 threads (${threads}) at head dim ${D}`,
    );
  }
  const tiled = fits && (t.kernel ?? (rt.info.fallback ? "rows" : "tiled")) === "tiled";
  const dyn = t.dynamicHeadDim ?? rt.info.fallback;
  const bytes = dyn ? (BLOCK * 32 + 128 * 16) * 4 : (BLOCK * paddedHeadDim(D) / 4 + D * 16) * 4;
  if (!tiled && bytes > limit) {
    throw new RangeError(`${fn}: head dim ${D} needs ${bytes} B of workgroup memory (${limit})`);
  }
  const out = outputOf(fn, rec, opts.out, [B, T, H * D], qq.dtype);
  const pblock = qq.bits === 4 || opts.pScale === "block";
  const emulate = t.emulateDot4 ?? !rt.info.packedDot;
  const bufs = [qq.q, qq.k, qq.v, qq.scales, opts.masks, opts.perm, out];
  const launch = { ...base, sStride: B * H * base.nb * 2, pblock, qp: qq.bits === 4 ? 7 : 127 };
  if (tiled) rec.dispatch(sparseTiledSpec(qq.dtype, D, emulate), launch, bufs);
  else rec.dispatch(sparseSpec(qq.dtype, emulate), { ...launch, wg, rpt, dyn }, bufs);
  return out;
}

/**
 * Records PARO self-attention of q/k/v [B, T, H·D] (raster order) → out [B, T, H·D]:
 * bits 8/4 quantize to blocks and run the integer kernel (the codes are freed after the
 * launch); bits 16 runs the float kernel on q/k/v directly.
 */
export function attnSparse(
  rec: Recorder,
  q: AttentionInput,
  k: AttentionInput,
  v: AttentionInput,
  opts: AttnSparseOptions,
): Tensor {
  const fn = "attnSparse";
  if (opts.bits === 8 || opts.bits === 4) {
    const qq = quantizeQkv(rec, q, k, v, {
      heads: opts.heads,
      headDim: opts.headDim,
      perm: opts.perm,
      bits: opts.bits,
    });
    const out = attnSparseQuantized(rec, qq, opts);
    qq.release();
    return out;
  }
  if (opts.bits !== 16) throw new RangeError(`${fn}: bits must be 8, 4 or 16, got ${opts.bits}`);
  const H = opts.heads;
  const { B, T, D, dtype, views, l } = operands(fn, [q, k, v], H, opts.headDim);
  const base = blockLaunch(fn, opts, [B, T, H, D]);
  const rt = rec.runtime;
  const t = opts.tuning ?? {};
  const { wg, rpt } = launchShape(fn, rt, t);
  const limit = rt.info.limits.maxComputeWorkgroupStorageSize ?? 16384;
  let bk = t.keys ?? 64;
  if (![8, 16, 32, 64].includes(bk)) {
    throw new RangeError(`${fn}: tuning.keys must be 8, 16, 32 or 64, got ${bk}`);
  }
  const dyn = t.dynamicHeadDim ?? rt.info.fallback;
  const width = dyn ? 128 : D; // staged floats per key
  while (bk > 8 && 2 * bk * width * 4 + bk * 4 > limit) bk /= 2;
  const out = outputOf(fn, rec, opts.out, [B, T, H * D], dtype);
  for (const x of views) {
    if (x.tensor.buffer === out.buffer) {
      throw new RangeError(`${fn}: out must not share a buffer with q, k or v`);
    }
  }
  rec.dispatch(sparseFSpec(dtype), { ...base, wg, rpt, bk, dyn, l }, [
    views[0].tensor,
    views[1].tensor,
    views[2].tensor,
    opts.masks,
    opts.perm,
    out,
  ]);
  return out;
}

/** Self-check for doctor: INT8 and float sparse attention at 100 tokens against the references. */
export async function attnSparseSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const [T, H, D] = [100, 1, 16];
  const g = new Prng(77);
  const xs = [g.normals(T * D), g.normals(T * D), g.normals(T * D)];
  const perm = new Uint32Array(T).map((_, i) => (i * 37) % T); // 37 is prime to 100
  const masks = new Uint32Array([0b01, 0b11]); // nb = 2: block row 0 keeps kb 0, row 1 both
  const pt = uploadTensor(rt, perm, [H, T], "u32");
  const mt = uploadTensor(rt, masks, [H, 1, 2, 1], "u32");
  const ts = xs.map((x) => uploadTensor(rt, x, [1, T, D]));
  const rec = new Recorder(rt);
  const o8 = attnSparse(rec, ts[0], ts[1], ts[2], { heads: H, perm: pt, masks: mt, bits: 8 });
  // The other integer kernel than the adapter's default (rows on GPUs, tiled on CPUs).
  const other = rt.info.fallback ? "tiled" : "rows";
  const o8b = attnSparse(rec, ts[0], ts[1], ts[2], {
    heads: H,
    perm: pt,
    masks: mt,
    bits: 8,
    tuning: { kernel: other },
  });
  const of = attnSparse(rec, ts[0], ts[1], ts[2], { heads: H, perm: pt, masks: mt, bits: 16 });
  await rec.submit();
  const hh = (data: Float32Array) => ({ data, batch: 1, tokens: T, width: D });
  const ro = { heads: H, headDim: D, masks, groups: 1, group: 0 };
  const refF = attnSparseFloatRef(hh(xs[0]), hh(xs[1]), hh(xs[2]), perm, ro);
  const mean = kMeanRef(hh(xs[1]), H, D);
  const qo = { heads: H, headDim: D, bits: 8 };
  const ops = {
    q: quantizeBlocksRef(hh(xs[0]), perm, qo),
    k: quantizeBlocksRef(hh(xs[1]), perm, { ...qo, mean }),
    v: quantizeBlocksRef(hh(xs[2]), perm, qo),
  };
  const ref8 = attnSparseQuantRef(ops, perm, { ...ro, batch: 1, tokens: T, bits: 8 });
  // INT8: the host's and the adapter's exp2 may round one P code differently, which moves
  // an output by up to max|v|/127 ≈ 0.03 here; otherwise they agree to ~1e-7.
  const e8 = maxError(await readTensor(rt, o8), ref8);
  const e8b = maxError(await readTensor(rt, o8b), ref8);
  const ef = maxError(await readTensor(rt, of), refF);
  return [
    { name: "attn_sparse_int8_f32", ok: e8 <= 2e-2, maxError: e8, tolerance: 2e-2 },
    { name: `attn_sparse_int8_${other}_f32`, ok: e8b <= 2e-2, maxError: e8b, tolerance: 2e-2 },
    { name: "attn_sparse_float_f32", ok: ef <= 1e-5, maxError: ef, tolerance: 1e-5 },
  ];
}
