/**
 * Dense flash attention: softmax(scale·q·kᵀ + mask)·v per (batch, head), with an online
 * softmax in f32 that never materialises the Tq×Tk scores.
 *
 * Operands are [B, T, W] tensors read as `heads` heads of `headDim` starting at a column,
 * so the q/k/v projections' outputs, a fused qkv [B, T, 3·H·D] ({@linkcode splitQkv}) and
 * k/v shared across the batch (B = 1) are all read without a copy.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { composeWgsl, expandMarkers, type StorageType } from "../gpu/compose.ts";
import { type KernelSpec, Recorder } from "../gpu/kernel.ts";
import { createTensor, readTensor, Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { attentionRef } from "../reference/attention.ts";
import { maxError, type SelfCheckResult } from "./selfcheck.ts";
import { attentionTiledSpec, type TiledShape } from "./attention_tiled.ts";
import { ATTENTION_UNIFORM, type AttentionLaunch, type Layout } from "./attention_launch.ts";
import { attentionChunkedSpec, type ChunkedShape } from "./attention_chunked.ts";
import { chooseKernel } from "./attention_kernel.ts";
import src from "../../wgsl/attention.wgsl" with { type: "text" };
import ioSrc from "../../wgsl/attention_io.wgsl" with { type: "text" };
import ldScalar from "../../wgsl/attention_ld_scalar.wgsl" with { type: "text" };
import stepSrc from "../../wgsl/attention_rows_step.wgsl" with { type: "text" };

/** A [B, T, W] tensor read as heads starting at column `column` of each row. */
export interface HeadsView {
  /** The tensor, shape [B, T, W] (B may be 1 for k/v shared across the batch). */
  tensor: Tensor;
  /** Column of head 0's first element; default 0. */
  column?: number;
  /** Columns spanned by the heads (H·D), used to infer D; default W − column. */
  width?: number;
}

/** An attention operand: a [B, T, H·D] tensor, or a view of a wider one. */
export type AttentionInput = Tensor | HeadsView;

/** Options of {@linkcode attention}. */
export interface AttentionOptions {
  /** Number of heads H. */
  heads: number;
  /** Head dim D (≤ 128); default q's width / heads (q a plain tensor). */
  headDim?: number;
  /** Score scale; default 1/√D. */
  scale?: number;
  /**
   * Key mask [B or 1, Tk] of q's dtype: nonzero keeps a key, 0 masks it (padded text
   * tokens).
   */
  mask?: Tensor;
  /**
   * How masked keys are treated. "bias" (default) is diffusers' PixArt: −10000 added to
   * masked scores, i.e. masked keys get probability 0 unless every key of the batch is
   * masked, in which case the mask changes nothing (computed exactly, without the f32
   * rounding of scores near −10000). "drop": masked keys get probability 0 and a row
   * whose keys are all masked gives zeros.
   */
  maskMode?: "bias" | "drop";
  /** Where to write [B, Tq, H·D]; default a new tensor. */
  out?: Tensor;
  /**
   * Kernel tuning (benchmarks, ablations): threads per workgroup, query rows per thread
   * (1..8) and keys per block (a multiple of 8, ≤ 64). Defaults depend on the adapter.
   */
  tuning?: AttentionTuning;
}

/** The dense attention kernels ({@linkcode AttentionTuning.kernel}). */
export type AttentionKernel = "rows" | "tiled" | "chunked";

/** Launch shape of the attention kernel. */
export interface AttentionTuning {
  /**
   * "tiled" (wgsl/attention_tiled.wgsl, register-tiled; default on GPUs where the head dim
   * is a multiple of 4 and it fits workgroup memory), "chunked" (the same tiles with k and
   * v staged in head-dim chunks, wgsl/attention_chunked.wgsl) or "rows" (one query row per
   * thread; default on CPU adapters, but for head dim 64: attention_kernel.ts's
   * `cpuTiledShape`). `threads`, `rowsPerThread`, `keys` and `dynamicHeadDim` tune "rows"
   * only (and keep it on CPU adapters).
   */
  kernel?: AttentionKernel;
  /**
   * The tiled kernel's launch shape (tests, sweeps); default {@linkcode tiledShape}'s pick,
   * which on GPUs stages f16 operands as f16 (`half`). A given shape runs as given: without
   * `half: true` f16 operands are staged as f32.
   */
  tiled?: TiledShape;
  /** The chunked kernel's launch shape (needed with kernel "chunked"). */
  chunked?: ChunkedShape;
  /**
   * The tiled kernel fetches the next key block while it multiplies this one (default);
   * false stages every block directly, as before 2026-11-29 (benchmarks).
   */
  prefetch?: boolean;
  /** Threads per workgroup. */
  threads?: number;
  /** Query rows per thread (1..8; default 8 on CPU adapters, 1 on GPUs). */
  rowsPerThread?: number;
  /** Keys per block staged in workgroup memory (multiple of 8, ≤ 64). */
  keys?: number;
  /**
   * Read the head dim from the params at run time instead of compiling it in: one
   * pipeline serves every head dim (CPU adapters, where compiling takes seconds and the
   * head-dim loops are not unrolled anyway). Default: true on CPU adapters only.
   */
  dynamicHeadDim?: boolean;
}

/** The row kernel's launch: the shared sizes and layouts plus its tuning. */
interface Params extends AttentionLaunch {
  storage: StorageType;
  dyn: boolean;
  bk: number;
  wg: number;
  rpt: number;
}

const specs = new Map<string, KernelSpec<Params>>();

/** The rows kernel's private arrays hold RMAX query rows: 4 (GPUs), or 8 for more a thread. */
const RMAX_LINE = "const RMAX: u32 = 4u;";
if (!src.includes(RMAX_LINE)) throw new Error(`wgsl/attention.wgsl: no "${RMAX_LINE}"`);

/**
 * The attention kernel spec for a storage type; `rmax` 8 sizes the private arrays for up
 * to 8 query rows a thread (CPU adapters), 4 (default) keeps GPUs' registers as they were.
 */
export function attentionSpec(storage: StorageType, rmax: 4 | 8 = 4): KernelSpec<Params> {
  const key = `${storage}_${rmax}`;
  let spec = specs.get(key);
  if (!spec) {
    const kernel = expandMarkers(
      src.replace(RMAX_LINE, `const RMAX: u32 = ${rmax}u;`),
      { rows_step8: stepSrc.trimEnd().split("\n") },
      "attention.wgsl",
    );
    const c = composeWgsl(kernel, { storage, libs: [ioSrc, ldScalar] });
    spec = {
      name: rmax === 4 ? `attention_${storage}` : `attention_${storage}_r${rmax}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read", "read", "read", "read_write"],
      constants: (p) => ({
        HD: p.dyn ? 0 : p.hd,
        D4S: p.dyn ? 32 : Math.ceil(p.hd / 4),
        BK: p.bk,
        WG: p.wg,
        RPT: p.rpt,
      }),
      uniform: ATTENTION_UNIFORM,
      dispatch: (p) => [Math.ceil(p.tq / (p.wg * p.rpt)), p.h, p.b],
    };
    specs.set(key, spec);
  }
  return spec;
}

/** Views of a fused qkv [B, T, 3·H·D] tensor as q, k and v (columns 0, H·D, 2·H·D). */
export function splitQkv(qkv: Tensor): [HeadsView, HeadsView, HeadsView] {
  if (qkv.shape.length !== 3 || qkv.shape[2] % 3 !== 0) {
    throw new RangeError(`splitQkv: qkv must be [B, T, 3·H·D], got [${qkv.shape}]`);
  }
  const width = qkv.shape[2] / 3;
  return [
    { tensor: qkv, width },
    { tensor: qkv, column: width, width },
    { tensor: qkv, column: 2 * width, width },
  ];
}

function view(x: AttentionInput): HeadsView {
  return x instanceof Tensor ? { tensor: x } : x;
}

/** Checks one operand and returns its [B, T, W] shape and column. */
function operand(name: string, x: HeadsView, width: number): { b: number; t: number; l: Layout } {
  const s = x.tensor.shape;
  if (s.length !== 3) throw new RangeError(`attention: ${name} must be [B, T, W], got [${s}]`);
  const col = x.column ?? 0;
  if (!Number.isInteger(col) || col < 0 || col + width > s[2]) {
    throw new RangeError(
      `attention: ${name} columns ${col}..${col + width} do not fit its width ${s[2]}`,
    );
  }
  if (s[1] < 1) throw new RangeError(`attention: ${name} has no tokens`);
  return { b: s[0], t: s[1], l: { off: col, row: s[2], batch: s[1] * s[2] } };
}

function nextPow2(n: number): number {
  return 2 ** Math.ceil(Math.log2(Math.max(1, n)));
}

/**
 * Records softmax(scale·q·kᵀ + mask)·v for q [B, Tq, ·], k/v [B or 1, Tk, ·] and returns
 * out [B, Tq, H·D] (storage f32 or f16 as q; f32 math and softmax statistics).
 */
export function attention(
  rec: Recorder,
  q: AttentionInput,
  k: AttentionInput,
  v: AttentionInput,
  opts: AttentionOptions,
): Tensor {
  const qv = view(q);
  const kv = view(k);
  const vv = view(v);
  const H = opts.heads;
  if (!Number.isInteger(H) || H < 1) {
    throw new RangeError(`attention: heads must be a positive integer, got ${H}`);
  }
  const D = opts.headDim ?? (qv.width ?? qv.tensor.shape[2] - (qv.column ?? 0)) / H;
  if (!Number.isInteger(D) || D < 1 || D > 128) {
    throw new RangeError(`attention: headDim must be an integer in 1..128, got ${D}`);
  }
  const dtype = qv.tensor.dtype;
  if (dtype !== "f32" && dtype !== "f16") {
    throw new TypeError(`attention: q must be f32 or f16, got ${dtype}`);
  }
  for (const [n, t] of [["k", kv.tensor], ["v", vv.tensor], ["mask", opts.mask]] as const) {
    if (t && t.dtype !== dtype) {
      throw new TypeError(`attention: q is ${dtype} but ${n} is ${t.dtype}`);
    }
  }
  const Q = operand("q", qv, H * D);
  const K = operand("k", kv, H * D);
  const V = operand("v", vv, H * D);
  const B = Q.b;
  for (const [n, x] of [["k", K], ["v", V]] as const) {
    if (x.b !== B && x.b !== 1) {
      throw new RangeError(`attention: ${n} batch ${x.b} is neither q's ${B} nor 1`);
    }
    if (x.b === 1) x.l.batch = 0; // shared across the batch
  }
  if (K.t !== V.t || K.b !== V.b) {
    throw new RangeError(`attention: k has ${K.b}×${K.t} tokens but v has ${V.b}×${V.t}`);
  }
  const Tq = Q.t;
  const Tk = K.t;
  let maskMode = 0;
  let maskBatch = 0;
  if (opts.mask) {
    const ms = opts.mask.shape;
    if (ms.length !== 2 || ms[1] !== Tk || (ms[0] !== B && ms[0] !== 1)) {
      throw new RangeError(`attention: mask must be [${B} or 1, ${Tk}], got [${ms}]`);
    }
    maskBatch = ms[0] === 1 ? 0 : Tk;
    const mode = opts.maskMode ?? "bias";
    if (mode !== "bias" && mode !== "drop") {
      throw new TypeError(
        `attention: maskMode must be "bias" or "drop", got ${JSON.stringify(mode)}`,
      );
    }
    maskMode = mode === "bias" ? 1 : 2;
  }
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  if (!Number.isFinite(scale)) {
    throw new RangeError(`attention: scale must be finite, got ${scale}`);
  }
  const out = opts.out ?? createTensor(rec.runtime, [B, Tq, H * D], dtype);
  if (out.size !== B * Tq * H * D || out.dtype !== dtype) {
    throw new RangeError(`attention: out must be [${B}, ${Tq}, ${H * D}] ${dtype}`);
  }
  for (const t of [qv.tensor, kv.tensor, vv.tensor, opts.mask]) {
    if (t && t.buffer === out.buffer) {
      throw new RangeError("attention: out must not share a buffer with q, k, v or mask");
    }
  }
  const t = opts.tuning ?? {};
  const cpu = rec.runtime.info.fallback;
  const limit = rec.runtime.info.limits.maxComputeWorkgroupStorageSize ?? 16384;
  const choice = chooseKernel(D, t, {
    memory: limit,
    threads: rec.runtime.info.limits.maxComputeInvocationsPerWorkgroup ?? 256,
    cpu,
    f16: dtype === "f16",
  });
  const launch: AttentionLaunch = {
    b: B,
    h: H,
    hd: D,
    tq: Tq,
    tk: Tk,
    maskMode,
    maskBatch,
    q: Q.l,
    k: K.l,
    v: V.l,
    oRow: H * D,
    oBatch: Tq * H * D,
    scaleLog2: scale * Math.LOG2E,
  };
  const bufs = [qv.tensor, kv.tensor, vv.tensor, opts.mask ?? qv.tensor, out];
  // Whole-vec4 operand access where every offset and stride allows it (one load for four).
  const vec4 = [Q.l, K.l, V.l].every((l) =>
    l.off % 4 === 0 && l.row % 4 === 0 && l.batch % 4 === 0
  );
  if (choice.kernel === "chunked") {
    const { shape } = choice;
    const spec = attentionChunkedSpec(dtype, D, shape, vec4);
    rec.dispatch(spec, { ...launch, shape }, bufs);
    return out;
  }
  if (choice.kernel === "tiled") {
    const spec = attentionTiledSpec(dtype, D, choice.shape, vec4, t.prefetch ?? true);
    rec.dispatch(spec, { ...launch, shape: choice.shape }, bufs);
    return out;
  }
  // CPU adapters pay tens of cycles per lane for every workgroup load, and private
  // arrays cost no registers there: 8 rows per thread share each K/V load (lavapipe, the
  // bundled model's 1024 tokens: 90 ms a call against 109 at 4).
  const rpt = t.rowsPerThread ?? (cpu ? 8 : 1);
  const wg = t.threads ?? (cpu ? 16 : 64);
  if (!Number.isInteger(rpt) || rpt < 1 || rpt > 8) {
    throw new RangeError(`attention: tuning.rowsPerThread must be 1..8, got ${rpt}`);
  }
  if (!Number.isInteger(wg) || wg < 1 || wg > 256) {
    throw new RangeError(`attention: tuning.threads must be 1..256, got ${wg}`);
  }
  const keys = t.keys ?? 64;
  if (!Number.isInteger(keys) || keys % 8 !== 0 || keys < 8 || keys > 64) {
    throw new RangeError(`attention: tuning.keys must be a multiple of 8 up to 64, got ${keys}`);
  }
  // Keys per block: no more than Tk needs, K+V blocks within workgroup memory.
  const dyn = t.dynamicHeadDim ?? cpu;
  const d4 = dyn ? 32 : Math.ceil(D / 4);
  // A run-time head dim keeps one pipeline for every shape: then Tk does not pick BK.
  let bk = dyn ? keys : Math.min(keys, Math.max(8, nextPow2(Tk)));
  while (bk > 8 && 2 * bk * d4 * 16 + bk * 4 > limit) bk -= 8;
  const spec = attentionSpec(dtype, rpt > 4 ? 8 : 4);
  rec.dispatch(spec, { ...launch, storage: dtype, dyn, bk, wg, rpt }, bufs);
  return out;
}

/**
 * Self-check for doctor: masked cross-attention at odd shapes against the reference, at
 * PixArt's head dim 72 and FLUX's 128 (on GPUs the tiled and the chunked kernel), and in f16
 * storage where the adapter has shader-f16 (on GPUs staged as f16).
 */
export async function attentionSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const results: SelfCheckResult[] = [];
  const cases = [
    [72, "f32", "attention_f32"],
    [128, "f32", "attention_f32_d128"],
    [72, "f16", "attention_f16"],
    [128, "f16", "attention_f16_d128"],
  ] as const;
  for (const [D, dtype, name] of cases) {
    if (dtype === "f16" && !rt.info.f16) {
      results.push({ name, ok: true, maxError: 0, tolerance: 0, note: "skipped: no shader-f16" });
      continue;
    }
    const [Tq, Tk] = [20, 45];
    const g = new Prng(24);
    // f16 data is rounded before the reference sees it, as the upload rounds it.
    const r = (a: Float32Array) => dtype === "f16" ? Float32Array.from(Float16Array.from(a)) : a;
    const qs = r(g.normals(Tq * D));
    const ks = r(g.normals(Tk * D));
    const vs = r(g.normals(Tk * D));
    const ms = Float32Array.from({ length: Tk }, (_, j) => (j < 30 ? 1 : 0));
    const mask = uploadTensor(rt, ms, [1, Tk], dtype);
    const ins = [[qs, Tq], [ks, Tk], [vs, Tk]] as const;
    const [q, k, v] = ins.map(([x, t]) => uploadTensor(rt, x, [1, t, D], dtype));
    const rec = new Recorder(rt);
    const o = attention(rec, q, k, v, { heads: 1, mask });
    await rec.submit();
    const hh = (data: Float32Array, tokens: number) => ({ data, batch: 1, tokens, width: D });
    const ref = attentionRef(hh(qs, Tq), hh(ks, Tk), hh(vs, Tk), {
      heads: 1,
      headDim: D,
      mask: ms,
    });
    const err = maxError(await readTensor(rt, o), ref);
    for (const t of [q, k, v, mask, o]) t.release();
    // f16: outputs (|o| < 4) rounded to f16, and P staged as f16 on GPUs.
    const tolerance = dtype === "f32" ? 1e-5 : 1e-2;
    results.push({ name, ok: err <= tolerance, maxError: err, tolerance });
  }
  return results;
}
