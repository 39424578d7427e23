/**
 * GroupNorm on channels-last images (wgsl/group_norm.wgsl): torch.nn.GroupNorm over each
 * sample's groups of channels and all positions, with SiLU fused after it where the VAE's
 * blocks take one.
 *
 * @module
 */
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import type { KernelSpec, Recorder } from "../gpu/kernel.ts";
import { createTensor, type Tensor } from "../gpu/tensor.ts";
import type { ImageShape } from "../reference/conv.ts";
import src from "../../wgsl/group_norm.wgsl" with { type: "text" };

const WG = 256;
/** Elements a workgroup walks per stage (positions × channels of its group). */
const CHUNK_ELEMS = 8192;

interface Params {
  stage: number;
  s: ImageShape;
  groups: number;
  chunk: number;
  nc: number;
  silu: boolean;
  eps: number;
}

const specs = new Map<string, KernelSpec<Params>>();

function spec(dt: StorageType, stage: number): KernelSpec<Params> {
  const key = `${dt}:${stage}`;
  let k = specs.get(key);
  if (!k) {
    const c = composeWgsl(src, { storage: dt });
    k = {
      name: `group_norm_${stage}_${dt}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read", "read", "read_write", "read_write"],
      constants: () => ({ WG, STAGE: stage }),
      uniform: {
        fields: [
          "u32",
          "u32",
          "u32",
          "u32",
          "u32",
          "u32",
          "u32",
          "f32",
          "u32",
          "u32",
          "u32",
          "u32",
        ],
        values: (p) => {
          const cg = p.s.C / p.groups;
          const half = p.s.B * p.groups * p.nc;
          return [
            p.s.H * p.s.W,
            p.s.C,
            cg,
            p.groups,
            p.chunk,
            p.nc,
            p.silu ? 1 : 0,
            p.eps,
            half,
            0,
            0,
            0,
          ];
        },
      },
      dispatch: (p) => [p.nc, p.groups, p.s.B],
    };
    specs.set(key, k);
  }
  return k;
}

/** Options of {@linkcode groupNorm}. */
export interface GroupNormOptions {
  /** Groups G (C a multiple of G). */
  groups: number;
  /** ε; default 1e-6 (diffusers' VAE). */
  eps?: number;
  /** SiLU after the norm. */
  silu?: boolean;
}

/**
 * Records GroupNorm of channels-last x [B·H·W, C] with γ, β [C] (+ SiLU): a new tensor of
 * x's shape. Means and variances in f32, two passes over x.
 */
export function groupNorm(
  rec: Recorder,
  x: Tensor,
  s: ImageShape,
  gamma: Tensor,
  beta: Tensor,
  o: GroupNormOptions,
): Tensor {
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`groupNorm: x must be f32 or f16, got ${x.dtype}`);
  }
  if (x.size !== s.B * s.H * s.W * s.C) {
    throw new RangeError(`groupNorm: x [${x.shape}] is not [${s.B}, ${s.H}, ${s.W}, ${s.C}]`);
  }
  const G = o.groups;
  if (!Number.isInteger(G) || G < 1 || s.C % G !== 0) {
    throw new RangeError(`groupNorm: groups must divide ${s.C} channels, got ${G}`);
  }
  for (const [n, t] of [["gamma", gamma], ["beta", beta]] as const) {
    if (t.size !== s.C || t.dtype !== x.dtype) {
      throw new RangeError(
        `groupNorm: ${n} must be [${s.C}] ${x.dtype}, got [${t.shape}] ${t.dtype}`,
      );
    }
  }
  const P = s.H * s.W;
  const cg = s.C / G;
  const chunk = Math.max(1, Math.floor(CHUNK_ELEMS / cg));
  const nc = Math.ceil(P / chunk);
  const rt = rec.runtime;
  const out = createTensor(rt, x.shape, x.dtype);
  if (x.size === 0) return out;
  const part = createTensor(rt, [2, s.B, G, nc], "f32");
  const p = { s, groups: G, chunk, nc, silu: !!o.silu, eps: o.eps ?? 1e-6 };
  for (const stage of [0, 1, 2]) {
    rec.dispatch(spec(x.dtype, stage), { ...p, stage }, [x, gamma, beta, part, out]);
  }
  part.release();
  return out;
}
