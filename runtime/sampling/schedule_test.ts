import { assert, assertAlmostEquals, assertEquals, assertThrows } from "../../tests/assert.ts";
import {
  checkStepIndex,
  f32,
  fmaF32,
  npArange,
  npLinspace,
  roundHalfEven,
  torchLinspaceF32,
  vpSchedule,
} from "./schedule.ts";

Deno.test("fmaF32 rounds once, including sums that land on a float32 midpoint", () => {
  // (1 + 2⁻¹²)² = 1 + 2⁻¹¹ + 2⁻²⁴: unfused, the product rounds (tie to even) to
  // 1 + 2⁻¹¹ and the sum with −(1 + 2⁻¹¹) is 0; fused it is exactly 2⁻²⁴.
  const a = 1 + 2 ** -12;
  assertEquals(f32(f32(a * a) - (1 + 2 ** -11)), 0);
  assertEquals(fmaF32(a, a, -(1 + 2 ** -11)), 2 ** -24);
  // (1 + 2⁻¹⁸)·(2⁻²⁴ − 2⁻⁴²) + (1 + 2⁻²³) = 1 + 3·2⁻²⁴ − 2⁻⁶⁰ exactly. In float64 that
  // rounds onto the float32 midpoint 1 + 3·2⁻²⁴, where a tie to even would give 1 + 2⁻²²;
  // the exact value lies below it, so the answer is 1 + 2⁻²³.
  assertEquals(fmaF32(1 + 2 ** -18, 2 ** -24 - 2 ** -42, 1 + 2 ** -23), 1 + 2 ** -23);
  assertEquals(f32((1 + 2 ** -18) * (2 ** -24 - 2 ** -42) + (1 + 2 ** -23)), 1 + 2 ** -22);
});

Deno.test("numpy helpers: linspace, arange (its fill rule) and round half to even", () => {
  // np.linspace(0, 999, 21): step 999/20 = 49.95, y[i] = i·49.95 + 0, last set to 999.
  const l = npLinspace(0, 999, 21);
  assertEquals([l[0], l[1], l[10], l[11], l[20]], [0, 49.95, 499.5, 549.45, 999]);
  assertEquals(npLinspace(0, 999, 1), [0]); // num = 1: [start]
  assertEquals(npLinspace(1, 0.25, 4), [1, 0.75, 0.5, 0.25]);
  // np.arange(1000, 0, -1000/3): numpy fills a[i] = 1000 + i·d with d = a[1] − a[0]
  // = −333.33333333333326 (not −333.3333333333333), so a[2] = 333.3333333333335.
  assertEquals(npArange(1000, 0, -1000 / 3), [1000, 666.6666666666667, 333.3333333333335]);
  assertEquals([0.5, 1.5, 2.5, 499.5, 249.75, 749.25, 549.45].map(roundHalfEven), [
    0,
    2,
    2,
    500,
    250,
    749,
    549,
  ]);
});

Deno.test("linear betas and alphas_cumprod follow torch's float32 rules", () => {
  const vp = vpSchedule();
  const b = vp.betas;
  // torch.linspace(1e-4, 0.02, 1000, float32): start and end are float32(1e-4) and
  // float32(0.02) exactly (the first half counts from start, the second from end).
  assertEquals(b[0], 9.999999747378752e-5);
  assertEquals(b[999], 0.019999999552965164);
  // step = f32(f32(0.02) − f32(1e-4))/999 in float32; b[1] = f32(start + step)
  // (torch 1.13 gives the same 0.00011991991777904332).
  const step = f32(f32(f32(0.02) - f32(1e-4)) / 999);
  assertEquals(step, 0.0000199199203052558);
  assertEquals(b[1], 0.00011991991777904332);
  // Index 72 (first half): start + 72·step. Rounding the product first gives
  // 0.0015342342 (f32); the FMA rounds once to 0.0015342343 (torch 1.13 agrees).
  assertEquals(f32(f32(b[0]) + f32(step * 72)), f32(0.0015342342));
  assertEquals(b[72], f32(0.0015342343));
  // alphas_cumprod: ᾱ₀ = f32(1 − β₀) = 0.9998999834060669; ᾱ₁ = f32(ᾱ₀·f32(1 − β₁)),
  // both as torch 1.13 prints them.
  assertEquals(vp.alphasCumprod[0], 0.9998999834060669);
  assertEquals(vp.alphasCumprod[1], 0.9997800588607788);
  // ᾱ₉₉₉: torch 1.13 (whose betas differ from the FMA rule in the last bit at a few
  // entries) gives 4.0358307160204276e-05; here it comes out 1 ulp (2⁻³⁸) lower. Allow 2.
  assertAlmostEquals(vp.alphasCumprod[999], 4.0358307160204276e-5, 2 * 2 ** -38);
  // scaled_linear: linspace of √β, squared in float32.
  const s = vpSchedule({ betaSchedule: "scaled_linear", betaStart: 0.00085, betaEnd: 0.012 });
  assertEquals(s.betas[0], f32(f32(Math.sqrt(0.00085)) * f32(Math.sqrt(0.00085))));
  assertEquals(torchLinspaceF32(0, 1, 1)[0], 0);
  assertThrows(() => vpSchedule({ trainedBetas: [0.1, 0.2] }), RangeError, "expected 1000");
  assert(vpSchedule({ numTrainTimesteps: 2, trainedBetas: [0.5, 0.5] }).alphasCumprod[1] === 0.25);
});

Deno.test("steps must come in order", () => {
  checkStepIndex("x", 0, 0, 3);
  assertThrows(() => checkStepIndex("x", 1, 0, 3), RangeError, "in order");
  assertThrows(() => checkStepIndex("x", 3, 3, 3), RangeError, "[0, 3)");
});
