/**
 * CFG delta: under classifier-free guidance a layer's input is a pair [uncond; cond] whose
 * halves differ little, and guidance multiplies their difference (by 4.5 for PixArt). A
 * quantized layer can quantize [uncond; cond − uncond] instead — the difference on its own
 * scale — and rebuild the cond half's product exactly in float:
 * (cond − uncond)·Ŵᵀ + uncond·Ŵᵀ = cond·Ŵᵀ. {@linkcode cfgDelta} forms the pair,
 * {@linkcode cfgCombine} adds the product's halves back and applies the GEMM epilogue
 * (runtime/quant/qlinear.ts, `cfgDelta`). CPU reference: runtime/reference/cfg_delta.ts.
 *
 * @module
 */
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import { grid1d, type KernelSpec, type Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import {
  checkNoAlias,
  type Epi,
  epilogue,
  flagConstants,
  type QGemmEpilogue,
  rowsOf,
} from "./qgemm_spec.ts";
import commonSrc from "../../wgsl/gemm_common.wgsl" with { type: "text" };
import src from "../../wgsl/cfg_delta.wgsl" with { type: "text" };

const WG = 256;

type Entry = "delta" | "combine";

interface Params extends Epi {
  entry: Entry;
  /** Rows of one half. */
  half: number;
}

const specs = new Map<string, KernelSpec<Params>>();

function spec(storage: StorageType, entry: Entry): KernelSpec<Params> {
  const key = `${storage}:${entry}`;
  let s = specs.get(key);
  if (!s) {
    const c = composeWgsl(src, { storage, libs: [commonSrc] });
    s = {
      name: `cfg_${entry}_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      entryPoint: entry,
      bindings: ["uniform", "read", "read", "read", "read", "read", "read_write"],
      constants: (p) => ({ WG, ...flagConstants(p) }),
      uniform: {
        fields: ["u32", "u32", "u32", "u32", "u32", "u32", "u32", "u32"],
        values: (p) => [p.M, p.N, 0, 0, p.rpg, 0, p.half, 0],
      },
      // combine: one invocation a pair of rows.
      dispatch: (p) => grid1d(Math.ceil(((p.entry === "combine" ? p.half : p.M) * p.N) / WG)),
    };
    specs.set(key, s);
  }
  return s;
}

/** [M, K] and the storage type of x [..., K]; throws unless M is even (a CFG pair). */
function pairRows(who: string, x: Tensor): [number, number, StorageType] {
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`${who}: x must be f32 or f16, got ${x.dtype}`);
  }
  const [M, K] = rowsOf(x, who);
  if (M % 2 !== 0) {
    throw new RangeError(`${who}: x has ${M} rows, not a CFG pair (an even number of rows)`);
  }
  return [M, K, x.dtype];
}

/** Records [u; c − u] of x = [u; c] (halves of its rows; f32 arithmetic, x's dtype). */
export function cfgDelta(rec: Recorder, x: Tensor): Tensor {
  const [M, K, dt] = pairRows("cfgDelta", x);
  const out = createTensor(rec.runtime, x.shape, dt);
  const p: Params = { entry: "delta", half: M / 2, ...epilogue("cfgDelta", M, K, dt, {}) };
  // Binding 2, bias, residual and gate are unused here: bound to x (their flags are off).
  if (M > 0 && K > 0) rec.dispatch(spec(dt, "delta"), p, [x, x, x, x, x, out]);
  return out;
}

/**
 * Records, in place, Z ← epilogue([Z_u; Z_d + Z_u]) for the product Z [M, N] = [Z_u; Z_d] of a
 * {@linkcode cfgDelta} pair: the cond half's product rebuilt, then gemm's epilogue (bias [N]
 * or [B, N], activation, gate, residual). In place, so the layer needs no second [M, N]
 * buffer (the GEMM writes where the output goes). Returns z.
 */
export function cfgCombine(
  rec: Recorder,
  z: Tensor,
  opts: Omit<QGemmEpilogue, "out"> = {},
): Tensor {
  const who = "cfgCombine";
  const [M, N, dt] = pairRows(who, z);
  const e = epilogue(who, M, N, dt, opts);
  checkNoAlias(who, z, [["bias", opts.bias], ["residual", opts.residual], ["gate", opts.gate]]);
  if (M === 0 || N === 0) return z;
  const p: Params = { entry: "combine", half: M / 2, ...e };
  // Bindings 1 and 2 (the delta's) are unread here, and absent epilogue operands too (their
  // flag is off): all bound to a one-value placeholder, as z is bound writable.
  const unused = createTensor(rec.runtime, [1], dt);
  rec.dispatch(spec(dt, "combine"), p, [
    unused,
    unused,
    opts.bias ?? unused,
    opts.residual ?? unused,
    opts.gate ?? unused,
    z,
  ]);
  unused.release(); // recorded work keeps it valid until it has run
  return z;
}
