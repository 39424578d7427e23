/**
 * The low-rank branch of a quantized linear (SVDQuant's): W' = B·A + E, the rank-R part kept
 * in float and run on the unquantized input, E quantized (runtime/quant/low_rank.ts splits
 * the weight). The layer records U = X·Aᵀ by the dense {@linkcode gemm}, its quantized GEMM
 * of E without the epilogue, then {@linkcode lowRankAdd}: Z ← epilogue(Z + U·Bᵀ) in place
 * (runtime/quant/qlinear.ts). CPU reference: runtime/reference/low_rank.ts.
 *
 * @module
 */
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import { grid1d, type KernelSpec, type Recorder } from "../gpu/kernel.ts";
import type { Tensor } from "../gpu/tensor.ts";
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

interface Params extends Epi {
  /** The rank R. */
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
 * Records, in place, Z ← epilogue(Z + U·Bᵀ) and returns z.
 *
 * @param z the quantized product [M, N] (f32 or f16), overwritten
 * @param u X·Aᵀ [M, R], z's dtype
 * @param b the branch's up factor [N, R], z's dtype
 * @param opts gemm's epilogue (bias [N] or [B, N], activation, gate, residual; no `out`)
 * @throws {TypeError} for dtypes that are not f32/f16 or differ from z's.
 * @throws {RangeError} for shapes that do not match, or an operand sharing z's buffer.
 */
export function lowRankAdd(
  rec: Recorder,
  z: Tensor,
  u: Tensor,
  b: Tensor,
  opts: Omit<QGemmEpilogue, "out"> = {},
): Tensor {
  const who = "lowRankAdd";
  if (z.dtype !== "f32" && z.dtype !== "f16") {
    throw new TypeError(`${who}: z must be f32 or f16, got ${z.dtype}`);
  }
  const [M, N] = rowsOf(z, who);
  if (b.shape.length !== 2 || b.shape[0] !== N || b.shape[1] < 1) {
    throw new RangeError(`${who}: b must be [${N}, R] with R ≥ 1, got [${b.shape}]`);
  }
  const R = b.shape[1];
  if (u.size !== M * R) throw new RangeError(`${who}: u must be [${M}, ${R}], got [${u.shape}]`);
  for (const [name, t] of [["u", u], ["b", b]] as const) {
    if (t.dtype !== z.dtype) throw new TypeError(`${who}: ${name} is ${t.dtype}, z ${z.dtype}`);
  }
  const e = epilogue(who, M, N, z.dtype, opts);
  checkNoAlias(who, z, [
    ["u", u],
    ["b", b],
    ["bias", opts.bias],
    ["residual", opts.residual],
    ["gate", opts.gate],
  ]);
  if (M === 0 || N === 0) return z;
  // Absent epilogue operands are bound to u (their flag is off; z is bound writable).
  rec.dispatch(spec(z.dtype), { ...e, rank: R }, [
    u,
    b,
    opts.bias ?? u,
    opts.residual ?? u,
    opts.gate ?? u,
    z,
  ]);
  return z;
}
