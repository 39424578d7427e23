/**
 * The low-rank branch of a quantized linear (SVDQuant's): W' = B·A + E, the rank-R part kept
 * in float and run on the unquantized input, E quantized (runtime/quant/low_rank.ts splits
 * the weight). The layer records its quantized GEMM of E without the epilogue, then
 * {@linkcode lowRankAdd}: Z ← epilogue(Z + (X·Aᵀ)·B) in place — U = X·Aᵀ by the dense
 * {@linkcode gemm}, then one pass adding U·B and applying the epilogue (runtime/quant/qlinear.ts).
 * A single launch computing U per row tile in workgroup memory measured slower on an H200
 * (7.3 against 4.5 ms a step at R 32: `2026-11-28_ablation_low_rank_w4a8_w8a8_fused.md`).
 * CPU reference: runtime/reference/low_rank.ts.
 *
 * @module
 */
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import { grid1d, type KernelSpec, type Recorder } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
import { gemm, type GemmOptions } from "./gemm.ts";
import {
  checkNoAlias,
  type Epi,
  epilogue,
  flagConstants,
  type QGemmEpilogue,
  rowsOf,
} from "./qgemm_spec.ts";
import commonSrc from "../../wgsl/gemm_common.wgsl" with { type: "text" };
import src from "../../wgsl/low_rank.wgsl" with { type: "text" };

const WG = 256;

/** The largest rank taken: a branch is meant to be thin beside the quantized product. */
export const LOW_RANK_MAX = 128;

/** Options of {@linkcode lowRankAdd}: gemm's epilogue, and the down GEMM's version. */
export interface LowRankAddOptions extends Omit<QGemmEpilogue, "out"> {
  /** The X·Aᵀ GEMM's version and tile knobs (benchmarks); default the adapter's. */
  down?: Pick<GemmOptions, "version" | "tune">;
}

interface Params extends Epi {
  rank: number;
}

const specs = new Map<StorageType, KernelSpec<Params>>();

function spec(storage: StorageType): KernelSpec<Params> {
  let s = specs.get(storage);
  if (!s) {
    const c = composeWgsl(src, { storage, libs: [commonSrc] });
    s = {
      name: `low_rank_add_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      entryPoint: "add",
      bindings: ["uniform", "read", "read", "read", "read", "read", "read_write"],
      constants: (p) => ({ WG, ...flagConstants(p) }),
      uniform: {
        fields: ["u32", "u32", "u32", "u32", "u32", "u32", "u32", "u32"],
        values: (p) => [p.M, p.N, 0, 0, p.rpg, 0, p.rank, 0],
      },
      dispatch: (p) => grid1d(Math.ceil((p.M * p.N) / WG)),
    };
    specs.set(storage, s);
  }
  return s;
}

/**
 * Records, in place, Z ← epilogue(Z + (X·Aᵀ)·B) and returns z.
 *
 * @param z the quantized product [M, N] (f32 or f16), overwritten
 * @param x the layer's input [M, K] (or [..., K]), z's dtype: unquantized, untransformed
 * @param a the branch's down factor A [R, K], z's dtype
 * @param bt its up factor transposed, B [R, N], z's dtype
 * @param opts gemm's epilogue (bias [N] or [B, N], activation, gate, residual; no `out`), and
 *   the down GEMM's version
 * @throws {TypeError} for dtypes that are not f32/f16 or differ from z's.
 * @throws {RangeError} for shapes that do not match, a rank past {@linkcode LOW_RANK_MAX},
 *   or an operand sharing z's buffer.
 */
export function lowRankAdd(
  rec: Recorder,
  z: Tensor,
  x: Tensor,
  a: Tensor,
  bt: Tensor,
  opts: LowRankAddOptions = {},
): Tensor {
  const who = "lowRankAdd";
  if (z.dtype !== "f32" && z.dtype !== "f16") {
    throw new TypeError(`${who}: z must be f32 or f16, got ${z.dtype}`);
  }
  const [M, N] = rowsOf(z, who);
  const [Mx, K] = rowsOf(x, who);
  if (Mx !== M) throw new RangeError(`${who}: x has ${Mx} rows, z ${M}`);
  if (a.shape.length !== 2 || a.shape[1] !== K || a.shape[0] < 1) {
    throw new RangeError(`${who}: a must be [R, ${K}] with R ≥ 1, got [${a.shape}]`);
  }
  const R = a.shape[0];
  if (R > LOW_RANK_MAX) throw new RangeError(`${who}: rank ${R} is past ${LOW_RANK_MAX}`);
  if (bt.size !== R * N) throw new RangeError(`${who}: bt must be [${R}, ${N}], got [${bt.shape}]`);
  for (const [name, t] of [["x", x], ["a", a], ["bt", bt]] as const) {
    if (t.dtype !== z.dtype) throw new TypeError(`${who}: ${name} is ${t.dtype}, z ${z.dtype}`);
  }
  const e = epilogue(who, M, N, z.dtype, opts);
  checkNoAlias(who, z, [
    ["x", x],
    ["a", a],
    ["bt", bt],
    ["bias", opts.bias],
    ["residual", opts.residual],
    ["gate", opts.gate],
  ]);
  if (M === 0 || N === 0) return z;
  const u = gemm(rec, x, a, opts.down); // [M, R]
  // Absent epilogue operands are bound to u (their flag is off; z is bound writable).
  rec.dispatch(spec(z.dtype), { ...e, rank: R }, [
    u,
    bt,
    opts.bias ?? u,
    opts.residual ?? u,
    opts.gate ?? u,
    z,
  ]);
  u.release(); // recorded work keeps it valid until it has run
  return z;
}
