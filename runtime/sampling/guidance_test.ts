import { assert, assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { dpmSolverPlan } from "./dpm_solver.ts";
import { fluxSigmas } from "./flow_euler.ts";
import {
  createCpuSampler,
  createGpuSampler,
  duplicateBatchGpu,
  guideCpu,
  guideGpu,
  hasLearnedSigma,
  nchwLayout,
  runSamplerCpu,
  tokenLayout,
  usesGuidance,
} from "./guidance.ts";
import { f32, gaussianToy } from "./schedule.ts";

Deno.test("CFG and the learned-sigma split on a hand example", () => {
  // Latents [1, 2, 1, 1], model output [2·1, 4, 1, 1] (learned sigma: ε then variance),
  // batch [uncond, cond]. g = 4.5: ε = u + 4.5·(c − u) on the first 2 channels.
  const layout = nchwLayout(1, 2, 4, 1, 1);
  assertEquals(layout, { rows: 1, width: 2, stride: 4 });
  const out = new Float32Array([1, 2, 90, 91, /* cond */ 3, 0, 92, 93]);
  assertEquals(Array.from(guideCpu(out, layout, 4.5)), [1 + 4.5 * 2, 2 + 4.5 * -2]);
  // g ≤ 1: the pipeline does not guide (and the batch is not doubled); split only.
  assertEquals(Array.from(guideCpu(out.subarray(0, 4), layout, 1)), [1, 2]);
  assert(!usesGuidance(1) && usesGuidance(1.01) && !usesGuidance(undefined));
  // float32 per op: u + f32(g·f32(c − u)).
  const big = new Float32Array([0.1, 0.7]);
  const r = guideCpu(big, nchwLayout(1, 1, 1, 1, 1), 7.5)[0];
  assertEquals(r, f32(f32(0.1) + f32(f32(7.5) * f32(f32(0.7) - f32(0.1)))));
  // Tokens-last [B, T, 2C]: keep C of every 2C.
  assertEquals(tokenLayout(2, 3, 4, 8), { rows: 6, width: 4, stride: 8 });
  assert(hasLearnedSigma(8, 4) && !hasLearnedSigma(4, 4));
  assertThrows(() => nchwLayout(1, 4, 9, 2, 2), RangeError, "neither");
  assertThrows(() => guideCpu(out, layout, 1), RangeError, "expected 4");
});

Deno.test("guideGpu equals guideCpu (CFG + split, split only, passthrough)", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const [B, C, H, W] = [2, 4, 5, 3];
    const layout = nchwLayout(B, C, 2 * C, H, W);
    const xs = new Prng(4).normals(2 * B * 2 * C * H * W);
    const x = uploadTensor(rt, xs, [2 * B, 2 * C, H, W]);
    const tol = { atol: 1e-5, rtol: 1e-5 };
    const shape = [B, C, H, W];
    let eps = await runAndRead(rt, (r) => guideGpu(r, x, layout, 4.5, { shape }));
    assertClose(eps, guideCpu(xs, layout, 4.5), tol);
    const half = uploadTensor(rt, xs.subarray(0, B * 2 * C * H * W), [B, 2 * C, H, W]);
    eps = await runAndRead(rt, (r) => guideGpu(r, half, layout));
    assertClose(eps, guideCpu(xs.subarray(0, B * 2 * C * H * W), layout), { atol: 0, rtol: 0 });
    const plain = nchwLayout(B, C, C, H, W);
    const rec = new Recorder(rt);
    const ready = uploadTensor(rt, xs.subarray(0, B * C * H * W), [B, C, H, W]);
    assert(guideGpu(rec, ready, plain) === ready); // nothing to do: the output is ε already
    assertEquals(rec.dispatches, 0);
    const dup = await runAndRead(rt, (r) => duplicateBatchGpu(r, half));
    assertEquals(Array.from(dup), [...xs.subarray(0, half.size), ...xs.subarray(0, half.size)]);
  });
});

Deno.test("runSamplerCpu: guided runs land on the guided point mass", async () => {
  // Uncond and cond are exact models of point masses at μu and μc; ε and v are linear in
  // μ, so the guided output is exact for μu + g·(μc − μu), where the run must end. The
  // variance channels (learned sigma) hold garbage that must be dropped.
  const [B, C, H, W] = [2, 3, 4, 5];
  const n = B * C * H * W;
  const layout = nchwLayout(B, C, 2 * C, H, W);
  const toyU = gaussianToy(n, 0, 3);
  const toyC = gaussianToy(n, 0, 4);
  const g = 4.5;
  const target = toyU.mu.map((u, j) => u + g * (toyC.mu[j] - u));
  // A model that sees [x; x] and answers [uncond; cond], each [B, 2C, H, W].
  const model =
    (pred: (toy: typeof toyU, x: Float64Array) => Float64Array) => (inp: Float32Array) => {
      assertEquals(inp.length, 2 * n);
      const out = new Float32Array(4 * n).fill(NaN);
      [toyU, toyC].forEach((toy, half) => {
        const e = pred(toy, Float64Array.from(inp.subarray(half * n, half * n + n)));
        for (let b = 0; b < B; b++) {
          const m = C * H * W;
          out.set(e.subarray(b * m, b * m + m), (half * B + b) * 2 * m);
        }
      });
      return out;
    };
  const dpm = createCpuSampler("dpm++2m", 20);
  const coeffs = dpmSolverPlan(20).coefficients;
  let i = 0;
  const x = await runSamplerCpu(
    dpm,
    toyU.xT,
    model((toy, xx) => toy.vpEps(xx, coeffs[i].alphaS, coeffs[i].sigmaS)),
    { layout, guidanceScale: g, onStep: () => i++ },
  );
  // 4.5× guidance scales ε's rounding errors too: 5.5 · 2.4e-6 (the unguided bound).
  assertClose(x, target, { atol: 1.4e-5, rtol: 0, msg: "dpm" });
  const flow = createCpuSampler("flow-euler", 4, { flowRun: { sigmas: fluxSigmas(4) } });
  let k = 0;
  const y = await runSamplerCpu(
    flow,
    toyU.xT,
    model((toy, xx) => toy.flowV(xx, flow.sigmas[k])),
    { layout, guidanceScale: g, onStep: () => k++ },
  );
  assertClose(y, target, { atol: 1.4e-5, rtol: 0, msg: "flow" });
});

Deno.test("createGpuSampler gives the same schedule as createCpuSampler", () => {
  for (const kind of ["dpm++2m", "ddim", "flow-euler"] as const) {
    const c = createCpuSampler(kind, 7);
    const gs = createGpuSampler(kind, 7);
    assertEquals([gs.kind, gs.timesteps, Array.from(gs.sigmas)], [
      c.kind,
      c.timesteps,
      Array.from(c.sigmas),
    ]);
  }
  assertThrows(() => createCpuSampler("euler" as "ddim", 4), TypeError, "Unknown");
});

Deno.test("a guided GPU step chain equals the CPU chain", gpuTest, async () => {
  await withRuntime(async (rt) => {
    // Model outputs as a model would give them: the exact ε of two point masses (uncond,
    // cond) in the first C channels, random variance channels in the other C. (Unrelated
    // random ε under 4.5× guidance would make x₀ = (x − σε)/α ~ 10³ and the order-2
    // combination cancel catastrophically in float32 on either side.)
    const [B, C, H, W] = [1, 4, 6, 5];
    const n = B * C * H * W;
    const layout = nchwLayout(B, C, 2 * C, H, W);
    const steps = 4;
    const cpu = createCpuSampler("dpm++2m", steps);
    const gpu = createGpuSampler("dpm++2m", steps);
    const coeffs = dpmSolverPlan(steps).coefficients;
    const toys = [gaussianToy(n, 0, 5), gaussianToy(n, 0, 6)];
    const g = new Prng(12);
    let xc: Float32Array = Float32Array.from(toys[0].xT);
    let xg = uploadTensor(rt, xc, [B, C, H, W]);
    for (let i = 0; i < steps; i++) {
      const outs = g.normals(4 * n); // [uncond ε | variance | cond ε | variance]
      toys.forEach((toy, h) => {
        outs.set(toy.vpEps(Float64Array.from(xc), coeffs[i].alphaS, coeffs[i].sigmaS), 2 * h * n);
      });
      const rec = new Recorder(rt);
      const eps = guideGpu(rec, uploadTensor(rt, outs, [2 * B, 2 * C, H, W]), layout, 4.5, {
        shape: [B, C, H, W],
      });
      const next = gpu.step(rec, i, eps, xg);
      await rec.submit();
      eps.release();
      xc = cpu.step(i, guideCpu(outs, layout, 4.5), xc);
      assertClose(await readTensor(rt, next), xc, { atol: 1e-5, rtol: 1e-5, msg: `step ${i}` });
      xg = next;
    }
    gpu.dispose();
  });
});
