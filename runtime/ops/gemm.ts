/**
 * GEMM with a fused epilogue: Y = X·Wᵀ (+ bias), an activation, then an optional gated
 * residual (`x + gate ⊙ y`, the DiT block's residual update). W is in the PyTorch Linear
 * layout [N, K]. Kernels come in numbered versions (llm.c style), each checked against
 * runtime/reference/gemm.ts:
 *
 * 1. `gemm_tiled.wgsl`: simple 16×16 tiles through workgroup memory (the baseline);
 * 2. `gemm_reg.wgsl`: register-blocked 8×8 per invocation, 128×128 tiles, for GPUs;
 * 3. `gemm_cpu.wgsl`: for CPU adapters, where loads cost far more than FMAs (4×4 blocks
 *    per invocation straight from storage; f16 with K % 8 == 0 loads eight packed halves);
 * 4. `gemm_thin.wgsl`: for thin outputs on GPUs (N ≤ 128, a low-rank branch's X·Aᵀ): 16-row
 *    tiles as wide as N, so M / 16 workgroups share the work.
 *
 * The op picks 2 on GPUs (4 for f32 with at most 128 rows, 64×64 tiles of 2 where 128×128
 * ones would leave the GPU idle); on a fallback (CPU) adapter 2 or 3 by shape and storage
 * type (see {@linkcode defaultGemmVersion}), unless `version` or `tune` says otherwise. The
 * tile knobs, their defaults and checks are in gemm_tune.ts (re-exported here).
 *
 * @module
 */
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import { grid1d, type KernelSpec, type Recorder } from "../gpu/kernel.ts";
import type { Runtime } from "../gpu/device.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import type { GemmActivation } from "../reference/gemm.ts";
import {
  checkGemmTune,
  gemmDefaultTune,
  gemmGpuTiles,
  type GemmTune,
  versionConstants,
} from "./gemm_tune.ts";
import commonSrc from "../../wgsl/gemm_common.wgsl" with { type: "text" };
import ioVec4Src from "../../wgsl/gemm_io_vec4.wgsl" with { type: "text" };
import ioScalarSrc from "../../wgsl/gemm_io_scalar.wgsl" with { type: "text" };
import ioF16x8Src from "../../wgsl/gemm_io_f16x8.wgsl" with { type: "text" };
import ioF16x4Src from "../../wgsl/gemm_io_f16x4.wgsl" with { type: "text" };
import ioW16Src from "../../wgsl/gemm_io_w16.wgsl" with { type: "text" };
import ioConv3x3Src from "../../wgsl/gemm_io_conv3x3.wgsl" with { type: "text" };
import tiledSrc from "../../wgsl/gemm_tiled.wgsl" with { type: "text" };
import regSrc from "../../wgsl/gemm_reg.wgsl" with { type: "text" };
import cpuSrc from "../../wgsl/gemm_cpu.wgsl" with { type: "text" };
import thinSrc from "../../wgsl/gemm_thin.wgsl" with { type: "text" };

export type { GemmActivation } from "../reference/gemm.ts";
export {
  gemmDefaultTune,
  gemmGpuTiles,
  gemmTileBytes,
  type GemmTune,
  versionConstants,
} from "./gemm_tune.ts";

/** Kernel versions: 1 simple tiled, 2 register-blocked (GPU), 3 CPU-adapter, 4 thin (GPU). */
export type GemmVersion = 1 | 2 | 3 | 4;

/** The kernel versions, for validation and sweeps. */
export const GEMM_VERSIONS: readonly GemmVersion[] = [1, 2, 3, 4];

/**
 * How a kernel loads its operands: vec4 rows (K % 4 == 0), scalars (any K), or packed
 * halves, four (K % 4 == 0) or eight (K % 8 == 0, version 3) per load; "w16": f32 vec4 rows
 * of X against four packed halves of an f16 W (K % 4 == 0).
 */
export type GemmOperandLoad = "vec4" | "scalar" | "f16x4" | "f16x8" | "w16" | "conv3x3";

/** The epilogue operands of {@linkcode gemm} and the quantized GEMMs (qgemm.ts). */
export interface GemmEpilogue {
  /** bias [N], added before the activation. */
  bias?: Tensor;
  /** Activation after the bias: none (default), gelu (tanh approximation), silu or quickGelu (x·σ(1.702x), CLIP). */
  activation?: GemmActivation;
  /** residual [M, N]: out = residual + gate ⊙ y. Must not be `out` (ping-pong instead). */
  residual?: Tensor;
  /** gate [B, N]: out row m uses gate row ⌊m / rowsPerGate⌋; without residual, out = gate ⊙ y. */
  gate?: Tensor;
  /** Output rows per gate row; default M / B (B = the gate's rows). */
  rowsPerGate?: number;
  /** Where to write [M, N]; default a new tensor. */
  out?: Tensor;
}

/** Options of {@linkcode gemm}. */
export interface GemmOptions extends GemmEpilogue {
  /**
   * Y = epilogue(out + X·Wᵀ): `out`'s values enter the product before the bias and the
   * activation (a second product summed into the first; `out` required). Default off.
   */
  accumulate?: boolean;
  /** Force a kernel version; default {@linkcode defaultGemmVersion}. */
  version?: GemmVersion;
  /** Tile knobs of the chosen version (benchmarks and tuning). */
  tune?: GemmTune;
  /**
   * x is a channels-last image [B·H·W, C] (f32, C % 4 == 0) read as the im2col of a 3×3,
   * stride-1, zero-padded convolution (upsampled 2× first when `upsample`): M = B·H'·W',
   * K = 9·C, w [N, 9·C] in conv3x3WeightNhwc's layout (runtime/ops/conv.ts). Versions 2, 3.
   */
  im2col?: { B: number; H: number; W: number; C: number; upsample: boolean };
}

/** The ACT override constant of each epilogue activation. */
export const ACTIVATIONS: Readonly<Record<GemmActivation, number>> = {
  none: 0,
  gelu: 1,
  silu: 2,
  quickGelu: 3,
};

interface Params {
  M: number;
  N: number;
  K: number;
  rpg: number;
  act: number;
  bias: boolean;
  res: boolean;
  gate: boolean;
  accum: boolean;
  tune: Required<GemmTune>;
  /** The conv3x3 load's image geometry (p0 = W, p1 = H << 1 | up); else 0, 0. */
  geom?: [number, number];
}

const SOURCES: Record<GemmVersion, string> = { 1: tiledSrc, 2: regSrc, 3: cpuSrc, 4: thinSrc };
const specs = new Map<string, KernelSpec<Params>>();

function dispatchOf(version: GemmVersion, p: Params): [number, number] {
  const t = p.tune;
  if (version === 1) return [Math.ceil(p.N / 16), Math.ceil(p.M / 16)];
  if (version === 2) return [Math.ceil(p.N / (8 * t.tx)), Math.ceil(p.M / (8 * t.ty))];
  if (version === 4) return [Math.ceil(p.N / (16 * t.ct)), Math.ceil(p.M / 16)];
  const lanes = Math.ceil(p.M / t.rt) * Math.ceil(p.N / t.ct);
  return grid1d(Math.ceil(lanes / t.wg));
}

const LOAD_SOURCES: Record<GemmOperandLoad, string> = {
  vec4: ioVec4Src,
  scalar: ioScalarSrc,
  f16x4: ioF16x4Src,
  f16x8: ioF16x8Src,
  w16: ioW16Src,
  conv3x3: ioConv3x3Src,
};

/** The operand load a version uses for a storage type and K. */
export function gemmOperandLoad(
  version: GemmVersion,
  storage: StorageType,
  K: number,
): GemmOperandLoad {
  if (version === 3 && storage === "f16" && K % 8 === 0) return "f16x8";
  if (K % 4 !== 0) return "scalar";
  return storage === "f16" ? "f16x4" : "vec4";
}

/**
 * The aliases version 2's tiles are staged in (gemm_reg.wgsl's SH, SH4): f16 (`half`, f16
 * operands only) or f32. Shared with qgemm.ts's fused GEMM.
 */
export function gemmStagingLib(half: boolean): string {
  const t = half ? "f16" : "f32";
  return `alias SH = ${t};\nalias SH4 = vec4<${t}>;`;
}

/**
 * The kernel spec of a version for a storage type and operand load (f16x8: version 3 only);
 * `hs` 1 stages version 2's tiles as f16 (f16 storage only).
 */
export function gemmSpec(
  version: GemmVersion,
  storage: StorageType,
  load: GemmOperandLoad,
  hs = 0,
): KernelSpec<Params> {
  if (
    (load === "f16x8" && version !== 3) || (load.startsWith("f16") && storage !== "f16") ||
    (load === "w16" && storage !== "f32")
  ) {
    throw new RangeError(`gemm: no ${load} operand load for version ${version} ${storage}`);
  }
  if (hs && storage !== "f16") {
    throw new RangeError(`gemm: tune.hs (tiles staged as f16) needs f16 storage, got ${storage}`);
  }
  const key = `${version}:${storage}:${load}:${hs}`;
  let spec = specs.get(key);
  if (!spec) {
    const c = composeWgsl(SOURCES[version], {
      storage,
      libs: [gemmStagingLib(hs === 1), commonSrc, LOAD_SOURCES[load]],
    });
    spec = {
      name: `gemm_v${version}_${storage}_${load}${hs ? "_hs" : ""}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read", "read", "read", "read", "read_write"],
      constants: (p) => ({
        HAS_BIAS: p.bias ? 1 : 0,
        ACT: p.act,
        HAS_RES: p.res ? 1 : 0,
        HAS_GATE: p.gate ? 1 : 0,
        ACCUM: p.accum ? 1 : 0,
        ...versionConstants(version, p.tune),
      }),
      uniform: {
        fields: ["u32", "u32", "u32", "u32", "u32", "u32", "u32", "u32"],
        values: (p) => [
          p.M,
          p.N,
          p.K,
          Math.ceil(p.K / 4),
          p.rpg,
          Math.ceil(p.K / 8),
          ...(p.geom ?? [0, 0]),
        ],
      },
      dispatch: (p) => dispatchOf(version, p),
    };
    specs.set(key, spec);
  }
  return spec;
}

/** What the default version depends on: rows, depth and storage type. */
export interface GemmShape {
  /** Rows of X (and of the output). */
  M: number;
  /** Depth. */
  K: number;
  /** Storage type. */
  dtype: StorageType;
  /** An im2col convolution (versions 2 and 3 only). */
  conv?: boolean;
}

/**
 * The version the op uses on `rt` when none is forced. On GPUs 2, or 4 for f32 with at most
 * 128 rows (conditioning linears, CLIP's 77 tokens: 1.3–1.9× faster than 2 on an H200,
 * bench/results/nvidia-h200/2026-11-29_gemm_small_m.md). On CPU adapters
 * (lavapipe), measured at the DiT and bundled-model shapes: 3 for f16 with K % 8 == 0
 * (eight packed halves a load) and for fewer than 64 rows (128-row tiles would be mostly
 * idle), else 2 (up to 1.3× faster than 3 in f32 there); 3 when the shape is not given.
 */
export function defaultGemmVersion(rt: Runtime, shape?: GemmShape): GemmVersion {
  if (!rt.info.fallback) {
    return shape && !shape.conv && shape.dtype === "f32" && shape.M <= 128 ? 4 : 2;
  }
  if (!shape) return 3;
  if (shape.dtype === "f16" && shape.K % 8 === 0) return 3;
  return shape.M >= 64 ? 2 : 3;
}

/** FLOPs of an M×K·K×N product, counted as 2·M·N·K. */
export function gemmFlops(M: number, N: number, K: number): number {
  return 2 * M * N * K;
}

function dims(x: Tensor): [number, number] {
  if (x.shape.length < 2) {
    throw new RangeError(`x must be [M, K] (or [..., K]), got shape [${x.shape}]`);
  }
  const K = x.shape[x.shape.length - 1];
  return [x.size / Math.max(1, K), K];
}

/** M and K of a 3×3 convolution's implicit im2col (GemmOptions.im2col). */
function convDims(x: Tensor, im: NonNullable<GemmOptions["im2col"]>): [number, number] {
  const { B, H, W, C } = im;
  if (x.dtype !== "f32" || C % 4 !== 0 || x.size !== B * H * W * C) {
    throw new RangeError(
      `gemm: an im2col x must be an f32 image [${B}·${H}·${W}, ${C}] with C a multiple of 4, got [${x.shape}] ${x.dtype}`,
    );
  }
  const f = im.upsample ? 4 : 1;
  return [B * H * W * f, 9 * C];
}

/**
 * Records Y = epilogue(X·Wᵀ) and returns Y [..., N] (X's leading dims, then N).
 *
 * @param x activations [M, K] (or [..., K], flattened to M rows), f32 or f16
 * @param w weights [N, K] (PyTorch Linear layout), x's dtype, or f16 with f32 x (K % 4 == 0:
 *   half the weight bytes, f32 arithmetic; the epilogue operands and output stay f32)
 * @throws {TypeError} for dtypes that are not f32/f16 or that differ.
 * @throws {RangeError} for shapes that do not match, an `out` that shares a buffer with an
 *   input, or tile knobs out of range.
 */
export function gemm(rec: Recorder, x: Tensor, w: Tensor, opts: GemmOptions = {}): Tensor {
  const rt = rec.runtime;
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`gemm: x must be f32 or f16, got ${x.dtype}`);
  }
  const im = opts.im2col;
  const [M, K] = im ? convDims(x, im) : dims(x);
  if (K < 1) throw new RangeError(`gemm: K must be at least 1, got x shape [${x.shape}]`);
  if (w.shape.length !== 2 || w.shape[1] !== K) {
    throw new RangeError(`gemm: w must be [N, ${K}] (Linear layout), got [${w.shape}]`);
  }
  const N = w.shape[0];
  const dt = x.dtype;
  const same = (t: Tensor | undefined, name: string, size: number, what: string) => {
    if (!t) return;
    if (t.dtype !== dt) throw new TypeError(`gemm: ${name} is ${t.dtype} but x is ${dt}`);
    if (t.size !== size) {
      throw new RangeError(`gemm: ${name} must be ${what} (${size} values), got [${t.shape}]`);
    }
  };
  const w16 = dt === "f32" && w.dtype === "f16"; // f16 weights, f32 activations
  if (w16 && (K % 4 !== 0 || im)) {
    throw new RangeError(`gemm: f16 weights with f32 x need K % 4 == 0 (no im2col), got K ${K}`);
  }
  if (!w16) same(w, "w", N * K, `[${N}, ${K}]`);
  else if (w.size !== N * K) throw new RangeError(`gemm: w must be [${N}, ${K}], got [${w.shape}]`);
  same(opts.bias, "bias", N, `[${N}]`);
  same(opts.residual, "residual", M * N, `[${M}, ${N}]`);
  let rpg = Math.max(1, M);
  if (opts.gate) {
    const g = opts.gate;
    if (g.dtype !== dt) throw new TypeError(`gemm: gate is ${g.dtype} but x is ${dt}`);
    if (g.size % Math.max(1, N) !== 0 || g.size === 0) {
      throw new RangeError(`gemm: gate must be [B, ${N}], got [${g.shape}]`);
    }
    const B = g.size / N;
    if (opts.rowsPerGate !== undefined) {
      rpg = opts.rowsPerGate;
      if (!Number.isInteger(rpg) || rpg < 1) {
        throw new RangeError(`gemm: rowsPerGate must be a positive integer, got ${rpg}`);
      }
    } else {
      if (M % B !== 0) {
        throw new RangeError(`gemm: ${M} rows do not split over ${B} gate rows; give rowsPerGate`);
      }
      rpg = Math.max(1, M / B);
    }
    if (Math.ceil(M / rpg) > B) {
      throw new RangeError(
        `gemm: ${M} rows at rowsPerGate ${rpg} need ${Math.ceil(M / rpg)} gate rows, gate has ${B}`,
      );
    }
  }
  const act = ACTIVATIONS[opts.activation ?? "none"];
  if (act === undefined) {
    throw new TypeError(
      `gemm: activation must be none, gelu, silu or quickGelu, got ${opts.activation}`,
    );
  }
  const version = opts.version ?? defaultGemmVersion(rt, { M, K, dtype: dt, conv: !!im });
  if (!GEMM_VERSIONS.includes(version)) {
    throw new RangeError(`gemm: version must be 1, 2, 3 or 4, got ${version}`);
  }
  if (im && version !== 2 && version !== 3) {
    throw new RangeError(`gemm: im2col loads run on versions 2 and 3, got ${version}`);
  }
  const load = im ? "conv3x3" : w16 ? "w16" : gemmOperandLoad(version, dt, K);
  // Version 4's tile is as wide as N (up to 128 columns), unless a knob says otherwise.
  const thinCt = version === 4 ? { ct: Math.min(8, Math.max(1, Math.ceil(N / 16))) } : {};
  const gpuTiles = !rt.info.fallback && version === 2 && !opts.version ? gemmGpuTiles(M, N) : {};
  const tune = {
    ...gemmDefaultTune(load, rt.info.fallback),
    ...thinCt,
    ...gpuTiles,
    ...opts.tune,
  };
  checkGemmTune(version, tune, rt);

  if (opts.accumulate && !opts.out) throw new RangeError("gemm: accumulate needs out");
  const out = opts.out ?? createTensor(rt, im ? [M, N] : [...x.shape.slice(0, -1), N], dt);
  same(out, "out", M * N, `[${M}, ${N}]`);
  // WebGPU forbids one buffer bound read-only and writable in the same dispatch.
  for (
    const [name, t] of [["x", x], ["w", w], ["bias", opts.bias], ["residual", opts.residual], [
      "gate",
      opts.gate,
    ]] as const
  ) {
    if (t && t.buffer === out.buffer) {
      throw new RangeError(`gemm: out must not share a buffer with ${name} (ping-pong instead)`);
    }
  }
  if (M === 0 || N === 0) return out;
  const params: Params = {
    M,
    N,
    K,
    rpg,
    act,
    bias: !!opts.bias,
    res: !!opts.residual,
    gate: !!opts.gate,
    accum: !!opts.accumulate,
    tune,
    geom: im ? [im.W, (im.H << 1) | (im.upsample ? 1 : 0)] : undefined,
  };
  const [gx, gy] = dispatchOf(version, params);
  const maxGroups = rt.info.limits.maxComputeWorkgroupsPerDimension ?? 65535;
  if (gx > maxGroups || gy > maxGroups) {
    throw new RangeError(
      `gemm: [${M}, ${K}]·[${N}, ${K}]ᵀ needs ${gx}×${gy} workgroups, over ${maxGroups}`,
    );
  }
  const spec = gemmSpec(version, dt, load, version === 2 ? tune.hs : 0);
  // Absent epilogue operands are bound to x (never read: their override flag is off).
  rec.dispatch(spec, params, [
    x,
    w,
    opts.bias ?? x,
    opts.residual ?? x,
    opts.gate ?? x,
    out,
  ]);
  return out;
}
