import { assert, assertEquals, assertThrows } from "../tests/assert.ts";
import { Prng } from "../runtime/io/prng.ts";
import { actQuantRef } from "../runtime/reference/act_quant.ts";
import { checkActCodes, checkWithinRms } from "./sampled_check.ts";

Deno.test("checkActCodes: the reference passes, a wrong code or scale throws", () => {
  const [M, K] = [5, 33];
  const xs = new Prng(3).uniforms(M * K, -1, 1);
  const ref = actQuantRef(xs, M, K, 8);
  const note = checkActCodes("t", ref.codes.slice(), ref.scales.slice(), ref);
  assertEquals(note, `checked all ${M * K} codes and ${M} scales against actQuantRef`);
  // A code off by one away from a rounding tie, or by two anywhere, is wrong.
  const i = ref.scaled.findIndex((v) => Math.abs(Math.abs(v % 1) - 0.5) > 0.1);
  const bad = ref.codes.slice();
  bad[i] += bad[i] < 0 ? 1 : -1;
  assertThrows(() => checkActCodes("t", bad, ref.scales, ref), Error, `t: code ${i}`);
  const scales = ref.scales.slice();
  scales[2] *= 1 + 1e-5;
  assertThrows(() => checkActCodes("t", ref.codes, scales, ref), Error, "t: scale 2");
  assertThrows(() => checkActCodes("t", ref.codes.subarray(1), ref.scales, ref), Error, "codes");
});

Deno.test("checkActCodes: ±1 at a rounding tie is the GPU's 1/Δ, not an error", () => {
  const K = 4;
  // amax 127 → Δ 1, so x = 2.5 lies on a tie: the reference rounds to even (2).
  const xs = new Float32Array([127, 2.5, -3, 0]);
  const ref = actQuantRef(xs, 1, K, 8);
  assertEquals(ref.codes[1], 2);
  const got = ref.codes.slice();
  got[1] = 3;
  const note = checkActCodes("t", got, ref.scales, ref);
  assert(note.endsWith("(1 ±1 at rounding ties)"), note);
});

Deno.test("checkWithinRms: within rel × RMS passes; beyond it, a NaN, a non-finite reference or a length mismatch throws", () => {
  const ref = Float32Array.from([3, -4, 0, 0]); // RMS 2.5
  const near = Float32Array.from([3, -4, 0, 2e-5]);
  assertEquals(checkWithinRms("x", near, ref, 1e-5), { maxErr: Math.fround(2e-5), rms: 2.5 });
  assertThrows(() => checkWithinRms("x", near, ref, 7e-6), Error, "x: max |err|");
  assertThrows(() => checkWithinRms("x", Float32Array.from([NaN, -4, 0, 0]), ref, 1), Error, "x");
  assertThrows(() => checkWithinRms("x", ref.subarray(1), ref, 1), Error, "x");
  // Infinities in both: the difference is NaN (fails), and an infinite RMS admits nothing.
  const inf = Float32Array.from([Infinity, -4, 0, 0]);
  assertThrows(() => checkWithinRms("x", inf, inf, 1), Error, "x");
  assertThrows(() => checkWithinRms("x", Float32Array.from([0, 0, 0, 0]), inf, 1), Error, "x");
});
