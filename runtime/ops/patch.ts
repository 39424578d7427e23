/**
 * Layout kernels of a DiT: PatchEmbed's stride-p conv as im2col + GEMM, PixArt's
 * unpatchify, and concat/slice along any axis (e.g. FLUX's [text, image] tokens).
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import { grid1d, type KernelSpec, Recorder, type UniformField } from "../gpu/kernel.ts";
import { createTensor, numel, readTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { im2colRef, unpatchifyRef } from "../reference/patch.ts";
import { maxError, type SelfCheckResult } from "./selfcheck.ts";
import src from "../../wgsl/patch.wgsl" with { type: "text" };

const WG = 256;
const OPS = { im2col: 0, unpatchify: 1, copy2d: 2 } as const;

interface Params {
  op: keyof typeof OPS;
  n: number;
  ch?: number;
  p?: number;
  gh?: number;
  gw?: number;
  hh?: number;
  ww?: number;
  cols?: number;
  sOff?: number;
  sStride?: number;
  dOff?: number;
  dStride?: number;
}

const specs = new Map<StorageType, KernelSpec<Params>>();

/** The layout kernel spec for a storage type (the op is an override constant). */
export function patchSpec(storage: StorageType): KernelSpec<Params> {
  let spec = specs.get(storage);
  if (!spec) {
    const c = composeWgsl(src, { storage });
    spec = {
      name: `patch_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read_write"],
      constants: (p) => ({ WG, OP: OPS[p.op] }),
      uniform: {
        fields: new Array<UniformField>(12).fill("u32"),
        values: (p) => [
          ...[p.n, p.ch ?? 0, p.p ?? 1, p.gh ?? 0],
          ...[p.gw ?? 0, p.hh ?? 0, p.ww ?? 0, p.cols ?? 1],
          ...[p.sOff ?? 0, p.sStride ?? 0, p.dOff ?? 0, p.dStride ?? 0],
        ],
      },
      dispatch: (p) => grid1d(Math.ceil(p.n / WG)),
    };
    specs.set(storage, spec);
  }
  return spec;
}

function floatDtype(op: string, name: string, x: Tensor): StorageType {
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`${op}: ${name} must be f32 or f16, got ${x.dtype}`);
  }
  return x.dtype;
}

function target(
  rec: Recorder,
  op: string,
  out: Tensor | undefined,
  shape: number[],
  dtype: StorageType,
  inputs: Tensor[],
): Tensor {
  const o = out ?? createTensor(rec.runtime, shape, dtype);
  if (o.size !== numel(shape) || o.dtype !== dtype) {
    throw new RangeError(`${op}: out must be [${shape}] ${dtype}, got [${o.shape}] ${o.dtype}`);
  }
  if (inputs.some((t) => t.buffer === o.buffer)) {
    throw new RangeError(`${op}: out must not share a buffer with an input`);
  }
  return o;
}

/**
 * Records PatchEmbed's patch extraction: x [B, C, H, W] → [B·h·w, C·p·p] (h = ⌊H/p⌋,
 * w = ⌊W/p⌋, tokens in row-major (h, w) order as `flatten(2).transpose(1, 2)`), columns
 * in the order of the conv weight [out, C, p, p] flattened to [out, C·p·p]; so
 * `gemm(im2col(x), weight.reshape([out, C·p·p]), { bias })` is the conv, as [B·h·w, out].
 */
export function im2col(rec: Recorder, x: Tensor, patch: number, out?: Tensor): Tensor {
  const op = "im2col";
  const dtype = floatDtype(op, "x", x);
  if (x.shape.length !== 4) throw new RangeError(`${op}: x must be [B, C, H, W], got [${x.shape}]`);
  const [B, C, H, W] = x.shape;
  if (!Number.isInteger(patch) || patch < 1 || patch > Math.min(H, W)) {
    throw new RangeError(`${op}: patch must be an integer in 1..${Math.min(H, W)}, got ${patch}`);
  }
  const gh = Math.floor(H / patch);
  const gw = Math.floor(W / patch);
  const shape = [B * gh * gw, C * patch * patch];
  const o = target(rec, op, out, shape, dtype, [x]);
  rec.dispatch(
    patchSpec(dtype),
    { op: "im2col", n: numel(shape), ch: C, p: patch, gh, gw, hh: H, ww: W },
    [x, o],
  );
  return o;
}

/** The token grid and channels of {@linkcode unpatchify}. */
export interface UnpatchifyOptions {
  /** Grid height h (latent height / patch). */
  height: number;
  /** Grid width w. */
  width: number;
  /** Patch size p. */
  patch: number;
  /** Output channels C (PixArt: out_channels, 8 with learned sigma). */
  channels: number;
  /** Where to write [B, C, h·p, w·p]. */
  out?: Tensor;
}

/**
 * Records PixArt's unpatchify: x [B, h·w, p·p·C] (or [B·h·w, p·p·C]) → reshape
 * (B, h, w, p, p, C) → einsum "nhwpqc->nchpwq" → [B, C, h·p, w·p].
 */
export function unpatchify(rec: Recorder, x: Tensor, o: UnpatchifyOptions): Tensor {
  const op = "unpatchify";
  const dtype = floatDtype(op, "x", x);
  const { height: h, width: w, patch: p, channels: C } = o;
  for (const [name, v] of [["height", h], ["width", w], ["patch", p], ["channels", C]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`${op}: ${name} must be a positive integer, got ${v}`);
    }
  }
  const tokenSize = h * w * p * p * C;
  if (x.size % tokenSize !== 0 || x.shape[x.shape.length - 1] !== p * p * C) {
    throw new RangeError(`${op}: x [${x.shape}] is not [B, ${h}·${w}, ${p}·${p}·${C}]`);
  }
  const B = x.size / tokenSize;
  const shape = [B, C, h * p, w * p];
  const out = target(rec, op, o.out, shape, dtype, [x]);
  rec.dispatch(patchSpec(dtype), { op: "unpatchify", n: x.size, ch: C, p, gh: h, gw: w }, [x, out]);
  return out;
}

function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) {
    throw new RangeError(`${op}: axis ${axis} is out of range for rank ${rank}`);
  }
  return a;
}

/**
 * Records the concatenation of `parts` along `axis` (default the last): one strided copy
 * per part. All parts share dtype and every other dim.
 */
export function concat(rec: Recorder, parts: readonly Tensor[], axis = -1, out?: Tensor): Tensor {
  const op = "concat";
  if (parts.length < 1) throw new RangeError(`${op}: needs at least one part`);
  const first = parts[0];
  const dtype = floatDtype(op, "parts[0]", first);
  const rank = first.shape.length;
  const a = normAxis(op, axis, rank);
  for (const [i, t] of parts.entries()) {
    if (t.dtype !== dtype) {
      throw new TypeError(`${op}: parts[${i}] is ${t.dtype}, parts[0] is ${dtype}`);
    }
    if (t.shape.length !== rank || t.shape.some((d, k) => k !== a && d !== first.shape[k])) {
      throw new RangeError(
        `${op}: parts[${i}] [${t.shape}] does not match [${first.shape}] off axis ${a}`,
      );
    }
  }
  const shape = [...first.shape];
  shape[a] = parts.reduce((s, t) => s + t.shape[a], 0);
  const o = target(rec, op, out, shape, dtype, [...parts]);
  const outer = numel(shape.slice(0, a));
  const width = numel(shape.slice(a));
  let off = 0;
  for (const t of parts) {
    const cols = numel(t.shape.slice(a));
    if (cols > 0 && outer > 0) {
      rec.dispatch(
        patchSpec(dtype),
        { op: "copy2d", n: outer * cols, cols, sOff: 0, sStride: cols, dOff: off, dStride: width },
        [t, o],
      );
    }
    off += cols;
  }
  return o;
}

/** Records x[..., start : start + length, ...] along `axis` as a new tensor. */
export function slice(
  rec: Recorder,
  x: Tensor,
  axis: number,
  start: number,
  length: number,
  out?: Tensor,
): Tensor {
  const op = "slice";
  const dtype = floatDtype(op, "x", x);
  const a = normAxis(op, axis, x.shape.length);
  const dim = x.shape[a];
  if (
    !Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 1 ||
    start + length > dim
  ) {
    throw new RangeError(`${op}: ${start}..${start + length} is outside axis ${a} of size ${dim}`);
  }
  const shape = [...x.shape];
  shape[a] = length;
  const o = target(rec, op, out, shape, dtype, [x]);
  const inner = numel(x.shape.slice(a + 1));
  const outer = numel(x.shape.slice(0, a));
  const cols = length * inner;
  rec.dispatch(
    patchSpec(dtype),
    {
      op: "copy2d",
      n: outer * cols,
      cols,
      sOff: start * inner,
      sStride: dim * inner,
      dOff: 0,
      dStride: cols,
    },
    [x, o],
  );
  return o;
}

/** Self-check for doctor: im2col and unpatchify at small odd shapes. */
export async function patchSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const [B, C, H, W, p] = [2, 3, 6, 10, 2];
  const xs = new Prng(23).normals(B * C * H * W);
  const x = uploadTensor(rt, xs, [B, C, H, W]);
  const rec = new Recorder(rt);
  const cols = im2col(rec, x, p);
  const img = unpatchify(rec, x.reshape([B, (H / p) * (W / p), p * p * C]), {
    height: H / p,
    width: W / p,
    patch: p,
    channels: C,
  });
  await rec.submit();
  const e1 = maxError(await readTensor(rt, cols), im2colRef(xs, [B, C, H, W], p));
  const e2 = maxError(await readTensor(rt, img), unpatchifyRef(xs, B, H / p, W / p, p, C));
  return [
    { name: "im2col_f32", ok: e1 === 0, maxError: e1, tolerance: 0 },
    { name: "unpatchify_f32", ok: e2 === 0, maxError: e2, tolerance: 0 },
  ];
}
