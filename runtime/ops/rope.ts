/**
 * Rotary position embedding (FLUX's FluxPosEmbed + apply_rotary_emb) fused with the
 * per-head RMSNorm that precedes it (norm_q/k, norm_added_q/k) and with the
 * concatenation of the text and image streams: one kernel turns the q (or k) projections
 * of both streams into the joint, rotated [B, L + T, H·D] operand of attention.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import { grid1d, type KernelSpec, Recorder } from "../gpu/kernel.ts";
import { createTensor, readTensor, Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { fluxPositionIds, ropeFreqs, ropeRef } from "../reference/rope.ts";
import { maxError, type SelfCheckResult } from "./selfcheck.ts";
import src from "../../wgsl/rope.wgsl" with { type: "text" };

/** One input of {@linkcode rope}: a [B, T, W] tensor read as heads from a column. */
export interface RopePart {
  /** The tensor [B, T, W] (or [B·T, W] with `tokens`). */
  tensor: Tensor;
  /** Tokens T when `tensor` is 2-D [B·T, W]; default shape[1] of a 3-D tensor. */
  tokens?: number;
  /** Column of head 0's first element; default 0. */
  column?: number;
  /** RMSNorm weight [D] of this part (used with `normalize`). */
  normWeight?: Tensor;
}

/** Options of {@linkcode rope}. */
export interface RopeOptions {
  /** Batch B (needed when every part is 2-D); default the first 3-D part's shape[0]. */
  batch?: number;
  /** Heads H. */
  heads: number;
  /** Head dim D (even); default (W − column) / H of the first part. */
  headDim?: number;
  /** RMS-normalise each head before rotating (FLUX's q/k norms); default false. */
  normalize?: boolean;
  /** Added to the mean square; default 1e-6 (FLUX). */
  eps?: number;
  /** Where to write [B, ΣT, H·D]; must not share a buffer with an input. */
  out?: Tensor;
  /** Threads per (token, head) workgroup (a power of two); default by D and adapter. */
  threads?: number;
}

interface Params {
  wg: number;
  groups: number;
  s: number;
  heads: number;
  half: number;
  t0: number;
  row0: number;
  col0: number;
  flags: number;
  row1: number;
  col1: number;
  eps: number;
}

const specs = new Map<StorageType, KernelSpec<Params>>();

/** The rope kernel spec for a storage type. */
export function ropeSpec(storage: StorageType): KernelSpec<Params> {
  let spec = specs.get(storage);
  if (!spec) {
    const c = composeWgsl(src, { storage });
    spec = {
      name: `rope_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read", "read", "read", "read", "read_write"],
      constants: (p) => ({ WG: p.wg }),
      uniform: {
        fields: [
          ...["u32", "u32", "u32", "u32"],
          ...["u32", "u32", "u32", "u32"],
          ...["u32", "u32", "f32", "u32"],
        ] as const,
        values: (p) => [
          ...[p.groups, p.s, p.heads, p.half],
          ...[p.t0, p.row0, p.col0, p.flags],
          ...[p.row1, p.col1, p.eps, 0],
        ],
      },
      dispatch: (p) => grid1d(p.groups),
    };
    specs.set(storage, spec);
  }
  return spec;
}

function part(x: Tensor | RopePart): RopePart {
  return x instanceof Tensor ? { tensor: x } : x;
}

/**
 * Records the joint rotated operand: the parts (≤ 2, e.g. [text, image]) concatenated
 * along tokens, each head RMS-normalised with its part's weight when `normalize`, then
 * rotated by `freqs` [ΣT, D/2, 2] f32 (cos, sin per token and pair; see
 * runtime/reference/rope.ts `ropeFreqs`). Returns [B, ΣT, H·D] in the parts' dtype.
 */
export function rope(
  rec: Recorder,
  parts: readonly (Tensor | RopePart)[],
  freqs: Tensor,
  opts: RopeOptions,
): Tensor {
  const op = "rope";
  if (parts.length < 1 || parts.length > 2) {
    throw new RangeError(`${op}: takes one or two parts, got ${parts.length}`);
  }
  const ps = parts.map(part);
  const dtype = ps[0].tensor.dtype;
  if (dtype !== "f32" && dtype !== "f16") {
    throw new TypeError(`${op}: parts must be f32 or f16, got ${dtype}`);
  }
  const H = opts.heads;
  if (!Number.isInteger(H) || H < 1) {
    throw new RangeError(`${op}: heads must be a positive integer, got ${H}`);
  }
  const W0 = ps[0].tensor.shape[ps[0].tensor.shape.length - 1];
  const D = opts.headDim ?? (W0 - (ps[0].column ?? 0)) / H;
  if (!Number.isInteger(D) || D < 2 || D % 2) {
    throw new RangeError(`${op}: headDim must be an even integer ≥ 2, got ${D}`);
  }
  let B = opts.batch;
  for (const p of ps) if (B === undefined && p.tensor.shape.length === 3) B = p.tensor.shape[0];
  if (B === undefined || !Number.isInteger(B) || B < 1) {
    throw new RangeError(`${op}: give batch when every part is 2-D`);
  }
  const geo = ps.map((p, i) => {
    const s = p.tensor.shape;
    const W = s[s.length - 1];
    const T = p.tokens ?? (s.length === 3 ? s[1] : p.tensor.size / W / B!);
    const col = p.column ?? 0;
    if (p.tensor.dtype !== dtype) {
      throw new TypeError(`${op}: parts[0] is ${dtype} but parts[${i}] is ${p.tensor.dtype}`);
    }
    if ((s.length !== 2 && s.length !== 3) || !Number.isInteger(T) || T < 1) {
      throw new RangeError(`${op}: parts[${i}] must be [B, T, W] or [B·T, W], got [${s}]`);
    }
    if (p.tensor.size !== B! * T * W) {
      throw new RangeError(`${op}: parts[${i}] [${s}] is not ${B} × ${T} rows of ${W}`);
    }
    if (!Number.isInteger(col) || col < 0 || col + H * D > W) {
      throw new RangeError(
        `${op}: parts[${i}] columns ${col}..${col + H * D} exceed its width ${W}`,
      );
    }
    const w = p.normWeight;
    if (w && (w.size !== D || w.dtype !== dtype)) {
      throw new RangeError(
        `${op}: parts[${i}].normWeight must be [${D}] ${dtype}, got [${w.shape}] ${w.dtype}`,
      );
    }
    return { T, W, col };
  });
  const S = geo.reduce((a, g) => a + g.T, 0);
  if (freqs.dtype !== "f32" || freqs.size !== S * D) {
    throw new RangeError(
      `${op}: freqs must be [${S}, ${D / 2}, 2] f32, got [${freqs.shape}] ${freqs.dtype}`,
    );
  }
  const eps = opts.eps ?? 1e-6;
  if (!(eps >= 0) || !Number.isFinite(eps)) {
    throw new RangeError(`${op}: eps must be a finite number ≥ 0, got ${eps}`);
  }
  const out = opts.out ?? createTensor(rec.runtime, [B, S, H * D], dtype);
  if (out.size !== B * S * H * D || out.dtype !== dtype) {
    throw new RangeError(`${op}: out must be [${B}, ${S}, ${H * D}] ${dtype}`);
  }
  const inputs = [...ps.map((p) => p.tensor), ...ps.map((p) => p.normWeight), freqs];
  if (inputs.some((t) => t?.buffer === out.buffer)) {
    throw new RangeError(`${op}: out must not share a buffer with an input`);
  }
  const last = ps[ps.length - 1];
  const norm = opts.normalize ?? false;
  const flags = (norm ? 1 : 0) | (norm && ps[0].normWeight ? 2 : 0) |
    (norm && ps.length > 1 && ps[1].normWeight ? 4 : 0);
  // CPU adapters pay for every barrier step: fewer threads with longer loops there.
  const wg = opts.threads ??
    Math.min(rec.runtime.info.fallback ? 16 : 64, 2 ** Math.ceil(Math.log2(Math.max(1, D / 2))));
  if (!Number.isInteger(Math.log2(wg)) || wg < 1 || wg > 256) {
    throw new RangeError(`${op}: threads must be a power of two ≤ 256, got ${wg}`);
  }
  const one = ps.length === 1;
  rec.dispatch(
    ropeSpec(dtype),
    {
      wg,
      groups: B * S * H,
      s: S,
      heads: H,
      half: D / 2,
      t0: one ? S : geo[0].T,
      row0: geo[0].W,
      col0: geo[0].col,
      flags,
      row1: geo[geo.length - 1].W,
      col1: geo[geo.length - 1].col,
      eps,
    },
    [
      ps[0].tensor,
      last.tensor,
      ps[0].normWeight ?? ps[0].tensor,
      last.normWeight ?? last.tensor,
      freqs,
      out,
    ],
  );
  return out;
}

/** Self-check for doctor: two parts with RMSNorm and the FLUX ids at a small odd shape. */
export async function ropeSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const [B, L, h, w, H, D] = [2, 3, 2, 3, 3, 16];
  const g = new Prng(31);
  const T = h * w;
  const xt = g.normals(B * L * H * D);
  const xi = g.normals(B * T * H * D).map((v) => 3 * v);
  const wt = g.normals(D);
  const wi = g.normals(D);
  const f = ropeFreqs(fluxPositionIds(L, h, w), [4, 6, 6]);
  const rec = new Recorder(rt);
  const y = rope(
    rec,
    [
      { tensor: uploadTensor(rt, xt, [B, L, H * D]), normWeight: uploadTensor(rt, wt, [D]) },
      { tensor: uploadTensor(rt, xi, [B, T, H * D]), normWeight: uploadTensor(rt, wi, [D]) },
    ],
    uploadTensor(rt, f, [L + T, D / 2, 2]),
    { heads: H, normalize: true },
  );
  await rec.submit();
  const ref = ropeRef(
    [
      { data: xt, tokens: L, width: H * D, normWeight: wt },
      { data: xi, tokens: T, width: H * D, normWeight: wi },
    ],
    f,
    { batch: B, heads: H, headDim: D, normalize: true },
  );
  const err = maxError(await readTensor(rt, y), ref);
  return [{ name: "rope_rms_f32", ok: err <= 1e-5, maxError: err, tolerance: 1e-5 }];
}
