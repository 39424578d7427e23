/**
 * The integer quantized GEMM ({@linkcode qgemmInt}; the family is described in qgemm.ts, which
 * re-exports it): per-token int8 activations × int8 weights, dot4I8Packed, i32 sums, the GEMM
 * epilogue. "tiled" for GPUs (wgsl/qgemm_int.wgsl), "cpu" for CPU adapters
 * (wgsl/qgemm_int_cpu.wgsl over weights decoded to int8 once a call).
 *
 * @module
 */
import type { StorageType } from "../gpu/compose.ts";
import type { Runtime } from "../gpu/device.ts";
import { grid1d, type KernelSpec, Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import { wordsPerRow } from "../quant/pack.ts";
import type { QuantizedActivations } from "../quant/transform.ts";
import type { QWeightGpu } from "./qweight.ts";
import { checkTable, decLibs } from "./qgemm_tlq.ts";
import { checkIntWeightGroups } from "../reference/qgemm.ts";
import {
  checkLowRankOperands,
  checkNoAlias,
  epilogue,
  flagConstants,
  GEMM_BINDINGS,
  makeSpec,
  type QGemmEpilogue,
  type QParams,
} from "./qgemm_spec.ts";
import commonSrc from "../../wgsl/gemm_common.wgsl" with { type: "text" };
import decodeSrc from "../../wgsl/qgemm_decode.wgsl" with { type: "text" };
import decodeLutsSrc from "../../wgsl/qgemm_decode_luts.wgsl" with { type: "text" };
import intSrc from "../../wgsl/qgemm_int.wgsl" with { type: "text" };
import intCpuSrc from "../../wgsl/qgemm_int_cpu.wgsl" with { type: "text" };
import intScalesSrc from "../../wgsl/qgemm_int_scales.wgsl" with { type: "text" };
import intLowRankSrc from "../../wgsl/qgemm_int_lowrank.wgsl" with { type: "text" };
import intNoLowRankSrc from "../../wgsl/qgemm_int_nolowrank.wgsl" with { type: "text" };
import ioW4Src from "../../wgsl/qgemm_int_io_w4.wgsl" with { type: "text" };
import ioW1Src from "../../wgsl/qgemm_int_io_w1.wgsl" with { type: "text" };
import dotNativeSrc from "../../wgsl/qgemm_dot_native.wgsl" with { type: "text" };
import dotEmulSrc from "../../wgsl/qgemm_dot_emul.wgsl" with { type: "text" };

/** Versions of the integer GEMM. */
export type QGemmIntVersion = "tiled" | "cpu";
/** The int8 dot product: the WGSL builtin or unpack + multiply-add. */
export type DotImpl = "native" | "emulated";

/** Options of {@linkcode qgemmInt}. */
export interface QGemmIntOptions extends QGemmEpilogue {
  /** Storage type of the output and epilogue operands; default f32. */
  dtype?: StorageType;
  /** Default: "cpu" on CPU adapters, else "tiled". */
  version?: QGemmIntVersion;
  /** Default "native" where the adapter has dot4I8Packed, else "emulated". */
  dot?: DotImpl;
  /** Store the i32 sums as f32 bit patterns, no scaling or epilogue (tests; f32 only). */
  raw?: boolean;
  /** Tiles of the "tiled" version (benchmarks and tuning). */
  tune?: IntTune;
  /**
   * A low-rank branch added before the epilogue, "tiled" only: U = X·Aᵀ [M, R] and B [N, R]
   * in `dtype`, R a multiple of 4 (runtime/ops/low_rank.ts's qgemmIntLowRank picks this or the
   * unfused path).
   */
  lowRank?: { u: Tensor; b: Tensor };
}

/** Tile knobs of the tiled integer GEMM: BM = 8·ty, BN = 8·tx, K tile bkw words. */
export interface IntTune {
  /** Invocations along N; default 16 (8 with activation groups and bkw 4). */
  tx?: number;
  /** Invocations along M; default 16. */
  ty?: number;
  /** K tile in words (4 int8 each): 4 (default) or 8. */
  bkw?: number;
  /**
   * TLQ compact (MODE 6): where its int8 tables come from. "expand" (default): a small
   * launch writes them in MODE 2's layout (N·(1 + 2^b/4) words, for this call only) and the
   * GEMM runs as MODE 2; "workgroup": every workgroup of the GEMM builds its rows' tables.
   */
  tables?: "expand" | "workgroup";
  /**
   * Weight groups (MODE 7, MODE 2 in groups): the group size as a pipeline constant (true,
   * the default: constant divisors in the decode) or read from the uniform (benchmarks).
   */
  groupConst?: boolean;
}

/** The default integer version on `rt`. */
export function defaultIntVersion(rt: Runtime): QGemmIntVersion {
  return rt.info.fallback ? "cpu" : "tiled";
}

/**
 * Records Y = epilogue(s_token·s_row·Σ x8·w8) for per-token int8 activations and a
 * quantized weight uploaded with integer parameters; returns Y [M, N] in `opts.dtype`.
 * Grouped activations (`xa.group`): Y = epilogue(s_row·Σ_g s_g·Σ_{k∈g} x8·w8), and with
 * `xa.asym` + z_g·Σ_{k∈g} w8 per group. A weight in groups (uniform, MODE 7; a LUT-coded one
 * with a table a group, MODE 2 with `groupSize`) scales each span of the smaller of the two
 * groups (one must divide the other) by s_x·s_w instead of s_row.
 */
export function qgemmInt(
  rec: Recorder,
  xa: QuantizedActivations,
  w: QWeightGpu,
  opts: QGemmIntOptions = {},
): Tensor {
  const rt = rec.runtime;
  const who = "qgemmInt";
  const dt = opts.dtype ?? "f32";
  const K = xa.cols;
  const K4 = Math.ceil(K / 4);
  const group = xa.group ?? 0;
  const groups = group ? K / group : 1;
  const asym = xa.asym ?? false;
  if (asym && !group) throw new RangeError(`${who}: asymmetric activations must be grouped`);
  const M = xa.scales.size / groups / (asym ? 2 : 1);
  if (group && (group % 4 !== 0 || !Number.isInteger(groups))) {
    throw new RangeError(
      `${who}: activation group ${group} must be a multiple of 4 dividing K ${K}`,
    );
  }
  if (!Number.isInteger(M) || xa.q.size !== M * K4) {
    throw new RangeError(
      `${who}: activations must be [M, ${K4}] words with ${groups} scale(s) a row, got [${xa.q.shape}] and ${xa.scales.size} scales`,
    );
  }
  if (K !== w.K) throw new RangeError(`${who}: activations have K = ${K}, the weight ${w.K}`);
  if (!w.int) throw new RangeError(`${who}: the weight was uploaded without integer parameters`);
  const N = w.N;
  const wgroup = w.int.groupSize ?? 0; // MODE 7, or MODE 2 with a table a group
  if (wgroup || w.int.mode === 7) checkIntWeightGroups(wgroup, K, who);
  if (group && wgroup && Math.max(group, wgroup) % Math.min(group, wgroup) !== 0) {
    throw new RangeError(
      `${who}: activation groups of ${group} and weight groups of ${wgroup}: one must divide the other`,
    );
  }
  const e = epilogue(who, M, N, dt, opts);
  if (opts.raw && (dt !== "f32" || e.bias || e.res || e.gate || e.act || group || wgroup)) {
    throw new RangeError(`${who}: raw output needs f32, no epilogue and per-token scales`);
  }
  const lr = opts.lowRank;
  const R = lr ? checkLowRankOperands(who, lr, M, N, dt) : 0;
  if (lr && opts.raw) throw new RangeError(`${who}: raw output takes no low-rank branch`);
  const dot = opts.dot ?? (rt.info.packedDot ? "native" : "emulated");
  if (dot === "native" && !rt.info.packedDot) {
    throw new RangeError(`${who}: this adapter has no dot4I8Packed; use dot: "emulated"`);
  }
  const version = opts.version ?? defaultIntVersion(rt);
  const out = opts.out ?? createTensor(rt, [M, N], dt);
  checkNoAlias(who, out, [
    ["activations", xa.q],
    ["scales", xa.scales],
    [
      "bias",
      opts.bias,
    ],
    ["residual", opts.residual],
    ["gate", opts.gate],
    ["lowRank.u", lr?.u],
    ["lowRank.b", lr?.b],
  ]);
  if (M === 0) return out;
  const dotSrc = dot === "native" ? dotNativeSrc : dotEmulSrc;
  const base = {
    ...e,
    K,
    wpr: wordsPerRow(K, w.bits),
    aux: wgroup, // MODE 7's or 2's group size (qgemm_dec.wgsl's p1)
    bits: w.bits,
    mode: w.int.mode,
  };
  const flags = {
    ...flagConstants(e),
    RAW: opts.raw ? 1 : 0,
    GROUPW: group / 4,
    ASYM: asym ? 1 : 0,
    WGW: wgroup / 4,
  };
  const bindings: KernelSpec<QParams>["bindings"] = [...GEMM_BINDINGS, "read"];
  const operands = (wi: Tensor, wq: Tensor) => [
    xa.q,
    wi,
    opts.bias ?? xa.q,
    opts.residual ?? xa.q,
    opts.gate ?? xa.q,
    out,
    wq,
    xa.scales,
    ...(lr ? [lr.u, lr.b] : []),
  ];
  const mode = w.int.mode;
  if (version === "tiled") {
    // Grouped sums keep 64 f32 accumulators beside the i32 ones; a tile half as wide measured
    // faster there (H200: A4 g16 asym 1.57 vs 1.63 ms, A8 g32 1.26 vs 1.35; per token slower,
    // bench/results/nvidia-h200/2026-11-28_qgemm_group_tiles.md).
    const bkw = opts.tune?.bkw ?? 4;
    const tx = (group > 0 || wgroup > 0) && bkw === 4 ? 8 : 16;
    const t = { tx, ty: 16, bkw, tables: "expand", ...opts.tune };
    const loads = [8 * t.ty * t.bkw / (t.tx * t.ty), 8 * t.tx * t.bkw / (t.tx * t.ty)];
    if (group % (4 * t.bkw) !== 0 || wgroup % (4 * t.bkw) !== 0) { // a tile in one group
      throw new RangeError(
        `${who}: activation group ${group} and weight group ${wgroup} must be multiples of the tile's ${
          4 * t.bkw
        } channels`,
      );
    }
    if (
      ![4, 8].includes(t.bkw) || t.tx > 16 || t.ty > 16 || loads.some((l) => ![1, 2, 4].includes(l))
    ) {
      throw new RangeError(
        `${who}: tune ${
          JSON.stringify(t)
        } must have bkw 4 or 8, tx, ty ≤ 16 and 1, 2 or 4 words per tile load`,
      );
    }
    if (t.tables !== "expand" && t.tables !== "workgroup") {
      throw new RangeError(`${who}: tune tables must be "expand" or "workgroup"`);
    }
    // TLQ compact: the tables once for this call instead of once per workgroup (1152 times
    // at 4096²), in MODE 2's layout, and the GEMM runs as MODE 2.
    const expand = mode === 6 && t.tables === "expand";
    const tables = expand ? createTensor(rt, [N * (1 + 2 ** w.bits / 4)], "u32") : undefined;
    if (tables) decodeLaunch(rec, base, "int8_luts", w, tables, N);
    const gemmMode = expand ? 2 : mode;
    const [libs, tag] = decLibs(gemmMode, true);
    const consts: Record<string, number> = {
      TX: t.tx,
      TY: t.ty,
      BKW: t.bkw,
      ...flags,
      BITS: w.bits,
      MODE: gemmMode,
      GC: t.groupConst === false ? 0 : wgroup,
      LR4: R / 4,
    };
    // The tile buffers as qgemm_int.wgsl sizes them: 4·max(BKW, 8 with a low-rank branch)·TY
    // and ·TX vec4s.
    const tileBytes = 64 * Math.max(t.bkw, R ? 8 : 0) * (t.tx + t.ty);
    if (tag) checkTable(rt, who, 8 * t.tx, gemmMode, w.bits, tileBytes);
    const spec = makeSpec(
      `qgemm_int_tiled_${dt}_${dot}${tag}${lr ? "_lr" : ""}`,
      intSrc,
      dt,
      [commonSrc, ...libs, dotSrc, intScalesSrc, lr ? intLowRankSrc : intNoLowRankSrc],
      lr ? [...bindings, "read", "read"] : bindings,
    );
    rec.dispatch(spec, {
      ...base,
      consts,
      grid: [Math.ceil(N / (8 * t.tx)), Math.ceil(M / (8 * t.ty))],
    }, operands(w.codes, tables ?? w.int.params));
    tables?.release();
    return out;
  }
  if (version !== "cpu") {
    throw new RangeError(`${who}: version must be tiled or cpu, got ${version}`);
  }
  // Measured on lavapipe: fused here the branch cost as much as its own accumulating GEMM
  // (the CPU kernel's time is its loads, and the branch's are as many as a K step's).
  if (lr) throw new RangeError(`${who}: a low-rank branch is fused in the tiled version only`);
  // Weights as int8 words [N, K4]: 8-bit offset codes are that already (XOR 0x80 a byte).
  let wi = w.codes;
  let wq = w.int.params;
  const temps: Tensor[] = [];
  if (mode !== 3) {
    const temp = createTensor(rt, [N, K4], "u32");
    temps.push(temp);
    decodeLaunch(rec, base, "to_int8", w, temp, N * K4);
    wi = temp;
    if (mode === 6) { // TLQ compact: the row scales the epilogue reads, rebuilt once too
      wq = createTensor(rt, [N], "u32");
      temps.push(wq);
      decodeLaunch(rec, base, "row_scales", w, wq, N);
    }
  }
  const wide = K4 % 4 === 0 && group % 16 === 0; // a step of 16 channels within a group (wgroup: ≥ 16)
  const spec = makeSpec(
    `qgemm_int_cpu_${dt}_${dot}_${wide ? "w4" : "w1"}`,
    intCpuSrc,
    dt,
    [commonSrc, dotSrc, wide ? ioW4Src : ioW1Src, intScalesSrc],
    bindings,
  );
  const lanes = Math.ceil(M / 4) * Math.ceil(N / 4);
  rec.dispatch(spec, {
    ...base,
    consts: { WG: 64, WX: mode === 3 ? 0x80808080 : 0, ...flags },
    grid: grid1d(Math.ceil(lanes / 64)),
  }, operands(wi, wq));
  temps.forEach((t) => t.release());
  return out;
}

/**
 * One launch of qgemm_decode.wgsl's `entry` over `lanes` lanes: decodes the integer
 * parameters of `w` (its own MODE) into `o`.
 */
function decodeLaunch(
  rec: Recorder,
  base: Omit<QParams, "consts" | "grid">,
  entry: "to_int8" | "row_scales" | "int8_luts",
  w: QWeightGpu,
  o: Tensor,
  lanes: number,
): void {
  const mode = w.int!.mode;
  const [libs, tag] = decLibs(mode, true);
  const spec = makeSpec(
    `qgemm_decode_${entry}${tag}`,
    decodeSrc,
    "f32",
    entry === "int8_luts" ? [...libs, decodeLutsSrc] : libs,
    ["uniform", "read", "read", "read_write", "read"],
    entry,
  );
  rec.dispatch(spec, {
    ...base,
    consts: { WG: 64, BITS: w.bits, MODE: mode, GC: base.aux },
    grid: grid1d(Math.ceil(lanes / 64)),
  }, [w.codes, w.codes, o, w.int!.params]);
}

/**
 * `w` with a TLQ-compact weight's int8 tables (MODE 6) expanded once, in MODE 2's layout, for
 * the tiled version (`version`, default the adapter's), which otherwise expands them every call:
 * the same launch, so the same tables and sums, without a launch and a temporary a call. Any
 * other weight, or version, comes back as it is. The returned weight owns the tables: its
 * release frees them and `w`'s tensors.
 */
export async function expandIntTables(
  rt: Runtime,
  w: QWeightGpu,
  version: QGemmIntVersion = defaultIntVersion(rt),
): Promise<QWeightGpu> {
  if (w.int?.mode !== 6 || version !== "tiled") return w;
  const N = w.N;
  const tables = createTensor(rt, [N * (1 + 2 ** w.bits / 4)], "u32");
  try {
    const rec = new Recorder(rt, "qgemm int8 tables");
    const base = { ...epilogue("expandIntTables", 1, N, "f32", {}), K: w.K, aux: 0 };
    decodeLaunch(
      rec,
      { ...base, wpr: wordsPerRow(w.K, w.bits), bits: w.bits, mode: 6 },
      "int8_luts",
      w,
      tables,
      N,
    );
    await rec.submit();
  } catch (e) {
    tables.release();
    throw e;
  }
  return {
    ...w,
    int: { mode: 2, params: tables },
    byteLength: w.byteLength + tables.byteLength,
    release: () => {
      tables.release();
      w.release();
    },
  };
}
