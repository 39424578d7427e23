/**
 * Embedding kernels matching diffusers: the sinusoidal timestep embedding, the 2-D
 * sin-cos position embedding of PatchEmbed, and a row gather (embedding lookup).
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import { grid1d, type KernelSpec, Recorder } from "../gpu/kernel.ts";
import { createTensor, readTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import {
  posEmbed2dRef,
  type PosEmbed2dSettings,
  timestepEmbeddingRef,
  type TimestepEmbeddingSettings,
} from "../reference/embed.ts";
import { maxError, type SelfCheckResult } from "./selfcheck.ts";
import src from "../../wgsl/embed.wgsl" with { type: "text" };

const WG = 256;
const OPS = { timestep: 0, pos2d: 1, gather: 2 } as const;

interface Params {
  op: keyof typeof OPS;
  n: number;
  width: number;
  half?: number;
  flip?: number;
  negLogP?: number;
  denom?: number;
  scale?: number;
  rows?: number;
  gridW?: number;
  hStep?: number;
  wStep?: number;
  interp?: number;
}

const specs = new Map<StorageType, KernelSpec<Params>>();

/** The embedding kernel spec for a storage type (the op is an override constant). */
export function embedSpec(storage: StorageType): KernelSpec<Params> {
  let spec = specs.get(storage);
  if (!spec) {
    const c = composeWgsl(src, { storage });
    spec = {
      name: `embed_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read", "read_write"],
      constants: (p) => ({ WG, OP: OPS[p.op] }),
      uniform: {
        fields: [
          "u32",
          "u32",
          "u32",
          "u32",
          "f32",
          "f32",
          "f32",
          "u32",
          "u32",
          "f32",
          "f32",
          "f32",
        ],
        values: (p) => [
          ...[p.n, p.width, p.half ?? 0, p.flip ?? 0],
          ...[p.negLogP ?? 0, p.denom ?? 1, p.scale ?? 1, p.rows ?? 0],
          ...[p.gridW ?? 1, p.hStep ?? 1, p.wStep ?? 1, p.interp ?? 1],
        ],
      },
      dispatch: (p) => grid1d(Math.ceil(p.n / WG)),
    };
    specs.set(storage, spec);
  }
  return spec;
}

/** Options of {@linkcode timestepEmbedding}. */
export interface TimestepEmbeddingOptions extends TimestepEmbeddingSettings {
  /** Output storage; default "f32". */
  dtype?: StorageType;
  /** Where to write [n, dim]. */
  out?: Tensor;
}

/**
 * Records diffusers' get_timestep_embedding for f32 timesteps [n] (fractional allowed)
 * and returns [n, dim]. PixArt's Timesteps(256, flip_sin_to_cos=True,
 * downscale_freq_shift=0) is `{ flipSinToCos: true, downscaleFreqShift: 0 }`; note
 * diffusers' own defaults are flip false, shift 1.
 */
export function timestepEmbedding(
  rec: Recorder,
  timesteps: Tensor,
  dim: number,
  opts: TimestepEmbeddingOptions = {},
): Tensor {
  const op = "timestepEmbedding";
  if (timesteps.dtype !== "f32" || timesteps.shape.length !== 1) {
    throw new TypeError(
      `${op}: timesteps must be f32 [n], got ${timesteps.dtype} [${timesteps.shape}]`,
    );
  }
  if (!Number.isInteger(dim) || dim < 2) {
    throw new RangeError(`${op}: dim must be an integer ≥ 2, got ${dim}`);
  }
  const half = Math.floor(dim / 2);
  const shift = opts.downscaleFreqShift ?? 1;
  const maxPeriod = opts.maxPeriod ?? 10000;
  if (!(half - shift !== 0 && Number.isFinite(shift))) {
    throw new RangeError(
      `${op}: downscaleFreqShift ${shift} leaves no frequency spacing for dim ${dim}`,
    );
  }
  if (!(maxPeriod > 0)) throw new RangeError(`${op}: maxPeriod must be > 0, got ${maxPeriod}`);
  const n = timesteps.shape[0];
  const dtype = opts.dtype ?? "f32";
  const out = outTensor(rec, op, opts.out, [n, dim], dtype);
  rec.dispatch(
    embedSpec(dtype),
    {
      op: "timestep",
      n: n * dim,
      width: dim,
      half,
      flip: opts.flipSinToCos ? 1 : 0,
      negLogP: -Math.log(maxPeriod),
      denom: half - shift,
      scale: opts.scale ?? 1,
    },
    [timesteps, timesteps, out],
  );
  return out;
}

/** Options of {@linkcode posEmbed2d}. */
export interface PosEmbed2dOptions extends PosEmbed2dSettings {
  /** Output storage; default "f32". */
  dtype?: StorageType;
  /** Where to write [gridH·gridW, embedDim]. */
  out?: Tensor;
}

/**
 * Records PatchEmbed's 2-D sin-cos position embedding [gridH·gridW, E] for tokens in
 * row-major (h, w) order (see {@linkcode posEmbed2dRef} for the column layout). It is
 * constant per resolution: compute it once and add it with elementwise "addRow".
 * Matches the f64 reference to ~2e-6 (f32 arguments); upload posEmbed2dRef's output
 * instead where bit-exactness with diffusers matters.
 */
export function posEmbed2d(rec: Recorder, opts: PosEmbed2dOptions): Tensor {
  const op = "posEmbed2d";
  const { embedDim: E, gridH: H, gridW: W } = opts;
  if (!Number.isInteger(E) || E < 4 || E % 4 !== 0) {
    throw new RangeError(`${op}: embedDim must be a positive multiple of 4, got ${E}`);
  }
  for (const [name, v] of [["gridH", H], ["gridW", W]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`${op}: ${name} must be a positive integer, got ${v}`);
    }
  }
  if (!(opts.baseSize > 0) || !(opts.interpolationScale > 0)) {
    throw new RangeError(`${op}: baseSize and interpolationScale must be > 0`);
  }
  const dtype = opts.dtype ?? "f32";
  const out = outTensor(rec, op, opts.out, [H * W, E], dtype);
  // The kernel reads no input: bind a scratch word to the read-only slots.
  const dummy = createTensor(rec.runtime, [1], "u32");
  rec.dispatch(
    embedSpec(dtype),
    {
      op: "pos2d",
      n: H * W * E,
      width: E,
      half: E / 2,
      negLogP: -Math.log(10000) / (E / 4),
      gridW: W,
      hStep: H / opts.baseSize,
      wStep: W / opts.baseSize,
      interp: opts.interpolationScale,
    },
    [dummy, dummy, out],
  );
  dummy.release(); // recorded work keeps it valid until it has run
  return out;
}

/** Records out[i] = table[ids[i]] for u32 ids [n] and table [V, C]; ids ≥ V give zeros. */
export function gatherRows(rec: Recorder, table: Tensor, ids: Tensor, out?: Tensor): Tensor {
  const op = "gatherRows";
  if (table.shape.length !== 2 || (table.dtype !== "f32" && table.dtype !== "f16")) {
    throw new TypeError(`${op}: table must be f32/f16 [V, C], got ${table.dtype} [${table.shape}]`);
  }
  if (ids.dtype !== "u32" || ids.shape.length !== 1) {
    throw new TypeError(`${op}: ids must be u32 [n], got ${ids.dtype} [${ids.shape}]`);
  }
  const [V, C] = table.shape;
  const n = ids.shape[0];
  const o = outTensor(rec, op, out, [n, C], table.dtype);
  if (o.buffer === table.buffer) {
    throw new RangeError(`${op}: out must not share the table's buffer`);
  }
  rec.dispatch(embedSpec(table.dtype), { op: "gather", n: n * C, width: C, rows: V }, [
    ids,
    table,
    o,
  ]);
  return o;
}

function outTensor(
  rec: Recorder,
  op: string,
  out: Tensor | undefined,
  shape: number[],
  dtype: StorageType,
): Tensor {
  if (!out) return createTensor(rec.runtime, shape, dtype);
  if (out.size !== shape[0] * shape[1] || out.dtype !== dtype) {
    throw new RangeError(`${op}: out must be [${shape}] ${dtype}, got [${out.shape}] ${out.dtype}`);
  }
  return out;
}

/** Self-check for doctor: PixArt's timestep embedding and a small position embedding. */
export async function embedSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const ts = new Float32Array([0, 1, 250.5, 999]);
  const t = uploadTensor(rt, ts, [4]);
  const pix = { flipSinToCos: true, downscaleFreqShift: 0 };
  const pos = { embedDim: 32, gridH: 3, gridW: 5, baseSize: 4, interpolationScale: 2 };
  const rec = new Recorder(rt);
  const te = timestepEmbedding(rec, t, 256, pix);
  const pe = posEmbed2d(rec, pos);
  await rec.submit();
  const tErr = maxError(await readTensor(rt, te), timestepEmbeddingRef(ts, 256, pix));
  const pErr = maxError(await readTensor(rt, pe), posEmbed2dRef(pos));
  // A 1-ulp difference in a frequency moves an argument near t = 999 by ~6e-5.
  return [
    { name: "timestep_embedding_f32", ok: tErr <= 2.5e-4, maxError: tErr, tolerance: 2.5e-4 },
    { name: "pos_embed_2d_f32", ok: pErr <= 1e-5, maxError: pErr, tolerance: 1e-5 },
  ];
}
