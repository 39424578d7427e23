/**
 * FLUX's 2×2 latent packing on the GPU: the model takes unpacked latents [B, C, H, W]
 * (the sampler's and the CLI's layout) and packs them into tokens [B·(H/2)·(W/2), 4·C]
 * (pipeline_flux `_pack_latents`, which is im2col with patch 2), and unpacks its output.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { composeWgsl, type StorageType } from "../gpu/compose.ts";
import { grid1d, type KernelSpec, Recorder } from "../gpu/kernel.ts";
import { createTensor, readTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { packLatentsRef, unpackLatentsRef } from "../reference/latent_pack.ts";
import { im2col } from "./patch.ts";
import { maxError, type SelfCheckResult } from "./selfcheck.ts";
import src from "../../wgsl/latent_unpack.wgsl" with { type: "text" };

const WG = 256;

interface Params {
  n: number;
  ch: number;
  p: number;
  gh: number;
  gw: number;
}

const specs = new Map<StorageType, KernelSpec<Params>>();

/** The unpack kernel spec for a storage type. */
export function latentUnpackSpec(storage: StorageType): KernelSpec<Params> {
  let spec = specs.get(storage);
  if (!spec) {
    const c = composeWgsl(src, { storage });
    spec = {
      name: `latent_unpack_${storage}`,
      source: c.source,
      preludeLines: c.preludeLines,
      bindings: ["uniform", "read", "read_write"],
      constants: () => ({ WG }),
      uniform: {
        fields: ["u32", "u32", "u32", "u32", "u32", "u32", "u32", "u32"],
        values: (p) => [p.n, p.ch, p.p, p.gh, p.gw, 0, 0, 0],
      },
      dispatch: (p) => grid1d(Math.ceil(p.n / WG)),
    };
    specs.set(storage, spec);
  }
  return spec;
}

/**
 * Records `_pack_latents`: x [B, C, H, W] (H, W even) → [B·(H/2)·(W/2), 4·C], channel
 * (c, dy, dx) = 4c + 2dy + dx, tokens in raster order of the 2×2 cells.
 */
export function packLatents(rec: Recorder, x: Tensor, out?: Tensor): Tensor {
  if (x.shape.length !== 4 || x.shape[2] % 2 || x.shape[3] % 2) {
    throw new RangeError(`packLatents: x must be [B, C, H, W] with H, W even, got [${x.shape}]`);
  }
  return im2col(rec, x, 2, out);
}

/** The latent grid of {@linkcode unpackLatents}. */
export interface UnpackOptions {
  /** Latent height H (even). */
  height: number;
  /** Latent width W (even). */
  width: number;
  /** Latent channels C (the packed rows hold 4·C). */
  channels: number;
  /** Where to write [B, C, H, W]. */
  out?: Tensor;
}

/** Records `_unpack_latents`: x [B, (H/2)·(W/2), 4·C] (or 2-D rows) → [B, C, H, W]. */
export function unpackLatents(rec: Recorder, x: Tensor, o: UnpackOptions): Tensor {
  const op = "unpackLatents";
  const { height: H, width: W, channels: C } = o;
  if (x.dtype !== "f32" && x.dtype !== "f16") {
    throw new TypeError(`${op}: x must be f32 or f16, got ${x.dtype}`);
  }
  for (const [k, v] of [["height", H], ["width", W], ["channels", C]] as const) {
    if (!Number.isInteger(v) || v < 1 || (k !== "channels" && v % 2)) {
      throw new RangeError(
        `${op}: ${k} must be a positive${k === "channels" ? "" : " even"} integer, got ${v}`,
      );
    }
  }
  const cell = (H / 2) * (W / 2) * 4 * C;
  if (x.size % cell !== 0 || x.shape[x.shape.length - 1] !== 4 * C) {
    throw new RangeError(`${op}: x [${x.shape}] is not [B, ${(H / 2) * (W / 2)}, ${4 * C}]`);
  }
  const B = x.size / cell;
  const out = o.out ?? createTensor(rec.runtime, [B, C, H, W], x.dtype);
  if (out.size !== x.size || out.dtype !== x.dtype) {
    throw new RangeError(`${op}: out must be [${B}, ${C}, ${H}, ${W}] ${x.dtype}`);
  }
  if (out.buffer === x.buffer) throw new RangeError(`${op}: out must not share x's buffer`);
  rec.dispatch(
    latentUnpackSpec(x.dtype),
    { n: x.size, ch: C, p: 2, gh: H / 2, gw: W / 2 },
    [x, out],
  );
  return out;
}

/** Self-check for doctor: pack then unpack at a non-square shape, against the references. */
export async function latentPackSelfCheck(rt: Runtime): Promise<SelfCheckResult[]> {
  const shape = [2, 3, 4, 6];
  const xs = new Prng(37).normals(2 * 3 * 4 * 6);
  const rec = new Recorder(rt);
  const packed = packLatents(rec, uploadTensor(rt, xs, shape));
  const back = unpackLatents(rec, uploadTensor(rt, packLatentsRef(xs, shape), [2, 6, 12]), {
    height: 4,
    width: 6,
    channels: 3,
  });
  await rec.submit();
  const e1 = maxError(await readTensor(rt, packed), packLatentsRef(xs, shape));
  const e2 = maxError(
    await readTensor(rt, back),
    unpackLatentsRef(packLatentsRef(xs, shape), shape),
  );
  return [
    { name: "latent_pack_f32", ok: e1 === 0, maxError: e1, tolerance: 0 },
    { name: "latent_unpack_f32", ok: e2 === 0, maxError: e2, tolerance: 0 },
  ];
}
