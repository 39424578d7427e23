import {
  assert,
  assertClose,
  assertEquals,
  assertRejects,
  assertThrows,
} from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { lutDequantize, tlqQuantize } from "../../plugins/quantizers/tlq.ts";
import { uniformDequantize, uniformQuantize } from "../../plugins/quantizers/uniform.ts";
import { planHadamard } from "../../plugins/rotations/hadamard.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { actCentresRef } from "../reference/act_center.ts";
import { actDequantRef, actQuantRef } from "../reference/act_quant.ts";
import { cfgCombineRef, cfgDeltaRef } from "../reference/cfg_delta.ts";
import { gemmRef } from "../reference/gemm.ts";
import { type ActBits, IdentityTransform, QuantLinear } from "./qlinear.ts";

/** The value of per-sample rows c [S, K] at element i of x [S·R, K] (its sample's row). */
function perSample(c: Float32Array, R: number, K: number, i: number): number {
  return c[Math.floor(i / (R * K)) * K + (i % K)];
}

/**
 * Two samples of 16 tokens whose channels carry a per-sample offset 3× their spread (as
 * adaLN's shift gives; channel 5 of every token `spike`× the rest), a Hadamard plan without
 * smoothing, and its rotated weight at W8.
 */
function rotatedCase(seed: number, spike = 1) {
  const [S, R, N, K] = [2, 16, 8, 64];
  const M = S * R;
  const g = new Prng(seed);
  const off = g.normals(S * K).map((v) => 3 * v);
  const xs = g.normals(M * K).map((v, i) =>
    (i % K === 5 ? spike : 1) * v + perSample(off, R, K, i)
  );
  const w = { data: g.normals(N * K), rows: N, cols: K };
  const plan = planHadamard({
    name: "l",
    weight: w,
    options: { rotation: "hadamard", smooth: false },
  });
  const q = uniformQuantize(plan.transformWeight(w), { bits: 8, symmetric: true });
  return { S, R, N, K, M, xs, plan, q };
}

Deno.test(
  "QuantLinear: A16 equals X·Ŵᵀ + b; A8 through the identity transform equals the default",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [M, N, K] = [24, 40, 64];
      const g = new Prng(8);
      const xs = g.normals(M * K);
      const ws = g.normals(N * K).map((v) => v / 8);
      const bias = g.normals(N);
      const q = tlqQuantize({ data: ws, rows: N, cols: K }, { bits: 4 });
      const x = uploadTensor(rt, xs, [M, K]);
      const a16 = new QuantLinear(rt, "l", q, bias, { abits: 16 });
      assertEquals([a16.inFeatures, a16.outFeatures, a16.wbits], [K, N, 4]);
      // Codes (4 bits) + TLQ compact parameters (8 bytes a row, η) + bias.
      assertEquals(a16.weightBytes, (N * K) / 2 + N * 8 + 4 + N * 4);
      assertClose(
        await runAndRead(rt, (r) => a16.forward(r, x)),
        gemmRef(xs, lutDequantize(q), M, N, K, { bias }),
        { atol: 1e-4, rtol: 1e-4 },
      );
      const a8 = new QuantLinear(rt, "l", q, bias, { abits: 8 });
      const a8t = new QuantLinear(rt, "l", q, bias, {
        abits: 8,
        transform: new IdentityTransform(),
      });
      const y1 = await runAndRead(rt, (r) => a8.forward(r, x));
      const y2 = await runAndRead(rt, (r) => a8t.forward(r, x));
      assertEquals(Array.from(y1), Array.from(y2));
      // A8 stays near A16 (per-token int8 activations, int8 LUT).
      const y16 = await runAndRead(rt, (r) => a16.forward(r, x));
      let e = 0;
      let s = 0;
      for (let i = 0; i < y1.length; i++) {
        e += (y1[i] - y16[i]) ** 2;
        s += y16[i] ** 2;
      }
      assert(Math.sqrt(e / s) < 0.03, `A8 vs A16 relative error ${Math.sqrt(e / s)}`);
      // The identity's apply is a copy the caller owns.
      const c = await runAndRead(rt, (r) => new IdentityTransform().apply(r, x));
      assertEquals(Array.from(c), Array.from(xs));
      for (const l of [a16, a8, a8t]) l.release();
    });
  },
);

Deno.test(
  "QuantLinear.prepare: TLQ tables expanded once for the tiled integer GEMM, the same output",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [M, N, K] = [20, 24, 64];
      const g = new Prng(12);
      const xs = g.normals(M * K);
      const q = tlqQuantize({ data: g.normals(N * K), rows: N, cols: K }, { bits: 4 });
      const bias = g.normals(N);
      const x = uploadTensor(rt, xs, [M, K]);
      const l = new QuantLinear(rt, "l", q, bias, { abits: 8, intVersion: "tiled" });
      const before = await runAndRead(rt, (r) => l.forward(r, x));
      const bytes = l.weightBytes;
      await l.prepare();
      // The expanded tables: a row scale and 2^4 int8 levels a row (5 words) beside the rest.
      assertEquals(l.weightBytes, bytes + N * 5 * 4);
      assertEquals(Array.from(await runAndRead(rt, (r) => l.forward(r, x))), Array.from(before));
      await l.prepare(); // once only
      assertEquals(l.weightBytes, bytes + N * 5 * 4);
      l.release();
      // Weight-only layers have no tables to expand.
      const a16 = new QuantLinear(rt, "l", q, bias, { abits: 16 });
      const b16 = a16.weightBytes;
      await a16.prepare();
      assertEquals(a16.weightBytes, b16);
      a16.release();
    });
  },
);

Deno.test(
  "QuantLinear: uniform weights in groups on the integer path give x̂·Ŵᵀ + b (per token; centred A4 groups)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [S, R, N, K] = [2, 12, 40, 128];
      const M = S * R;
      const g = new Prng(81);
      const xs = g.normals(M * K);
      const bias = g.normals(N);
      const q = uniformQuantize({ data: g.normals(N * K).map((v) => v / 8), rows: N, cols: K }, {
        bits: 4,
        groupSize: 32,
      });
      const wq = uniformDequantize(q);
      const x = uploadTensor(rt, xs, [M, K]);
      const a8 = new QuantLinear(rt, "l", q, bias, { abits: 8 });
      const a = actQuantRef(xs, M, K, 8);
      assertClose(
        await runAndRead(rt, (r) => a8.forward(r, x)),
        gemmRef(actDequantRef(a.codes, a.scales, M, K), wq, M, N, K, { bias }),
        { atol: 1e-4, rtol: 1e-4 },
      );
      const opts = { abits: 4 as ActBits, center: "mean" as const, actGroup: 16, actAsym: true };
      const a4 = new QuantLinear(rt, "l", q, bias, opts);
      const c = actCentresRef(xs, R, K, "mean");
      const xc = xs.map((v, i) => Math.fround(v - perSample(c, R, K, i)));
      const b = actQuantRef(xc, M, K, 4, 16, true);
      const xhat = actDequantRef(b.codes, b.scales, M, K, 16, b.zeros).map((v, i) =>
        v + perSample(c, R, K, i)
      );
      assertClose(
        await runAndRead(rt, (r) => a4.forward(r, x, { rowsPerSample: R })),
        gemmRef(xhat, wq, M, N, K, { bias }),
        { atol: 2e-3, rtol: 1e-4 },
      );
      a8.release();
      a4.release();
    });
  },
);

Deno.test("QuantLinear rejects bad abits and bias lengths", gpuTest, async () => {
  await withRuntime((rt) => {
    const q = tlqQuantize({ data: new Prng(9).normals(8 * 16), rows: 8, cols: 16 }, { bits: 3 });
    assertThrows(
      () => new QuantLinear(rt, "l", q, undefined, { abits: 5 as ActBits }),
      RangeError,
      "abits",
    );
    assertThrows(
      () => new QuantLinear(rt, "l", q, new Float32Array(3), { abits: 8 }),
      RangeError,
      "bias has 3",
    );
  });
});

Deno.test(
  "QuantLinear centring: (x − c) quantized per token plus c·Ŵᵀ in float, per sample",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [S, R, N, K] = [2, 12, 24, 64]; // two samples of 12 tokens
      const M = S * R;
      const g = new Prng(11);
      // Every channel of a sample carries an offset 3× its spread, as adaLN's shift gives.
      const off = g.normals(S * K).map((v) => 3 * v);
      const xs = g.normals(M * K).map((v, i) => v + perSample(off, R, K, i));
      const bias = g.normals(N);
      const q = uniformQuantize({ data: g.normals(N * K), rows: N, cols: K }, {
        bits: 8,
        symmetric: true,
      });
      const wq = uniformDequantize(q);
      const x = uploadTensor(rt, xs, [M, K]);
      const layer = (center?: "midrange") =>
        new QuantLinear(rt, "l", q, bias, { abits: 8, center, transform: new IdentityTransform() });
      const centred = layer("midrange");
      const got = await runAndRead(rt, (r) => centred.forward(r, x, { rowsPerSample: R }));
      // Without rowsPerSample the layer quantizes x as it is.
      const same = await runAndRead(rt, (r) => centred.forward(r, x));
      // CPU: per sample the midrange c, x − c per token at 8 bits, + c, through Ŵ.
      const c = actCentresRef(xs, R, K, "midrange");
      const xc = xs.map((v, i) => Math.fround(v - perSample(c, R, K, i)));
      const a = actQuantRef(xc, M, K, 8);
      const xhat = actDequantRef(a.codes, a.scales, M, K).map((v, i) => v + perSample(c, R, K, i));
      const ref = gemmRef(xhat, wq, M, N, K, { bias });
      assertClose(got, ref, { atol: 1e-3, rtol: 1e-4 });
      // Against the float product, centring cuts the error of the shared offset.
      const exact = gemmRef(xs, wq, M, N, K, { bias });
      const plain = layer();
      const yp = await runAndRead(rt, (r) => plain.forward(r, x));
      assertEquals(Array.from(same), Array.from(yp));
      const err = (y: Float32Array) => y.reduce((s, v, i) => s + (v - exact[i]) ** 2, 0);
      assert(err(got) * 4 < err(yp), `centred ${err(got)} vs plain ${err(yp)}`);
      // A gate grouped otherwise than the samples is refused, named.
      const gate = uploadTensor(rt, new Float32Array(M * N / 4), [M / 4, N]);
      await assertRejects(
        () =>
          runAndRead(rt, (r) => centred.forward(r, x, { rowsPerSample: R, gate, rowsPerGate: 4 })),
        RangeError,
        "l: rowsPerSample 12 and rowsPerGate 4",
      );
      for (const l of [centred, plain]) l.release();
    });
  },
);

Deno.test(
  "QuantLinear centring through a rotation: the centre is rotated as x is",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const { S, R, N, K, M, xs, plan, q } = rotatedCase(12);
      const layer = new QuantLinear(rt, "l", q, undefined, {
        abits: 8,
        center: "midrange",
        transform: plan.gpu(rt),
      });
      const x = uploadTensor(rt, xs, [M, K]);
      const got = await runAndRead(rt, (r) => layer.forward(r, x, { rowsPerSample: R }));
      // CPU: Q((x − c)·T) + c·T, through the rotated Ŵ.
      const c = actCentresRef(xs, R, K, "midrange");
      const xc = xs.map((v, i) => Math.fround(v - perSample(c, R, K, i)));
      const a = plan.quantizeActivations(xc, M, 8);
      const ct = plan.transformActivations(c, S);
      const xhat = actDequantRef(a.codes, a.scales, M, K).map((v, i) => v + perSample(ct, R, K, i));
      assertClose(got, gemmRef(xhat, uniformDequantize(q), M, N, K), { atol: 1e-3, rtol: 1e-4 });
      layer.release();
    });
  },
);

Deno.test(
  "QuantLinear actGroup: a scale per group of channels after centring and the rotation",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // Channel 5 of every token 20× the others: per-token scales lose the rest at A4.
      const { S, R, N, K, M, xs, plan, q } = rotatedCase(13, 20);
      const wq = uniformDequantize(q);
      const x = uploadTensor(rt, xs, [M, K]);
      const layer = (actGroup?: number, actAsym?: boolean) =>
        new QuantLinear(rt, "l", q, undefined, {
          abits: 4,
          center: "mean",
          transform: plan.gpu(rt),
          actGroup,
          actAsym,
        });
      // CPU: Q_32((x − c)·T) + c·T through the rotated Ŵ, symmetric groups and asymmetric
      // ones (x̂ = Δ·code + z per group).
      const c = actCentresRef(xs, R, K, "mean");
      const xt = plan.transformActivations(
        xs.map((v, i) => Math.fround(v - perSample(c, R, K, i))),
        M,
      );
      const ct = plan.transformActivations(c, S);
      const ys: Float32Array[] = [];
      for (const asym of [false, true]) {
        const l = layer(32, asym);
        ys.push(await runAndRead(rt, (r) => l.forward(r, x, { rowsPerSample: R })));
        l.release();
        const a = actQuantRef(xt, M, K, 4, 32, asym);
        const xhat = actDequantRef(a.codes, a.scales, M, K, 32, a.zeros).map((v, i) =>
          v + perSample(ct, R, K, i)
        );
        assertClose(ys[ys.length - 1], gemmRef(xhat, wq, M, N, K), { atol: 2e-3, rtol: 1e-4 });
      }
      const got = ys[0];
      // Against the float product, the groups' error is below the per-token one.
      const exact = gemmRef(plan.transformActivations(xs, M), wq, M, N, K);
      const token = layer();
      const yt = await runAndRead(rt, (r) => token.forward(r, x, { rowsPerSample: R }));
      const err = (y: Float32Array) => y.reduce((s, v, i) => s + (v - exact[i]) ** 2, 0);
      assert(err(got) < err(yt), `groups ${err(got)} vs per token ${err(yt)}`);
      token.release();
      assertThrows(
        () => new QuantLinear(rt, "l", q, undefined, { abits: 16, actGroup: 32 }),
        RangeError,
        "l: actGroup needs quantized activations",
      );
      assertThrows(
        () => new QuantLinear(rt, "l", q, undefined, { abits: 8, actGroup: 24 }),
        RangeError,
        "l: actGroup: group must be a multiple of 4 that divides K = 64, got 24",
      );
      assertThrows(
        () => new QuantLinear(rt, "l", q, undefined, { abits: 8, actAsym: true }),
        RangeError,
        "l: actAsym needs actGroup",
      );
    });
  },
);

Deno.test(
  "QuantLinear cfgDelta: quantizes [u; c − u], rebuilds the cond half; centred, with an epilogue",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // Four samples: two unconditional, then their conditional twins 5 % away.
      const { R, N, K, M, xs: base, plan, q } = rotatedCase(21, 4);
      const xs = base.map((v, i) => i < (M / 2) * K ? v : base[i - (M / 2) * K] + 0.05 * v);
      const wq = uniformDequantize(q);
      const g = new Prng(22);
      const bias = g.normals(N);
      const gate0 = g.normals(N); // both halves' gate the same (adaLN's depends on t only)
      const gate = Float32Array.from([...gate0, ...gate0]);
      const res = g.normals(M * N);
      const epi = { bias, gate, residual: res, rowsPerGate: R, activation: "gelu" as const };
      const x = uploadTensor(rt, xs, [M, K]);
      const t = (a: Float32Array, sh: number[]) => uploadTensor(rt, a, sh);
      const e = { residual: t(res, [M, N]), gate: t(gate, [2, N]), activation: "gelu" as const };
      const run = async (cfgDelta: boolean, cfgPair: boolean) => {
        const l = new QuantLinear(rt, "l", q, bias, {
          abits: 8,
          center: "mean",
          transform: plan.gpu(rt),
          cfgDelta,
        });
        const y = await runAndRead(rt, (r) => l.forward(r, x, { ...e, rowsPerSample: R, cfgPair }));
        l.release();
        return y;
      };
      const got = await run(true, true);
      // CPU: Q((d − c)·T) + c·T for d = [u; c − u], through Ŵ, then the halves combined.
      const d = cfgDeltaRef(xs);
      const c = actCentresRef(d, R, K, "mean");
      const dt = plan.transformActivations(
        d.map((v, i) => Math.fround(v - perSample(c, R, K, i))),
        M,
      );
      const ct = plan.transformActivations(c, M / R);
      const a = actQuantRef(dt, M, K, 8);
      const xhat = actDequantRef(a.codes, a.scales, M, K).map((v, i) => v + perSample(ct, R, K, i));
      const ref = cfgCombineRef(gemmRef(xhat, wq, M, N, K), M, N, epi);
      assertClose(got, ref, { atol: 2e-3, rtol: 1e-4 });
      // What guidance amplifies, cond − uncond, is closer to the float product's than with
      // plain per-token quantization; without cfgPair the option changes nothing.
      const exact = gemmRef(plan.transformActivations(xs, M), wq, M, N, K, epi);
      const plain = await run(false, true);
      assertEquals(Array.from(await run(true, false)), Array.from(plain));
      const h = (M / 2) * N;
      const err = (y: Float32Array) =>
        y.subarray(h).reduce((s, v, i) => s + (v - y[i] - (exact[h + i] - exact[i])) ** 2, 0);
      assert(err(got) < err(plain) / 4, `delta ${err(got)} vs plain ${err(plain)}`);
    });
  },
);
