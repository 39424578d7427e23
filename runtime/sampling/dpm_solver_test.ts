import {
  assert,
  assertAlmostEquals,
  assertClose,
  assertEquals,
  assertThrows,
} from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { readTensor, type Tensor, uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { DpmSolverCpu, DpmSolverGpu, dpmSolverPlan, dpmTimesteps } from "./dpm_solver.ts";
import { f32, type GaussianToy, gaussianToy, vpSchedule } from "./schedule.ts";

Deno.test("DPM-Solver++ timesteps as diffusers computes them", () => {
  // "linspace": np.linspace(0, 999, N+1).round()[::-1][:-1]. For 20 steps the grid is
  // i·49.95 (999/20): 949.05→949, …, 549.45→549, 499.5→500 (a tie, to even),
  // 449.55→450, …, 49.95→50; reversed, the trailing 0 dropped.
  assertEquals(dpmTimesteps(20), [
    999,
    949,
    899,
    849,
    799,
    749,
    699,
    649,
    599,
    549,
    500,
    450,
    400,
    350,
    300,
    250,
    200,
    150,
    100,
    50,
  ]);
  // 4 steps: [0, 249.75, 499.5, 749.25, 999] → [0, 250, 500, 749, 999] → [999, 749, 500, 250].
  assertEquals(dpmTimesteps(4), [999, 749, 500, 250]);
  // 1 step: [0, 999] → [999].
  assertEquals(dpmTimesteps(1), [999]);
  // "leading", offset 1, 4 steps: ratio 1000 // 5 = 200 → [800, 600, 400, 200] + 1.
  assertEquals(dpmTimesteps(4, 1000, "leading", 1), [801, 601, 401, 201]);
  // "trailing", 7 steps: np.arange(1000, 0, −1000/7) = 1000, 857.14…, 714.29…, 571.43…,
  // 428.57…, 285.71…, 142.86… → rounded − 1.
  assertEquals(dpmTimesteps(7, 1000, "trailing"), [999, 856, 713, 570, 428, 285, 142]);
});

Deno.test("DPM-Solver++ sigmas and per-step orders", () => {
  const p20 = dpmSolverPlan(20);
  const ac = vpSchedule().alphasCumprod;
  // sigmas[i] = √((1 − ᾱ_t)/ᾱ_t) at t = timesteps[i] (float32 ops), then 0.
  assertEquals(p20.sigmas.length, 21);
  assertEquals(p20.sigmas[0], f32(Math.sqrt(f32(f32(1 - ac[999]) / ac[999]))));
  assertEquals(p20.sigmas[20], 0);
  // diffusers on torch 1.13 gives sigmas[0] = 157.40725708007812 and sigmas[19] (t = 50)
  // = 0.1760101169347763; torch 1.13's betas differ from torch 2's FMA rule in the last
  // bit at a few entries, which moves these by at most 2 ulps.
  assertAlmostEquals(p20.sigmas[0], 157.40725708007812, 2 * 2 ** -16);
  assertAlmostEquals(p20.sigmas[19], 0.1760101169347763, 2 * 2 ** -26);
  // Orders: first step 1 (no history), last step 1 (final sigma 0), 2 in between.
  assertEquals(p20.coefficients.map((c) => c.order), [1, ...Array(18).fill(2), 1]);
  assertEquals(dpmSolverPlan(1).coefficients.map((c) => c.order), [1]);
  assertEquals(dpmSolverPlan(2).coefficients.map((c) => c.order), [1, 1]);
  // With sigma_min the last step is first order only under lower_order_final and < 15 steps.
  const last = (n: number, lowerOrderFinal: boolean) =>
    dpmSolverPlan(n, { finalSigmasType: "sigma_min", lowerOrderFinal }).coefficients[n - 1].order;
  assertEquals([last(14, true), last(15, true), last(14, false)], [1, 2, 2]);
  // Last step into σ = 0: α_t = 1, σ_t = 0, λ_t = ∞, e^{−h} = 0 → x_next = x₀ exactly.
  const c = p20.coefficients[19];
  assertEquals([c.cSample, c.c0, c.k1], [0, -1, 0]);
  // Midpoint: the D1 coefficient is −0.5·c0.
  assertEquals(p20.coefficients[5].k1, -f32(0.5 * p20.coefficients[5].c0));
  assertThrows(() => dpmSolverPlan(0), RangeError, "steps");
});

/** An independent float64 DPM-Solver++(2M, midpoint) from the paper's formulas. */
function dpm64(steps: number, toy: GaussianToy, x: Float64Array): Float64Array {
  const plan = dpmSolverPlan(steps);
  const s = Array.from(plan.sigmas);
  const alpha = (v: number) => 1 / Math.sqrt(v * v + 1);
  const lam = (v: number) => (v === 0 ? Infinity : -Math.log(v)); // log(α/σ) = −log(σ_VE)
  let prev: Float64Array | undefined;
  for (let i = 0; i < steps; i++) {
    const [aS, sS, aT, sT] = [
      alpha(s[i]),
      s[i] * alpha(s[i]),
      alpha(s[i + 1]),
      s[i + 1] * alpha(s[i + 1]),
    ];
    const eps = toy.vpEps(x, aS, sS);
    const x0 = x.map((v, j) => (v - sS * eps[j]) / aS);
    const h = lam(s[i + 1]) - lam(s[i]);
    const phi = aT * (Math.exp(-h) - 1);
    const ratio = s[i + 1] === 0 ? 0 : sT / sS;
    if (plan.coefficients[i].order === 1) x = x.map((v, j) => ratio * v - phi * x0[j]);
    else {
      const r0 = (lam(s[i]) - lam(s[i - 1])) / h;
      x = x.map((v, j) => ratio * v - phi * x0[j] - 0.5 * phi * (x0[j] - prev![j]) / r0);
    }
    prev = x0;
  }
  return x;
}

/** Where the exact ODE ends from the toy's x_T at the run's first sigma. */
function endpoint(steps: number, toy: GaussianToy): Float64Array {
  const c = dpmSolverPlan(steps).coefficients[0];
  return toy.vpEndpoint(c.alphaS, c.sigmaS);
}

function runCpu(steps: number, toy: GaussianToy): Float32Array {
  const s = new DpmSolverCpu(steps);
  let x: Float32Array = Float32Array.from(toy.xT);
  for (let i = 0; i < steps; i++) {
    const c = s.plan.coefficients[i];
    x = s.step(i, Float32Array.from(toy.vpEps(Float64Array.from(x), c.alphaS, c.sigmaS)), x);
  }
  return x;
}

Deno.test("DPM-Solver++ lands on x₀ when the model is exact for a point mass", () => {
  // Data = δ(μ): ε̂(x) = (x − αμ)/σ is exact, so the x₀ prediction is μ at every step,
  // D1 = 0 and each update stays on x = α_t μ + σ_t ε: the run ends on μ but for float32
  // rounding. Bound: the last x₀ = (x − σε)/α has ~3 roundings of |x| ≤ 4.5 at 2⁻²⁴,
  // divided by that step's α (0.0064 for 1 step: 1.3e-4; ≥ 0.72 for 4+ steps: 1.2e-6),
  // doubled for what earlier steps pass on.
  for (const steps of [20, 4, 1]) {
    const toy = gaussianToy(257, 0, steps);
    const atol = steps === 1 ? 2.6e-4 : 2.4e-6;
    assertClose(runCpu(steps, toy), endpoint(steps, toy), { atol, rtol: 0, msg: `${steps} steps` });
  }
});

Deno.test("DPM-Solver++ CPU step matches a float64 re-derivation", () => {
  // Gaussian data N(μ, 0.5²) with the exact ε̂: float32 vs float64 arithmetic of the same
  // solver differ by rounding only, amplified at the first step by 1/α₀ ≈ 157.
  for (const steps of [20, 4]) {
    const toy = gaussianToy(257, 0.5, steps);
    assertClose(runCpu(steps, toy), dpm64(steps, toy, Float64Array.from(toy.xT)), {
      atol: 2e-5,
      rtol: 1e-5,
      msg: `${steps} steps`,
    });
  }
});

Deno.test("DPM-Solver++ converges to the exact ODE end for Gaussian data", () => {
  // The probability-flow ODE ends at μ + s·(x_T − α_T μ)/√(α_T²s² + σ_T²). The solver
  // error shrinks with the step count (the final first-order jump from the last σ to 0
  // dominates: 6.3e-2 at 20 steps, 4.9e-3 at 40, 2.0e-3 at 80 for this toy).
  const err = (steps: number) => {
    const toy = gaussianToy(257, 0.5, 7);
    const x = runCpu(steps, toy);
    const e = endpoint(steps, toy);
    return Math.max(...x.map((v, j) => Math.abs(v - e[j])));
  };
  const errs = [10, 20, 40, 80].map(err);
  for (let k = 1; k < errs.length; k++) assert(errs[k] < errs[k - 1], `errors ${errs}`);
  assert(errs[3] < 3e-3, `80-step error ${errs[3]}`);
});

Deno.test("DPM-Solver++ CPU steps must come in order and keep their operands", () => {
  const s = new DpmSolverCpu(3);
  const a = new Float32Array(4);
  assertThrows(() => s.step(1, a, a), RangeError, "in order");
  assertThrows(() => s.step(0, a, new Float32Array(5)), RangeError, "5");
  s.step(0, a, a);
  assert(s.lastX0 !== undefined);
  s.reset();
  s.step(0, a, a);
});

async function compareGpu(
  rt: Parameters<Parameters<typeof withRuntime>[0]>[0],
  config: Parameters<typeof dpmSolverPlan>[1],
  dtype: "f32" | "f16",
  tol: { atol: number; rtol: number },
): Promise<void> {
  const steps = 5, n = 1031;
  const g = new Prng(11);
  const cpu = new DpmSolverCpu(steps, config);
  const gpu = new DpmSolverGpu(steps, config);
  let xc: Float32Array = g.normals(n).map((v) => v * 3);
  let xg: Tensor = uploadTensor(rt, xc, [n], dtype);
  for (let i = 0; i < steps; i++) {
    let out = g.normals(n);
    if (dtype === "f16") out = Float32Array.from(Float16Array.from(out)); // the GPU sees f16
    const rec = new Recorder(rt);
    const next = gpu.step(rec, i, uploadTensor(rt, out, [n], dtype), xg);
    // Dispatches: x₀ (2 for ε: x − σε, then ×1/α; 1 otherwise) + 1 update for order 1,
    // + 2 for order 2.
    const x0Dispatches = cpu.plan.predictionType === "epsilon" ? 2 : 1;
    assertEquals(rec.dispatches, x0Dispatches + cpu.plan.coefficients[i].order);
    await rec.submit();
    xc = cpu.step(i, out, dtype === "f16" ? await readTensor(rt, xg) : xc);
    assertClose(await readTensor(rt, next), xc, { ...tol, msg: `${dtype} step ${i}` });
    xg = next;
  }
  gpu.dispose();
}

Deno.test(
  "DPM-Solver++ GPU step equals the CPU step (f32, all prediction types)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const tol = { atol: 1e-5, rtol: 1e-5 };
      await compareGpu(rt, {}, "f32", tol);
      await compareGpu(rt, { predictionType: "v_prediction" }, "f32", tol);
      await compareGpu(rt, { predictionType: "sample", solverType: "heun" }, "f32", tol);
    });
  },
);

Deno.test("DPM-Solver++ GPU step on f16 tensors", gpuTest, async () => {
  await withRuntime(async (rt) => {
    if (!rt.info.f16) return;
    // f16 storage of x₀ and the output: each stored value is within half an f16 ulp
    // (2⁻¹¹ relative); x₀ = (x − σε)/α inherits the rounding of x times 1/α.
    await compareGpu(rt, {}, "f16", { atol: 3e-3, rtol: 3e-3 });
  });
});
