import { assertAlmostEquals, assertClose, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import {
  type DdimConfig,
  DdimCpu,
  DdimGpu,
  ddimPlan,
  ddimTimesteps,
  PIXART_DDIM_CONFIG,
} from "./ddim.ts";
import { f32, gaussianToy, vpSchedule } from "./schedule.ts";

Deno.test("DDIM timesteps as diffusers computes them", () => {
  // "leading" (DDIMScheduler's default): multiples of T // N, reversed, + steps_offset.
  assertEquals(ddimTimesteps(20), Array.from({ length: 20 }, (_, i) => 950 - 50 * i));
  assertEquals(ddimTimesteps(4), [750, 500, 250, 0]);
  assertEquals(ddimTimesteps(1), [0]); // ratio 1000: [0·1000]
  assertEquals(ddimTimesteps(4, 1000, "leading", 1), [751, 501, 251, 1]);
  // "linspace": np.linspace(0, 999, N).round()[::-1]; 20 steps: k·52.578947… rounded.
  assertEquals(ddimTimesteps(20, 1000, "linspace").slice(0, 4), [999, 946, 894, 841]);
  assertEquals(ddimTimesteps(20, 1000, "linspace").slice(-3), [105, 53, 0]);
  assertEquals(ddimTimesteps(4, 1000, "linspace"), [999, 666, 333, 0]); // 999/3 = 333 exactly
  assertEquals(ddimTimesteps(1, 1000, "linspace"), [0]); // linspace with num = 1 is [start]
  // "trailing": np.arange(1000, 0, −1000/3) = [1000, 666.67, 333.3333333333335] (numpy's
  // fill adds multiples of a[1] − a[0]) → rounded − 1 = [999, 666, 332].
  assertEquals(ddimTimesteps(3, 1000, "trailing"), [999, 666, 332]);
  assertThrows(() => ddimTimesteps(1001), RangeError, "steps");
});

Deno.test("DDIM coefficients: previous timestep t − T//N, final ᾱ, eta", () => {
  const ac = vpSchedule().alphasCumprod;
  // PixArt's DDIM ("linspace") steps 999 → 946 but diffusers' step() uses 999 − 50 = 949.
  const p = ddimPlan(20, PIXART_DDIM_CONFIG);
  assertEquals([p.coefficients[0].timestep, p.coefficients[0].prevTimestep], [999, 949]);
  assertEquals(p.coefficients[0].sqrtAlphaPrev, f32(Math.sqrt(ac[949])));
  assertEquals(p.coefficients[0].sqrtBeta, f32(Math.sqrt(f32(1 - ac[999]))));
  // Last step: prev = 0 − 50 < 0 → ᾱ_prev = 1 (set_alpha_to_one): x_prev = x₀ exactly.
  const last = p.coefficients[19];
  assertEquals([last.sqrtAlphaPrev, last.dirCoef, last.std], [1, 0, 0]);
  const noOne = ddimPlan(20, { setAlphaToOne: false }).coefficients[19];
  assertEquals(noOne.sqrtAlphaPrev, f32(Math.sqrt(ac[0])));
  // eta: std = η·√((β_prev/β_t)(1 − ᾱ_t/ᾱ_prev)); against float64 within float32 rounding.
  const c = ddimPlan(4, { eta: 0.7 }).coefficients[1]; // t = 500 → 250
  const [a, ap] = [ac[500], ac[250]];
  const std64 = 0.7 * Math.sqrt(((1 - ap) / (1 - a)) * (1 - a / ap));
  assertAlmostEquals(c.std, std64, 1e-6 * std64);
  assertAlmostEquals(c.dirCoef, Math.sqrt(1 - ap - std64 * std64), 1e-6);
});

Deno.test("DDIM clamps x₀ (clip_sample) and needs noise for eta > 0", () => {
  // One step from t = 0 (1-step "leading"): ε = 0 and x = 2√ᾱ₀ give x₀ = 2, clipped to 1;
  // then x_prev = √1·1 + 0·ε = 1 (ᾱ_prev = 1).
  const ac0 = vpSchedule().alphasCumprod[0];
  const x = new Float32Array([f32(2 * f32(Math.sqrt(ac0))), 0.5]);
  const s = new DdimCpu(1);
  assertEquals(Array.from(s.step(0, new Float32Array(2), x)), [
    1,
    f32(f32(0.5) / f32(Math.sqrt(ac0))),
  ]);
  const u = new DdimCpu(1, { clipSample: false });
  assertAlmostEquals(u.step(0, new Float32Array(2), x)[0], 2, 1e-6);
  const e = new DdimCpu(2, { eta: 1 });
  assertThrows(() => e.step(0, x, x), TypeError, "noise");
});

Deno.test("DDIM lands on x₀ when the model is exact for a point mass", () => {
  // ε̂ = (x − √ᾱ μ)/√(1−ᾱ) is exact for data δ(μ), |μ| < 1 so clipping is idle: every
  // step stays on the trajectory. Bound: 3 roundings of |x| ≤ 4.5 at 2⁻²⁴ over √ᾱ of the
  // first step (≥ 0.0064) for the 1-step case; later steps see √ᾱ ≥ 0.05 (t ≤ 950).
  for (
    const [steps, config, atol] of [
      [20, {}, 2e-5],
      [4, PIXART_DDIM_CONFIG, 2e-5],
      [1, PIXART_DDIM_CONFIG, 2.6e-4],
    ] as [number, DdimConfig, number][]
  ) {
    const toy = gaussianToy(257, 0, steps);
    const s = new DdimCpu(steps, config);
    let x: Float32Array = Float32Array.from(toy.xT);
    for (let i = 0; i < steps; i++) {
      const c = s.plan.coefficients[i];
      x = s.step(i, Float32Array.from(toy.vpEps(Float64Array.from(x), c.sqrtAlpha, c.sqrtBeta)), x);
    }
    assertClose(x, toy.mu, { atol, rtol: 0, msg: `${steps} steps` });
  }
});

async function compareGpu(
  rt: Parameters<Parameters<typeof withRuntime>[0]>[0],
  config: DdimConfig,
): Promise<void> {
  const steps = 4, n = 1031;
  const g = new Prng(5);
  const cpu = new DdimCpu(steps, config);
  const gpu = new DdimGpu(steps, config);
  let xc: Float32Array = g.normals(n).map((v) => v * 2);
  let xg: Tensor = uploadTensor(rt, xc, [n]);
  for (let i = 0; i < steps; i++) {
    const out = g.normals(n);
    const noise = g.normals(n);
    const rec = new Recorder(rt);
    const next = gpu.step(rec, i, uploadTensor(rt, out, [n]), xg, {
      noise: uploadTensor(rt, noise, [n]),
    });
    await rec.submit();
    xc = cpu.step(i, out, xc, { noise });
    assertClose(await readTensor(rt, next), xc, {
      atol: 1e-5,
      rtol: 1e-5,
      msg: `${JSON.stringify(config)} step ${i}`,
    });
    xg = next;
  }
}

Deno.test("DDIM GPU step equals the CPU step", gpuTest, async () => {
  await withRuntime(async (rt) => {
    await compareGpu(rt, {}); // clip_sample on: values beyond ±1 are clamped
    await compareGpu(rt, { ...PIXART_DDIM_CONFIG, eta: 0.5 });
    await compareGpu(rt, { predictionType: "v_prediction", clipSample: false });
    await compareGpu(rt, { predictionType: "sample", timestepSpacing: "trailing" });
  });
});
