/**
 * Peer: one PixArt-α DiT block written with tfjs-core 4.22 ops on tfjs-backend-webgpu, in
 * this Deno process — the "same block a JS user would build" of issue 9. The block is
 * diffusers' BasicTransformerBlock in PixArt's "ada_norm_single" form:
 *
 *     shift_msa, scale_msa, gate_msa, shift_mlp, scale_mlp, gate_mlp = t6 + scale_shift_table
 *     x1 = x  + gate_msa · attn1(LN(x)·(1 + scale_msa) + shift_msa)       (to_out.0 included)
 *     x2 = x1 + attn2(x1, caption K/V)                                    (no norm: PixArt)
 *     x3 = x2 + gate_mlp · ff(LN(x2)·(1 + scale_mlp) + shift_mlp)          (GELU-tanh FF 4×)
 *
 * LN without affine, eps 1e−6. Linears are `tf.fused.matMul` with the bias fused and the
 * weights stored [K, N] (tfjs's dense layout, transposed once on the host). Attention is
 * the textbook softmax(q·kᵀ/√d)·v with the [T, T] score maps materialised (tfjs has no
 * fused attention), split into batch items / head groups only where a map would exceed
 * the device's largest storage binding. The cross-attention takes the caption keys and
 * values precomputed, as webdit's block does (they depend on the prompt only), and adds
 * the caption mask as a −10000 bias, as diffusers does.
 *
 * Inputs stay on the GPU; a run records `reps` blocks, each fed the previous output, and
 * flushes tfjs's command queue so the harness can await the backend's device.
 *
 * @module
 */
import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-webgpu";
import type { TensorSource } from "../../runtime/io/safetensors.ts";

/** The parts of tfjs's WebGPU backend used here (not in tfjs-core's typings). */
interface WebGpuBackend {
  device: GPUDevice;
  endComputePassEncoder(): void;
  submitQueue(): void;
}

let ready: Promise<WebGpuBackend> | undefined;

/** Selects the webgpu backend once and returns it. */
export function tfjsWebGpu(): Promise<WebGpuBackend> {
  ready ??= (async () => {
    const ok = await tf.setBackend("webgpu");
    if (!ok) throw new Error("tfjs could not initialise its webgpu backend");
    await tf.ready();
    return tf.backend() as unknown as WebGpuBackend;
  })();
  return ready;
}

/** The linears of a block, by their name inside `transformer_blocks.N`. */
export const BLOCK_LINEARS = [
  "attn1.to_q",
  "attn1.to_k",
  "attn1.to_v",
  "attn1.to_out.0",
  "attn2.to_q",
  "attn2.to_out.0",
  "ff.net.0.proj",
  "ff.net.2",
] as const;

/** One of {@linkcode BLOCK_LINEARS}. */
export type BlockLinear = typeof BLOCK_LINEARS[number];

/** A block's weights on the host: W [N, K] (PyTorch layout) and b [N] per linear, the table [6, D]. */
export interface PixArtBlockWeights {
  /** Per linear. */
  linears: Record<BlockLinear, { weight: Float32Array; bias: Float32Array; out: number }>;
  /** scale_shift_table [6, D]. */
  table: Float32Array;
}

/** Reads block `i`'s weights from a checkpoint (diffusers names). */
export async function readBlockWeights(src: TensorSource, i: number): Promise<PixArtBlockWeights> {
  const p = `transformer_blocks.${i}`;
  const linears = {} as PixArtBlockWeights["linears"];
  for (const n of BLOCK_LINEARS) {
    const info = src.tensors.get(`${p}.${n}.weight`);
    if (!info) throw new RangeError(`${src.path}: no tensor ${p}.${n}.weight`);
    linears[n] = {
      weight: await src.readF32(`${p}.${n}.weight`),
      bias: await src.readF32(`${p}.${n}.bias`),
      out: info.shape[0],
    };
  }
  return { linears, table: await src.readF32(`${p}.scale_shift_table`) };
}

/** Shape of the block's inputs. */
export interface TfjsBlockShape {
  /** Batch B. */
  batch: number;
  /** Image tokens T. */
  tokens: number;
  /** Caption tokens L. */
  captionTokens: number;
  /** Heads H (D = H·headDim). */
  heads: number;
  /** Head dim. */
  headDim: number;
  /** LayerNorm eps; default 1e−6. */
  eps?: number;
}

/** The block's inputs (host, f32). */
export interface TfjsBlockInputs {
  /** Hidden states [B·T, D]. */
  x: Float32Array;
  /** adaLN-single modulation [B, 6D]. */
  t6: Float32Array;
  /** Caption keys and values after attn2.to_k / to_v [B, L, D]. */
  keys: Float32Array;
  values: Float32Array;
  /** Caption mask [B, L] (1 keep, 0 drop). */
  mask: Float32Array;
}

/** A tfjs block ready to run. */
export interface TfjsBlock {
  /** tfjs's GPU device (the harness awaits its queue). */
  device: GPUDevice;
  /** Version and how attention was split. */
  note: string;
  /** Records `reps` chained blocks from the inputs' x and flushes tfjs's queue. */
  run(reps: number): void;
  /** The last run's output [B·T, D]. */
  read(): Promise<Float32Array>;
  /** Frees every tensor. */
  dispose(): void;
}

/** Builds the block on tfjs-backend-webgpu from host weights and inputs. */
export async function tfjsPixArtBlock(
  w: PixArtBlockWeights,
  s: TfjsBlockShape,
  inp: TfjsBlockInputs,
): Promise<TfjsBlock> {
  const be = await tfjsWebGpu();
  const { batch: B, tokens: T, captionTokens: L, heads: H, headDim: Dh } = s;
  const D = H * Dh;
  const eps = s.eps ?? 1e-6;
  const keep: tf.Tensor[] = [];
  const hold = <X extends tf.Tensor>(t: X): X => {
    keep.push(t);
    return t;
  };
  const lin: Record<string, { w: tf.Tensor2D; b: tf.Tensor1D }> = {};
  for (const n of BLOCK_LINEARS) {
    const { weight, bias, out: N } = w.linears[n];
    const K = weight.length / N;
    const t = new Float32Array(K * N); // [N, K] → [K, N]
    for (let r = 0; r < N; r++) for (let k = 0; k < K; k++) t[k * N + r] = weight[r * K + k];
    lin[n] = { w: hold(tf.tensor2d(t, [K, N])), b: hold(tf.tensor1d(bias)) };
  }
  const table = hold(tf.tensor2d(w.table, [1, 6 * D]));
  const x0 = hold(tf.tensor3d(inp.x, [B, T, D]));
  const t6 = hold(tf.tensor2d(inp.t6, [B, 6 * D]));
  const heads = (v: tf.Tensor, n: number) =>
    tf.transpose(tf.reshape(v, [B, n, H, Dh]), [0, 2, 1, 3]);
  const kc = hold(heads(tf.tensor3d(inp.keys, [B, L, D]), L));
  const vc = hold(heads(tf.tensor3d(inp.values, [B, L, D]), L));
  const maskBias = hold(
    tf.tidy(() => tf.mul(tf.sub(tf.tensor4d(inp.mask, [B, 1, 1, L]), 1), 10000)),
  );

  // Largest score map one matMul may write: the device's storage binding (and buffer) limit.
  const lim = Math.min(
    be.device.limits.maxStorageBufferBindingSize,
    be.device.limits.maxBufferSize,
  );
  let hc = H;
  while (hc > 1 && (hc * T * T * 4 > lim || H % hc)) hc--;
  const perItem = B * H * T * T * 4 > lim;
  const split = perItem ? `per batch item, ${hc} heads per score map` : "one batched score map";

  const linear = (x: tf.Tensor, n: BlockLinear) =>
    tf.fused.matMul({
      a: tf.reshape(x, [-1, x.shape[x.shape.length - 1]]) as tf.Tensor2D,
      b: lin[n].w,
      bias: lin[n].b,
    });
  const layerNorm = (x: tf.Tensor) => {
    const { mean, variance } = tf.moments(x, -1, true);
    return tf.mul(tf.sub(x, mean), tf.rsqrt(tf.add(variance, eps)));
  };
  // q [b, h, Tq, Dh] (pre-scaled), k/v [b, h, Tk, Dh] → [b, h, Tq, Dh]
  const sdpa = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor, bias?: tf.Tensor) => {
    let sc = tf.matMul(q, k, false, true);
    if (bias) sc = tf.add(sc, bias);
    return tf.matMul(tf.softmax(sc), v);
  };
  const selfAttention = (q: tf.Tensor, k: tf.Tensor, v: tf.Tensor): tf.Tensor => {
    if (!perItem) return sdpa(q, k, v);
    const items: tf.Tensor[] = [];
    for (let b = 0; b < B; b++) {
      const parts: tf.Tensor[] = [];
      for (let h0 = 0; h0 < H; h0 += hc) {
        const sl = (t: tf.Tensor) => tf.slice(t, [b, h0, 0, 0], [1, hc, T, Dh]);
        parts.push(sdpa(sl(q), sl(k), sl(v)));
      }
      items.push(parts.length > 1 ? tf.concat(parts, 1) : parts[0]);
    }
    return tf.concat(items, 0);
  };
  const merge = (o: tf.Tensor, n: number) => tf.reshape(tf.transpose(o, [0, 2, 1, 3]), [B * n, D]);
  const gelu = (y: tf.Tensor) => {
    const inner = tf.mul(
      tf.add(y, tf.mul(tf.mul(tf.mul(y, y), y), 0.044715)),
      Math.sqrt(2 / Math.PI),
    );
    return tf.mul(tf.mul(y, 0.5), tf.add(tf.tanh(inner), 1));
  };

  const block = (x: tf.Tensor): tf.Tensor =>
    tf.tidy(() => {
      const mod = tf.split(tf.reshape(tf.add(t6, table), [B, 6, D]), 6, 1); // each [B, 1, D]
      const [shiftMsa, scaleMsa, gateMsa, shiftMlp, scaleMlp, gateMlp] = mod;
      const n1 = tf.add(tf.mul(layerNorm(x), tf.add(scaleMsa, 1)), shiftMsa);
      const scale = 1 / Math.sqrt(Dh);
      const q = heads(tf.mul(linear(n1, "attn1.to_q"), scale), T);
      const k = heads(linear(n1, "attn1.to_k"), T);
      const v = heads(linear(n1, "attn1.to_v"), T);
      const a = merge(selfAttention(q, k, v), T);
      const x1 = tf.add(x, tf.mul(tf.reshape(linear(a, "attn1.to_out.0"), [B, T, D]), gateMsa));
      const q2 = heads(tf.mul(linear(x1, "attn2.to_q"), scale), T);
      const a2 = merge(sdpa(q2, kc, vc, maskBias), T);
      const x2 = tf.add(x1, tf.reshape(linear(a2, "attn2.to_out.0"), [B, T, D]));
      const n2 = tf.add(tf.mul(layerNorm(x2), tf.add(scaleMlp, 1)), shiftMlp);
      const f = gelu(linear(n2, "ff.net.0.proj"));
      return tf.add(x2, tf.mul(tf.reshape(linear(f, "ff.net.2"), [B, T, D]), gateMlp));
    });

  let last: tf.Tensor | undefined;
  return {
    device: be.device,
    note: `tfjs-backend-webgpu ${tf.version_core}; attention: ${split}`,
    run(reps: number) {
      let h: tf.Tensor = x0;
      for (let i = 0; i < reps; i++) {
        const next = block(h);
        if (h !== x0) h.dispose();
        h = next;
      }
      // tfjs batches commands; flush so the GPU work is in the queue (the open pass first).
      be.endComputePassEncoder();
      be.submitQueue();
      last?.dispose();
      last = h === x0 ? undefined : h;
    },
    async read() {
      if (!last) throw new Error("tfjs block: nothing run yet");
      return await last.data() as Float32Array;
    },
    dispose() {
      last?.dispose();
      last = undefined;
      for (const t of keep) t.dispose();
    },
  };
}
