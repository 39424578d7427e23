/**
 * What the quantized GEMMs (qgemm.ts) share: the epilogue's options and checks, the launch
 * parameters and uniform layout, and the cache of composed kernel specs.
 *
 * @module
 */
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import type { KernelSpec } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { ACTIVATIONS, type GemmEpilogue } from "./gemm.ts";

/**
 * The epilogue of the quantized GEMMs: gemm's, where the bias may also be [B, N], out row m
 * using bias row ⌊m / rowsPerGate⌋ (a per-sample bias; the gate's grouping when both).
 */
export type QGemmEpilogue = GemmEpilogue;

/** The validated epilogue of one call. */
export interface Epi {
  M: number;
  N: number;
  rpg: number;
  act: number;
  bias: boolean;
  /** The bias is [B, N], one row per `rpg` output rows. */
  biasRows: boolean;
  res: boolean;
  gate: boolean;
}

/** Validates the epilogue operands against [M, N] in `dt` (the checks of gemm). */
export function epilogue(
  who: string,
  M: number,
  N: number,
  dt: StorageType,
  o: QGemmEpilogue,
): Epi {
  const same = (t: Tensor | undefined, name: string, size: number, what: string) => {
    if (!t) return;
    if (t.dtype !== dt) throw new TypeError(`${who}: ${name} is ${t.dtype}, expected ${dt}`);
    if (t.size !== size) {
      throw new RangeError(`${who}: ${name} must be ${what} (${size} values), got [${t.shape}]`);
    }
  };
  same(o.residual, "residual", M * N, `[${M}, ${N}]`);
  same(o.out, "out", M * N, `[${M}, ${N}]`);
  let rpg = Math.max(1, M);
  // The gate's rows, else a [B, N] bias's, split the output rows into groups.
  const grouped = o.gate ?? (o.bias && o.bias.size !== N ? o.bias : undefined);
  if (grouped) {
    const what = grouped === o.gate ? "gate" : "bias";
    const g = grouped;
    if (g.dtype !== dt) throw new TypeError(`${who}: ${what} is ${g.dtype}, expected ${dt}`);
    if (g.size === 0 || g.size % N !== 0) {
      throw new RangeError(`${who}: ${what} must be [B, ${N}], got [${g.shape}]`);
    }
    const B = g.size / N;
    rpg = o.rowsPerGate ?? M / B;
    if (!Number.isInteger(rpg) || rpg < 1) {
      throw new RangeError(
        `${who}: ${M} rows do not split over ${B} ${what} rows; give rowsPerGate`,
      );
    }
    if (Math.ceil(M / rpg) > B) {
      throw new RangeError(
        `${who}: ${M} rows at rowsPerGate ${rpg} need more than ${B} ${what} rows`,
      );
    }
  }
  const biasRows = !!o.bias && o.bias.size !== N;
  if (o.bias) {
    if (o.bias.dtype !== dt) throw new TypeError(`${who}: bias is ${o.bias.dtype}, expected ${dt}`);
    if (biasRows && o.bias.size !== Math.ceil(M / rpg) * N) {
      throw new RangeError(
        `${who}: bias must be [${N}] or [${
          Math.ceil(M / rpg)
        }, ${N}] (rows of ${rpg}), got [${o.bias.shape}]`,
      );
    }
  }
  const act = ACTIVATIONS[o.activation ?? "none"];
  if (act === undefined) throw new TypeError(`${who}: unknown activation ${o.activation}`);
  return { M, N, rpg, act, bias: !!o.bias, biasRows, res: !!o.residual, gate: !!o.gate };
}

/** [M, K] of x [..., K] (M = 0 when K is). */
export function rowsOf(x: Tensor, who: string): [number, number] {
  if (x.shape.length < 2) throw new RangeError(`${who}: x must be [M, K], got [${x.shape}]`);
  const K = x.shape[x.shape.length - 1];
  return [K > 0 ? x.size / K : 0, K];
}

/** Throws when `out` shares a buffer with one of `inputs`. */
export function checkNoAlias(
  who: string,
  out: Tensor,
  inputs: [string, Tensor | undefined][],
): void {
  for (const [name, t] of inputs) {
    if (t && t.buffer === out.buffer) {
      throw new RangeError(`${who}: out must not share a buffer with ${name}`);
    }
  }
}

/** The largest rank taken: a branch is meant to be thin beside the quantized product. */
export const LOW_RANK_MAX = 128;

/**
 * Checks a low-rank branch fused into a quantized GEMM (U [M, R] and B [N, R] in `dt`, R a
 * multiple of 4 up to {@linkcode LOW_RANK_MAX}) and returns R.
 */
export function checkLowRankOperands(
  who: string,
  lr: { u: Tensor; b: Tensor },
  M: number,
  N: number,
  dt: StorageType,
): number {
  const R = M > 0 ? lr.u.size / M : lr.b.size / Math.max(1, N);
  if (!Number.isInteger(R) || R < 4 || R > LOW_RANK_MAX || R % 4 !== 0) {
    throw new RangeError(
      `${who}: lowRank.u must be [${M}, R] with R a multiple of 4 up to ${LOW_RANK_MAX}, got [${lr.u.shape}]`,
    );
  }
  if (lr.b.size !== N * R) {
    throw new RangeError(`${who}: lowRank.b must be [${N}, ${R}], got [${lr.b.shape}]`);
  }
  for (const [name, t] of [["u", lr.u], ["b", lr.b]] as const) {
    if (t.dtype !== dt) {
      throw new TypeError(`${who}: lowRank.${name} is ${t.dtype}, expected ${dt}`);
    }
  }
  return R;
}

/** The epilogue's override constants. */
export function flagConstants(e: Epi): Record<string, number> {
  return {
    HAS_BIAS: e.bias ? 1 : 0,
    BIAS_ROWS: e.biasRows ? 1 : 0,
    ACT: e.act,
    HAS_RES: e.res ? 1 : 0,
    HAS_GATE: e.gate ? 1 : 0,
  };
}

/** The parameters of a quantized GEMM launch. */
export interface QParams extends Epi {
  K: number;
  wpr: number;
  aux: number;
  bits: number;
  mode: number;
  consts: Record<string, number>;
  grid: [number, number];
}

const UNIFORM = {
  fields: ["u32", "u32", "u32", "u32", "u32", "u32", "u32", "u32"] as const,
  values: (p: QParams) => [p.M, p.N, p.K, Math.ceil(p.K / 4), p.rpg, 0, p.wpr, p.aux],
};

const specs = new Map<string, KernelSpec<QParams>>();

/** The cached kernel spec `key` of `kernel` composed with `libs`. */
export function makeSpec(
  key: string,
  kernel: string,
  storage: StorageType,
  libs: string[],
  bindings: KernelSpec<QParams>["bindings"],
  entryPoint = "main",
): KernelSpec<QParams> {
  let s = specs.get(key);
  if (!s) {
    const c = composeWgsl(kernel, { storage, libs });
    s = {
      name: key,
      source: c.source,
      preludeLines: c.preludeLines,
      entryPoint,
      bindings,
      constants: (p) => p.consts,
      uniform: { fields: UNIFORM.fields, values: UNIFORM.values },
      dispatch: (p) => p.grid,
    };
    specs.set(key, s);
  }
  return s;
}

/** Uniform, x, W codes, bias, residual, gate, out, W parameters. */
export const GEMM_BINDINGS: KernelSpec<QParams>["bindings"] = [
  "uniform",
  "read",
  "read",
  "read",
  "read",
  "read",
  "read_write",
  "read",
];
