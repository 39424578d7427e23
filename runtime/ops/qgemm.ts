/**
 * Quantized GEMMs with the GEMM epilogue (bias, activation, gated residual; see gemm.ts).
 * W [N, K] is a quantized weight (runtime/quant/pack.ts codes + parameters) uploaded by
 * {@linkcode uploadQWeight} (runtime/ops/qweight.ts). Two families, each in versions (llm.c
 * style), all checked against runtime/reference/qgemm.ts:
 *
 * - weight-only, A16 ({@linkcode qgemmA16}): X f32/f16, W decoded through its LUT (a row's
 *   or a group's; TLQ) or (q − z)·Δ per group (uniform), FMAs in f32.
 *   "fused": gemm_reg.wgsl's tiles with the decode in the W tile loads (GPUs, M > 64);
 *   "skinny": K split over lanes, 4 columns × MR rows a workgroup (GPUs, M ≤ 64: the
 *   weight read is the cost); "dequant": decode W once into a pooled dense buffer, then
 *   the dense GEMM (CPU adapters, where loads inside the inner loop are dear).
 * - integer ({@linkcode qgemmInt}, in qgemm_int.ts): per-token int8 activations
 *   (act_quant.ts) × int8 weights (an int8 LUT per row, or 8-bit codes directly),
 *   dot4I8Packed, i32 sums, Y = s_token·s_row·Σ. "tiled": gemm_reg's structure with int8 words (GPUs); "cpu": 4×4
 *   blocks from storage over weights decoded to int8 once per call (CPU adapters).
 *   `dot: "emulated"` replaces dot4I8Packed by unpack + multiply-add (adapters without
 *   packed_4x8_integer_dot_product; selectable for tests).
 *
 * TLQ weights uploaded compact (MODE 5/6: Δ±, z± per row, η) have their LUTs rebuilt in
 * workgroup memory by each workgroup for its rows (skinny, dequant, integer "cpu"; bit for
 * bit the host's tables), or per decoded weight with the hardware exp2 in "fused" (its main
 * is gemm_reg.wgsl's, shared with the dense GEMM; a few f32 ulps off the LUT). The integer
 * "tiled" version expands the int8 tables once per call into a transient MODE 2 table
 * (N·(1 + 2^b/4) words) and runs as MODE 2 (`tune.tables: "workgroup"` builds them per
 * workgroup instead, as the others do).
 *
 * Integer sums match the reference bit for bit (`raw: true` stores them); float outputs
 * match within f32 rounding of the epilogue.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { grid1d, type KernelSpec, type Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import { wordsPerRow } from "../quant/pack.ts";
import { gemm, gemmDefaultTune, gemmStagingLib, versionConstants } from "./gemm.ts";
import type { QWeightGpu } from "./qweight.ts";
import { checkTable, decLibs } from "./qgemm_tlq.ts";
import {
  checkNoAlias,
  epilogue,
  flagConstants,
  GEMM_BINDINGS,
  makeSpec,
  type QGemmEpilogue,
  type QParams,
  rowsOf,
} from "./qgemm_spec.ts";
export type { QGemmEpilogue } from "./qgemm_spec.ts";
export { type QWeightGpu, uploadQWeight, type UploadQWeightOptions } from "./qweight.ts";
export {
  defaultIntVersion,
  type DotImpl,
  expandIntTables,
  type IntTune,
  qgemmInt,
  type QGemmIntOptions,
  type QGemmIntVersion,
} from "./qgemm_int.ts";
import commonSrc from "../../wgsl/gemm_common.wgsl" with { type: "text" };
import regSrc from "../../wgsl/gemm_reg.wgsl" with { type: "text" };
import ioA16Src from "../../wgsl/qgemm_io_a16.wgsl" with { type: "text" };
import ioA16hSrc from "../../wgsl/qgemm_io_a16h.wgsl" with { type: "text" };
import skinnySrc from "../../wgsl/qgemm_skinny.wgsl" with { type: "text" };
import decodeSrc from "../../wgsl/qgemm_decode.wgsl" with { type: "text" };

/** Versions of the weight-only GEMM. */
export type QGemmA16Version = "fused" | "skinny" | "dequant";
/** Options of {@linkcode qgemmA16}. */
export interface QGemmA16Options extends QGemmEpilogue {
  /** Default: "dequant" on CPU adapters; on GPUs "skinny" for M ≤ 64, else "fused". */
  version?: QGemmA16Version;
}

/** Tile knobs of the skinny kernel (benchmarks and tuning). */
export interface SkinnyTune {
  /** Invocations along K; default 8. */
  kl?: number;
  /** Column groups of 4; default 16 (KL·CG ≤ 256). */
  cg?: number;
  /** Rows per workgroup, ≤ 16; default min(16, M). */
  mr?: number;
  /** Two k steps an iteration, their loads issued together; default true (H200 sweeps). */
  k2?: boolean;
}

/**
 * Padding of the skinny kernel's TLQ table rows (words): with a stride of 2^b + 2, the LUT
 * reads of a warp's four column groups fall in more memory banks (H200: 4 % faster).
 */
const SKINNY_TLQ_PAD = 2;

/** The default A16 version for M rows on `rt`. */
export function defaultA16Version(rt: Runtime, M: number): QGemmA16Version {
  if (rt.info.fallback) return "dequant";
  return M <= 64 ? "skinny" : "fused";
}

/**
 * Records Y = epilogue(X·Ŵᵀ) for activations x [M, K] (f32/f16) and a quantized weight
 * uploaded with A16 parameters; returns Y [..., N] in x's dtype.
 */
export function qgemmA16(
  rec: Recorder,
  x: Tensor,
  w: QWeightGpu,
  opts: QGemmA16Options & { tune?: SkinnyTune } = {},
): Tensor {
  const rt = rec.runtime;
  const who = "qgemmA16";
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`${who}: x must be f32 or f16, got ${x.dtype}`);
  }
  const dt = x.dtype;
  const [M, K] = rowsOf(x, who);
  if (K !== w.K) throw new RangeError(`${who}: x has K = ${K}, the weight ${w.K}`);
  if (!w.a16) throw new RangeError(`${who}: the weight was uploaded without A16 parameters`);
  const N = w.N;
  const e = epilogue(who, M, N, dt, opts);
  const version = opts.version ?? defaultA16Version(rt, M);
  const out = opts.out ?? createTensor(rt, [...x.shape.slice(0, -1), N], dt);
  checkNoAlias(who, out, [["x", x], ["bias", opts.bias], ["residual", opts.residual], [
    "gate",
    opts.gate,
  ]]);
  if (M === 0) return out;
  const a = w.a16;
  if (version === "dequant") {
    const wd = createTensor(rt, [N, K], dt);
    const [libs, tag] = decLibs(a.mode, true);
    const p: QParams = {
      ...e,
      K,
      wpr: wordsPerRow(K, w.bits),
      aux: a.groupSize,
      bits: w.bits,
      mode: a.mode,
      consts: { WG: 64, BITS: w.bits, MODE: a.mode },
      grid: grid1d(Math.ceil((N * K) / 4 / 64)),
    };
    const spec = makeSpec(
      `qgemm_decode_float_${dt}${tag}`,
      decodeSrc,
      dt,
      libs,
      ["uniform", "read_write", "read", "read", "read"],
      "to_float",
    );
    // Binding 3 (to_int8's output) is unused here: bound to the codes, read-only.
    rec.dispatch(spec, p, [wd, w.codes, w.codes, a.params]);
    gemm(rec, x, wd, {
      bias: opts.bias,
      activation: opts.activation,
      residual: opts.residual,
      gate: opts.gate,
      rowsPerGate: e.rpg,
      out,
    });
    wd.release(); // the pool hands it out again only to work recorded after this GEMM
    return out;
  }
  const io = dt === "f16" ? ioA16hSrc : ioA16Src;
  let spec: KernelSpec<QParams>;
  let consts: Record<string, number>;
  let grid: [number, number];
  if (version === "fused") {
    const t = gemmDefaultTune("vec4", rt.info.fallback);
    consts = versionConstants(2, t);
    grid = [Math.ceil(N / (8 * t.tx)), Math.ceil(M / (8 * t.ty))];
    // gemm_reg's main builds no table: TLQ compact levels are computed per weight.
    const [libs] = decLibs(a.mode, false);
    const staging = gemmStagingLib(false); // the decoded weights are f32
    const fusedLibs = [staging, commonSrc, ...libs, io];
    spec = makeSpec(`qgemm_a16_fused_${dt}`, regSrc, dt, fusedLibs, GEMM_BINDINGS);
  } else if (version === "skinny") {
    // Defaults from the H200 sweeps of 2026-11-27 (qgemm_sweep, _repeat and qgemm): 128
    // invocations, 16 rows a group, two k steps an iteration.
    const kl = opts.tune?.kl ?? 8;
    const cg = opts.tune?.cg ?? 16;
    const mr = opts.tune?.mr ?? Math.max(1, Math.min(16, M));
    if (kl * cg > 256 || mr < 1 || mr > 16) {
      throw new RangeError(`${who}: skinny tune needs kl·cg ≤ 256 and mr in [1, 16]`);
    }
    consts = { KL: kl, CG: cg, MR: mr, K2: (opts.tune?.k2 ?? true) ? 1 : 0 };
    const [libs, tag] = decLibs(a.mode, true);
    if (tag) {
      checkTable(rt, who, 4 * cg, a.mode, w.bits, 16 * 256, SKINNY_TLQ_PAD); // + reduction
      consts.TLQ_PAD = SKINNY_TLQ_PAD;
    }
    grid = [Math.ceil(N / (4 * cg)), Math.ceil(M / mr)];
    spec = makeSpec(
      `qgemm_a16_skinny_${dt}${tag}`,
      skinnySrc,
      dt,
      [commonSrc, ...libs, io],
      GEMM_BINDINGS,
    );
  } else {
    throw new RangeError(`${who}: version must be fused, skinny or dequant, got ${version}`);
  }
  const p: QParams = {
    ...e,
    K,
    wpr: wordsPerRow(K, w.bits),
    aux: a.groupSize,
    bits: w.bits,
    mode: a.mode,
    consts: { ...consts, ...flagConstants(e), BITS: w.bits, MODE: a.mode },
    grid,
  };
  // Absent epilogue operands are bound to x (never read: their flag is off).
  rec.dispatch(spec, p, [
    x,
    w.codes,
    opts.bias ?? x,
    opts.residual ?? x,
    opts.gate ?? x,
    out,
    a.params,
  ]);
  return out;
}
