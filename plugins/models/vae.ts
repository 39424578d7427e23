/**
 * diffusers' AutoencoderKL decoder on WebGPU: latents [B, C, h, w] → images [B, 3, H, W] in
 * [−1, 1], as `vae.decode(latents / scaling_factor + shift_factor)` (PixArt: no shift; FLUX:
 * after unpacking). post_quant_conv → conv_in → mid block (resnet, self-attention, resnet)
 * → up blocks (resnets, nearest 2× upsample + conv) → GroupNorm + SiLU → conv_out.
 *
 * Images are channels last inside ([B·H·W, C]): convolutions are im2col + GEMM
 * (runtime/ops/conv.ts), the mid block's single-head attention over all positions is a
 * GEMM for the scores, a row softmax and a GEMM with vᵀ, in chunks of query rows.
 *
 * @module
 */
import { CheckpointError } from "../../runtime/errors.ts";
import type { Runtime } from "../../runtime/gpu/device.ts";
import type { Recorder } from "../../runtime/gpu/kernel.ts";
import { createTensor, type Tensor, uploadTensor } from "../../runtime/gpu/tensor.ts";
import type { TensorSource } from "../../runtime/io/safetensors.ts";
import { WeightLoader } from "../../runtime/model/weights.ts";
import { gatherRowRuns } from "../../runtime/ops/row_runs.ts";
import { conv3x3, type Conv3x3Options, transposeImage } from "../../runtime/ops/conv.ts";
import { elementwise } from "../../runtime/ops/elementwise.ts";
import { gemm } from "../../runtime/ops/gemm.ts";
import { groupNorm } from "../../runtime/ops/group_norm.ts";
import { softmax } from "../../runtime/ops/softmax.ts";
import { conv3x3WeightNhwc, type ImageShape } from "../../runtime/reference/conv.ts";
import {
  LEGACY_ATTENTION,
  type VaeConfig,
  vaeLayout,
  type VaeResnet,
  vaeScale,
  vaeWeightShapes,
} from "./vae_config.ts";

interface Conv {
  w: Tensor;
  b: Tensor;
}
interface Norm {
  g: Tensor;
  b: Tensor;
}

/** How the decoder's convolutions run (Conv3x3Options' chunkBytes and im2col). */
type ConvChoice = Pick<Conv3x3Options, "chunkBytes" | "im2col">;

/** Bytes a chunk of attention scores may take (also capped by the binding limit). */
const SCORE_CHUNK_BYTES = 128 * 2 ** 20;

/** A loaded AutoencoderKL decoder (f32). */
export class VaeDecoder {
  /** The parsed config. */
  readonly config: VaeConfig;
  /** Pixels per latent cell (8 for 4 levels). */
  readonly scale: number;
  readonly #t: Map<string, Conv | Norm>;
  readonly #all: Tensor[];

  /** Use {@linkcode loadVaeDecoder}. */
  constructor(config: VaeConfig, tensors: Map<string, Conv | Norm>, all: Tensor[]) {
    this.config = config;
    this.scale = vaeScale(config);
    this.#t = tensors;
    this.#all = all;
  }

  /** Bytes of the decoder's weights on the GPU. */
  get weightBytes(): number {
    return this.#all.reduce((s, t) => s + t.byteLength, 0);
  }

  #conv(name: string): Conv {
    return this.#t.get(name) as Conv;
  }

  #norm(name: string): Norm {
    return this.#t.get(name) as Norm;
  }

  /**
   * Records the decoder on model-space latents z [B, C, h, w] (f32): divides by
   * scaling_factor and adds shift_factor first, as the pipelines do. Returns [B, 3, H, W].
   * `chunkBytes` caps the im2col and attention-score chunks (default 128 MiB or the binding
   * limit, whichever is smaller); `im2col: "explicit"` writes the convolutions' im2col
   * (runtime/ops/conv.ts) where the GEMM could read the image directly.
   */
  decode(
    rec: Recorder,
    z: Tensor,
    opts: { chunkBytes?: number; im2col?: "implicit" | "explicit" } = {},
  ): Tensor {
    const c = this.config;
    if (z.shape.length !== 4 || z.shape[1] !== c.latentChannels || z.dtype !== "f32") {
      throw new RangeError(
        `vae: latents must be [B, ${c.latentChannels}, h, w] f32, got [${z.shape}] ${z.dtype}`,
      );
    }
    const [B, L, h, w] = z.shape;
    const cb = { chunkBytes: opts.chunkBytes, im2col: opts.im2col };
    const tmp: Tensor[] = [];
    const keep = (t: Tensor) => (tmp.push(t), t);
    try {
      const zs = keep(
        elementwise(rec, "affine", z, { alpha: 1 / c.scalingFactor, beta: c.shiftFactor }),
      );
      let x = keep(transposeImage(rec, zs, B, L, h * w)); // [B, h·w, L]
      let s: ImageShape = { B, H: h, W: w, C: L };
      if (c.usePostQuantConv) {
        const pq = this.#conv("post_quant_conv");
        x = keep(gemm(rec, x.reshape([B * h * w, L]), pq.w, { bias: pq.b }));
      }
      const top = c.blockOutChannels[c.blockOutChannels.length - 1];
      const cin = this.#conv("decoder.conv_in");
      x = keep(conv3x3(rec, x.reshape([B * h * w, L]), s, cin.w, { bias: cin.b, ...cb }));
      s = { ...s, C: top };
      const { mid, up } = vaeLayout(c);
      x = keep(this.#resnet(rec, x, s, mid[0], cb));
      if (c.midBlockAddAttention) x = keep(this.#attention(rec, x, s, cb));
      x = keep(this.#resnet(rec, x, s, mid[1], cb));
      for (const blk of up) {
        for (const r of blk.resnets) {
          x = keep(this.#resnet(rec, x, s, r, cb));
          s = { ...s, C: r.cout };
        }
        if (blk.upsample) {
          const u = this.#conv(`${blk.prefix}.upsamplers.0.conv`);
          x = keep(conv3x3(rec, x, s, u.w, { bias: u.b, upsample: true, ...cb }));
          s = { ...s, H: 2 * s.H, W: 2 * s.W };
        }
      }
      const no = this.#norm("decoder.conv_norm_out");
      const n = keep(groupNorm(rec, x, s, no.g, no.b, { groups: c.normNumGroups, silu: true }));
      const co = this.#conv("decoder.conv_out");
      const y = keep(conv3x3(rec, n, s, co.w, { bias: co.b, ...cb }));
      return transposeImage(rec, y, B, s.H * s.W, c.outChannels).reshape([
        B,
        c.outChannels,
        s.H,
        s.W,
      ]);
    } finally {
      for (const t of tmp) t.release();
    }
  }

  /** ResnetBlock2D: x + conv2(SiLU(norm2(conv1(SiLU(norm1(x)))))), shortcut 1×1 if widths differ. */
  #resnet(rec: Recorder, x: Tensor, s: ImageShape, r: VaeResnet, cb: ConvChoice): Tensor {
    const G = this.config.normNumGroups;
    const tmp: Tensor[] = []; // intermediates, released whether or not a dispatch throws
    const keep = (t: Tensor) => (tmp.push(t), t);
    try {
      const n1 = this.#norm(`${r.prefix}.norm1`);
      const h1 = keep(groupNorm(rec, x, { ...s, C: r.cin }, n1.g, n1.b, { groups: G, silu: true }));
      const c1 = this.#conv(`${r.prefix}.conv1`);
      const h2 = keep(conv3x3(rec, h1, { ...s, C: r.cin }, c1.w, { bias: c1.b, ...cb }));
      const n2 = this.#norm(`${r.prefix}.norm2`);
      const h3 = keep(
        groupNorm(rec, h2, { ...s, C: r.cout }, n2.g, n2.b, { groups: G, silu: true }),
      );
      let res = x;
      if (r.cin !== r.cout) {
        const sc = this.#conv(`${r.prefix}.conv_shortcut`);
        res = keep(gemm(rec, x, sc.w, { bias: sc.b }));
      }
      const c2 = this.#conv(`${r.prefix}.conv2`);
      return conv3x3(rec, h3, { ...s, C: r.cout }, c2.w, { bias: c2.b, residual: res, ...cb });
    } finally {
      for (const t of tmp) t.release();
    }
  }

  /** The mid block's Attention: x + to_out(softmax(q·kᵀ/√C)·v) on GroupNorm(x), per sample. */
  #attention(rec: Recorder, x: Tensor, s: ImageShape, cb: ConvChoice): Tensor {
    const a = "decoder.mid_block.attentions.0";
    const tmp: Tensor[] = []; // intermediates, released whether or not a dispatch throws
    const keep = (t: Tensor) => (tmp.push(t), t);
    try {
      const gn = this.#norm(`${a}.group_norm`);
      const n = keep(groupNorm(rec, x, s, gn.g, gn.b, { groups: this.config.normNumGroups }));
      const lin = (p: string) => {
        const l = this.#conv(`${a}.${p}`);
        return keep(gemm(rec, n, l.w, { bias: l.b }));
      };
      const [q, k, v] = [lin("to_q"), lin("to_k"), lin("to_v")]; // q pre-scaled by 1/√C
      const P = s.H * s.W;
      const rt = rec.runtime;
      const att = keep(createTensor(rt, [s.B * P, s.C], "f32"));
      const cap = Math.min(cb.chunkBytes ?? SCORE_CHUNK_BYTES, rt.bindingLimit);
      const rows = Math.max(1, Math.floor(cap / (P * 4)));
      for (let b = 0; b < s.B; b++) {
        const kb = s.B === 1 ? k : keep(gatherRowRuns(rec, k, s.B, [[b, 1]]).reshape([P, s.C]));
        const vb = s.B === 1 ? v : keep(gatherRowRuns(rec, v, s.B, [[b, 1]]));
        const vt = keep(transposeImage(rec, vb, 1, P, s.C).reshape([s.C, P]));
        for (let r0 = 0; r0 < P; r0 += rows) {
          const m = Math.min(rows, P - r0);
          const qc = keep(gatherRowRuns(rec, q, s.B * P, [[b * P + r0, m]]));
          const sc = keep(gemm(rec, qc, kb));
          const p = keep(softmax(rec, sc));
          const o = keep(gemm(rec, p, vt));
          rec.copy(o, att, m * s.C * 4, 0, (b * P + r0) * s.C * 4);
          // Released as soon as recorded: the pool hands them to later launches only.
          for (const t of [qc, sc, p, o]) t.release();
        }
      }
      const out = this.#conv(`${a}.to_out.0`);
      return gemm(rec, att, out.w, { bias: out.b, residual: x });
    } finally {
      for (const t of tmp) t.release();
    }
  }

  /** Frees the weights. */
  release(): void {
    for (const t of this.#all) t.release();
  }
}

/** Loads the decoder's weights from a vae/ checkpoint (either attention naming). */
export async function loadVaeDecoder(
  rt: Runtime,
  src: TensorSource,
  c: VaeConfig,
): Promise<VaeDecoder> {
  const shapes = vaeWeightShapes(c);
  // Checkpoints saved before diffusers renamed the attention (query, key, value, proj_attn).
  const rename = new Map<string, string>();
  const a = "decoder.mid_block.attentions.0";
  for (const [now, old] of Object.entries(LEGACY_ATTENTION)) {
    for (const part of ["weight", "bias"]) {
      const cur = `${a}.${now}.${part}`;
      const legacy = `${a}.${old}.${part}`;
      if (shapes.has(cur) && !src.tensors.has(cur) && src.tensors.has(legacy)) {
        const shape = shapes.get(cur)!;
        shapes.delete(cur);
        const info = src.tensors.get(legacy)!;
        // Old files may store the projections as 1×1 convs.
        shapes.set(legacy, info.shape.length === 4 && part === "weight" ? [...shape, 1, 1] : shape);
        rename.set(cur, legacy);
      }
    }
  }
  const loader = new WeightLoader(src, shapes);
  const host = (name: string) => loader.host(rename.get(name) ?? name);
  const all: Tensor[] = [];
  const up = (data: Float32Array, shape: number[]) => {
    const t = uploadTensor(rt, data, shape, "f32");
    all.push(t);
    return t;
  };
  const tensors = new Map<string, Conv | Norm>();
  try {
    const top = c.blockOutChannels[c.blockOutChannels.length - 1];
    const qScale = 1 / Math.sqrt(top); // diffusers' Attention: scale = dim_head^−0.5, one head
    for (const [name, shape] of vaeWeightShapes(c)) {
      if (!name.endsWith(".weight")) continue;
      const base = name.slice(0, -".weight".length);
      const w = await host(name);
      const b = await host(`${base}.bias`);
      if (shape.length === 1) {
        tensors.set(base, { g: up(w, shape), b: up(b, shape) });
      } else if (shape.length === 4 && shape[2] === 3) {
        tensors.set(base, {
          w: up(conv3x3WeightNhwc(w, shape[0], shape[1]), [shape[0], 9 * shape[1]]),
          b: up(b, [shape[0]]),
        });
      } else {
        const s = base.endsWith(".to_q") ? qScale : 1;
        tensors.set(base, {
          w: up(s === 1 ? w : w.map((v) => v * s), [shape[0], shape[1]]),
          b: up(s === 1 ? b : b.map((v) => v * s), [shape[0]]),
        });
      }
    }
  } catch (e) {
    for (const t of all) t.release();
    if (e instanceof CheckpointError) throw e;
    throw new CheckpointError(src.path, (e as Error).message);
  }
  return new VaeDecoder(c, tensors, all);
}
