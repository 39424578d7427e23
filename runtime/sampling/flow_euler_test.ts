import { assert, assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import {
  calculateShift,
  FlowEulerCpu,
  FlowEulerGpu,
  flowEulerPlan,
  FLUX_FLOW_CONFIG,
  fluxSigmas,
} from "./flow_euler.ts";
import { f32, gaussianToy } from "./schedule.ts";

Deno.test("calculate_shift and the FLUX sigmas", () => {
  // m = (1.15 − 0.5)/(4096 − 256), b = 0.5 − 256m, μ = L·m + b (float64).
  assertEquals([calculateShift(256), calculateShift(4096), calculateShift(1024)], [
    0.5,
    1.15,
    0.63,
  ]);
  // np.linspace(1, 1/N, N).
  assertEquals(fluxSigmas(4), [1, 0.75, 0.5, 0.25]);
  assertEquals(fluxSigmas(1), [1]);
});

Deno.test("flow-matching timesteps and sigmas as diffusers computes them", () => {
  // FLUX at 1024² (4096 tokens): μ = 1.15, sigmas np.linspace(1, 1/4, 4) cast to float32,
  // then e^μ/(e^μ + (1/σ − 1)) in float32 with e = f32(e^1.15) = 3.1581928730010986.
  const e = f32(Math.exp(1.15));
  assertEquals(e, 3.1581928730010986);
  const p = flowEulerPlan(4, FLUX_FLOW_CONFIG, { sigmas: fluxSigmas(4), mu: calculateShift(4096) });
  assertEquals(p.sigmas[1], f32(e / f32(e + f32(f32(1 / f32(0.75)) - 1))));
  // diffusers (FlowMatchEulerDiscreteScheduler.set_timesteps) gives, float32:
  assertEquals(Array.from(p.sigmas), [
    1,
    0.9045307636260986,
    0.7595109343528748,
    0.5128441452980042,
    0,
  ]);
  assertEquals(p.timesteps, [1000, 904.53076171875, 759.5109252929688, 512.8441162109375]);
  // dt = σ_{i+1} − σ_i in float32; the last step goes to 0.
  assertEquals(p.dt[3], -0.5128441452980042);
  // 20 steps at 512² (1024 tokens, μ = 0.63): diffusers' first two and last timesteps.
  const q = flowEulerPlan(20, FLUX_FLOW_CONFIG, { sigmas: fluxSigmas(20), mu: 0.63 });
  assertEquals([q.timesteps[0], q.timesteps[1], q.timesteps[19]], [
    1000,
    972.733154296875,
    89.93417358398438,
  ]);
  // One step: σ = [1, 0], t = [1000].
  const one = flowEulerPlan(1, FLUX_FLOW_CONFIG, { sigmas: fluxSigmas(1), mu: 1.15 });
  assertEquals([one.timesteps, Array.from(one.sigmas)], [[1000], [1, 0]]);
  // Static shift 3 without custom sigmas (SD3-style): __init__ already shifts, so
  // set_timesteps spans [1000, 1000·shift(0.001)] and shifts again — diffusers' numbers.
  const st = flowEulerPlan(4, { shift: 3 });
  assertEquals(st.timesteps, [1000, 857.6923217773438, 602.1505737304688, 8.928571701049805]);
  assertThrows(() => flowEulerPlan(4, FLUX_FLOW_CONFIG), TypeError, "mu");
  assertThrows(() => flowEulerPlan(3, {}, { sigmas: [1, 0.5] }), RangeError, "2 sigmas");
});

Deno.test("flow-matching Euler is exact on straight paths and converges otherwise", () => {
  // Point mass δ(μ): v̂ = (x − μ)/σ is constant along the straight path x = (1−σ)μ + σn,
  // so Euler is exact: lands on μ but for float32 rounding (a few ulps of |x| ≤ 4.5).
  for (const steps of [20, 4, 1]) {
    const toy = gaussianToy(257, 0, steps);
    const s = new FlowEulerCpu(steps, FLUX_FLOW_CONFIG, { sigmas: fluxSigmas(steps), mu: 1.15 });
    let x: Float32Array = Float32Array.from(toy.xT);
    for (let i = 0; i < steps; i++) {
      x = s.step(i, Float32Array.from(toy.flowV(Float64Array.from(x), s.sigmas[i])), x);
    }
    assertClose(x, toy.mu, { atol: 2e-6, rtol: 0, msg: `${steps} steps` });
  }
  // Gaussian data N(μ, 0.5²): first order — the error halves as the steps double.
  const err = (steps: number) => {
    const toy = gaussianToy(257, 0.5, 7);
    const s = new FlowEulerCpu(steps, {}, { sigmas: fluxSigmas(steps) });
    let x: Float32Array = Float32Array.from(toy.xT);
    for (let i = 0; i < steps; i++) {
      x = s.step(i, Float32Array.from(toy.flowV(Float64Array.from(x), s.sigmas[i])), x);
    }
    const end = toy.flowEndpoint(s.sigmas[0]);
    return Math.max(...x.map((v, j) => Math.abs(v - end[j])));
  };
  const [e20, e40, e80] = [20, 40, 80].map(err);
  assert(e40 < 0.6 * e20 && e80 < 0.6 * e40, `errors ${e20} ${e40} ${e80}`);
});

Deno.test("flow-matching Euler GPU step equals the CPU step", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const steps = 4, n = 1031;
    const g = new Prng(9);
    const run = { sigmas: fluxSigmas(steps), mu: 0.8 };
    const cpu = new FlowEulerCpu(steps, FLUX_FLOW_CONFIG, run);
    const gpu = new FlowEulerGpu(steps, FLUX_FLOW_CONFIG, run);
    let xc: Float32Array = g.normals(n);
    let xg: Tensor = uploadTensor(rt, xc, [n]);
    for (let i = 0; i < steps; i++) {
      const v = g.normals(n);
      const rec = new Recorder(rt);
      const next = gpu.step(rec, i, uploadTensor(rt, v, [n]), xg);
      assertEquals(rec.dispatches, 1);
      await rec.submit();
      xc = cpu.step(i, v, xc);
      assertClose(await readTensor(rt, next), xc, { atol: 1e-5, rtol: 1e-5, msg: `step ${i}` });
      xg = next;
    }
  });
});
