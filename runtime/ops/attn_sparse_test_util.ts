/**
 * Shared inputs of the sparse-attention tests: q/k/v with outliers, PARO-like plans, and
 * the GPU codes read back into the reference's layout.
 *
 * @module
 */
import type { Runtime } from "../gpu/device.ts";
import { readTensor, readTensorRaw } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { blocksOf, candidatePermutations, maskWords, selectMask } from "../quant/paro_plan.ts";
import type { HostHeads } from "../reference/attention.ts";
import { type BlockCodes, paddedHeadDim } from "../reference/attn_sparse.ts";
import type { QuantizedQkv } from "./attn_sparse.ts";

/**
 * Random q/k/v [B, T, H·D] with per-channel offsets (so K's mean matters) and, with
 * `outliers`, six values scaled by 6 (they set their blocks' scales).
 */
export function inputs(
  B: number,
  T: number,
  H: number,
  D: number,
  seed: number,
  outliers = true,
): Float32Array[] {
  const g = new Prng(seed);
  return [0, 1, 2].map((w) => {
    const x = g.normals(B * T * H * D);
    for (let i = 0; i < x.length; i++) x[i] = x[i] * 1.5 + (w === 1 ? ((i % (H * D)) % 5) - 2 : 0);
    for (let i = 0; i < (outliers ? 6 : 0); i++) x[g.nextU32() % x.length] *= 6;
    return x;
  });
}

/** Per-head orders (different per head) and masks at `density` from a random mass. */
export function plan(h: number, w: number, H: number, G: number, density: number, seed: number) {
  const T = h * w;
  const nb = blocksOf(T);
  const cands = candidatePermutations(h, w);
  const perm = new Uint32Array(H * T);
  for (let i = 0; i < H; i++) perm.set(cands[(i + 1) % cands.length].perm, i * T);
  const g = new Prng(seed);
  const masks = new Uint32Array(H * G * nb * maskWords(nb));
  for (let i = 0; i < H * G; i++) {
    const mass = g.uniforms(nb * nb, 0, 1);
    masks.set(selectMask(mass, nb, density), i * nb * maskWords(nb));
  }
  return { perm, masks, nb };
}

export const hh = (data: Float32Array, B: number, T: number, W: number): HostHeads => ({
  data,
  batch: B,
  tokens: T,
  width: W,
});

/** Reads GPU codes back into the reference's layout. */
export async function readCodes(rt: Runtime, qq: QuantizedQkv) {
  const { batch: B, heads: H, tokens: T, headDim: D } = qq;
  const nb = blocksOf(T);
  const DP = paddedHeadDim(D);
  const sc = await readTensor(rt, qq.scales);
  const n = B * H * nb;
  const pick = (i: number, j: number) =>
    Float32Array.from({ length: n }, (_, x) => sc[(i * n + x) * 2 + j]);
  const bytes = async (t: typeof qq.q) => {
    const u = (await readTensorRaw(rt, t)) as Uint32Array;
    return new Int8Array(u.buffer, u.byteOffset, u.length * 4);
  };
  const vt = await bytes(qq.v);
  const v = new Int8Array(B * H * nb * 64 * DP);
  for (let bh = 0; bh < B * H; bh++) {
    for (let kb = 0; kb < nb; kb++) {
      for (let d = 0; d < D; d++) {
        for (let j = 0; j < 64; j++) {
          v[(bh * nb * 64 + kb * 64 + j) * DP + d] = vt[((bh * nb + kb) * D + d) * 64 + j];
        }
      }
    }
  }
  const codes = (c: Int8Array, i: number): BlockCodes => ({
    codes: c,
    scale: pick(i, 0),
    inv: pick(i, 1),
  });
  return {
    q: codes(await bytes(qq.q), 0),
    k: codes(await bytes(qq.k), 1),
    v: codes(v, 2),
    mean: await readTensor(rt, qq.kmean),
  };
}
