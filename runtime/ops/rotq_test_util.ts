/**
 * What the rotq kernel tests (rotq_test.ts, rotq_hadamard_test.ts) share: activations with
 * salient channels, pre-multipliers, read-back and the exact-match assertions.
 *
 * @module
 */
import { assert, assertEquals } from "../../tests/assert.ts";
import type { Runtime } from "../gpu/device.ts";
import { readTensor, readTensorRaw } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import type { QuantizedActivations } from "../quant/transform.ts";
import type { actQuantRef } from "../reference/act_quant.ts";
import { unpackCodes } from "../reference/rotq.ts";

/** Activations with a few salient channels (×40) and a zero row. */
export function activations(M: number, K: number, seed: number, f16 = false): Float32Array {
  const g = new Prng(seed);
  const x = g.normals(M * K);
  for (let r = 0; r < M; r++) {
    for (const c of [3, K >> 1, K - 2]) x[r * K + c] *= 40;
  }
  x.fill(0, 2 * K, 3 * K);
  return f16 ? Float32Array.from(Float16Array.from(x)) : x;
}

/** Signs / √block times smoothing factors in [0.5, 2). */
export function preMultiplier(K: number, block: number, seed: number): Float32Array {
  const g = new Prng(seed);
  return Float32Array.from(
    { length: K },
    () => (g.uniform() < 0.5 ? -1 : 1) / Math.sqrt(block) / (0.5 + 1.5 * g.uniform()),
  );
}

/** Codes (unpacked), their words and the scales of quantized activations, read back. */
export async function readQuant(rt: Runtime, q: QuantizedActivations, M: number, K: number) {
  const words = (await readTensorRaw(rt, q.q)) as Uint32Array;
  return {
    codes: unpackCodes(words.subarray(0, M * Math.ceil(K / 4)), M, K),
    words: words.subarray(0, M * Math.ceil(K / 4)),
    scales: await readTensor(rt, q.scales),
  };
}

/** Codes equal; scales equal to the last bit (the kernels' f32 ops are the reference's). */
export function assertQuantEqual(
  got: { codes: Int8Array; words: Uint32Array; scales: Float32Array },
  ref: { codes: Int8Array; packed: Uint32Array; scales: Float32Array },
  what: string,
): void {
  for (let i = 0; i < ref.codes.length; i++) {
    if (got.codes[i] !== ref.codes[i]) {
      throw new Error(`${what}: code ${i} is ${got.codes[i]}, reference ${ref.codes[i]}`);
    }
  }
  assertEquals(Array.from(got.words), Array.from(ref.packed), `${what} packed words`);
  for (let r = 0; r < ref.scales.length; r++) {
    const tol = 2 ** -22 * Math.abs(ref.scales[r]);
    assert(
      Math.abs(got.scales[r] - ref.scales[r]) <= tol,
      `${what}: scale ${r} is ${got.scales[r]}, reference ${ref.scales[r]}`,
    );
  }
}

/**
 * Grouped codes, scales and zero points equal to actQuantRef's: exactly on CPU adapters. A
 * GPU may round Δ = range/levels up to 2.5 ulp off (WGSL's division), so there Δ and the zero
 * point may be a few ulps off and a code one step off where x·(1/Δ) sits at a rounding tie.
 */
export function assertGroupedEqual(
  rt: Runtime,
  got: { codes: Int8Array; scales: Float32Array },
  ref: ReturnType<typeof actQuantRef>,
  bits: number,
  what: string,
): void {
  const want = ref.zeros ? [...ref.scales, ...ref.zeros] : Array.from(ref.scales);
  if (rt.info.fallback) {
    for (let i = 0; i < ref.codes.length; i++) {
      assert(
        got.codes[i] === ref.codes[i],
        `${what}: code ${i} ${got.codes[i]} vs ${ref.codes[i]}`,
      );
    }
    assertEquals(Array.from(got.scales), want, `${what}: scales`);
    return;
  }
  for (let i = 0; i < ref.codes.length; i++) {
    if (got.codes[i] === ref.codes[i]) continue;
    const tie = Math.abs(Math.abs(ref.scaled[i] % 1) - 0.5) < 1e-4;
    assert(tie && Math.abs(got.codes[i] - ref.codes[i]) === 1, `${what}: code ${i}`);
  }
  const G = ref.scales.length;
  for (let i = 0; i < want.length; i++) {
    const d = ref.scales[i % G];
    const mag = i < G ? d : Math.abs(want[i]) + 2 ** bits * d; // z = lo + 2^(b−1)·Δ
    assert(Math.abs(got.scales[i] - want[i]) <= 8 * 2 ** -24 * mag, `${what}: scale ${i}`);
  }
}
