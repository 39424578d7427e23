import { assert, assertClose, assertThrows } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { uniformDequantize, uniformQuantize } from "../../plugins/quantizers/uniform.ts";
import { planHadamard } from "../../plugins/rotations/hadamard.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { actCentresRef } from "../reference/act_center.ts";
import { actDequantRef, actQuantRef } from "../reference/act_quant.ts";
import { cfgCombineRef, cfgDeltaRef } from "../reference/cfg_delta.ts";
import { gemmRef } from "../reference/gemm.ts";
import { lowRankAddRef } from "../reference/low_rank.ts";
import { lowRankSplit } from "./low_rank.ts";
import { QuantLinear } from "./qlinear.ts";

const relErr = (y: Float32Array, ref: Float32Array) =>
  Math.sqrt(y.reduce((s, v, i) => s + (v - ref[i]) ** 2, 0) / ref.reduce((s, v) => s + v * v, 0));

Deno.test(
  "QuantLinear lowRank: Q(x)·Q(E)ᵀ + (x·Aᵀ)·Bᵀ, then the epilogue (A16 and A8)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [M, N, K, R] = [24, 40, 64, 8]; // R a multiple of 4: the tiled GEMM fuses it
      const g = new Prng(31);
      const xs = g.normals(M * K);
      // A weight with a few strong directions, as trained ones have, plus noise.
      const basis = g.normals(3 * K);
      const ws = g.normals(N * K).map((v, i) =>
        v / 8 + [0, 1, 2].reduce((s, j) => s + basis[j * K + (i % K)] * Math.sin(i + j), 0) / 2
      );
      const w = { data: ws, rows: N, cols: K };
      const split = lowRankSplit(w, w, R);
      // Uniform codes: the integer path computes with exactly these weights (TLQ's int8 tables
      // re-express its levels).
      const q = uniformQuantize(split.residual, { bits: 4 });
      const wq = uniformDequantize(q);
      const bias = g.normals(N);
      const gate = g.normals(2 * N);
      const res = g.normals(M * N);
      const epi = { gate, residual: res, rowsPerGate: M / 2, activation: "gelu" as const };
      const t = (a: Float32Array, sh: number[]) => uploadTensor(rt, a, sh);
      const e = { gate: t(gate, [2, N]), residual: t(res, [M, N]), activation: "gelu" as const };
      const x = t(xs, [M, K]);
      const b = split.b; // the branch sees x unquantized
      const lowRank = { a: split.a, b: split.b };
      const a16 = new QuantLinear(rt, "l", q, bias, { abits: 16, lowRank });
      const y16 = await runAndRead(rt, (r) => a16.forward(r, x, e));
      const ref16 = lowRankAddRef(
        gemmRef(xs, wq, M, N, K, { bias }),
        xs,
        split.a,
        b,
        M,
        N,
        K,
        R,
        epi,
      );
      assertClose(y16, ref16, { atol: 1e-4, rtol: 1e-4 });
      const a8 = new QuantLinear(rt, "l", q, bias, { abits: 8, lowRank });
      const y8 = await runAndRead(rt, (r) => a8.forward(r, x, e));
      const a = actQuantRef(xs, M, K, 8);
      const xhat = actDequantRef(a.codes, a.scales, M, K);
      const ref8 = lowRankAddRef(
        gemmRef(xhat, wq, M, N, K, { bias }),
        xs,
        split.a,
        b,
        M,
        N,
        K,
        R,
        epi,
      );
      assertClose(y8, ref8, { atol: 1e-4, rtol: 1e-4 });
      // The tiled integer GEMM (GPUs' default) adds the branch in its store.
      const a8t = new QuantLinear(rt, "l", q, bias, { abits: 8, lowRank, intVersion: "tiled" });
      assertClose(await runAndRead(rt, (r) => a8t.forward(r, x, e)), ref8, {
        atol: 1e-4,
        rtol: 1e-4,
        msg: "tiled",
      });
      a8t.release();
      // The point of it: nearer the float layer than W4 of the whole weight.
      const plain = new QuantLinear(rt, "l", uniformQuantize(w, { bits: 4 }), bias, {
        abits: 16,
      });
      const exact = gemmRef(xs, ws, M, N, K, { bias });
      const yb = await runAndRead(rt, (r) => a16.forward(r, x));
      const yp = await runAndRead(rt, (r) => plain.forward(r, x));
      assert(
        relErr(yb, exact) < relErr(yp, exact) / 2,
        `${relErr(yb, exact)} vs ${relErr(yp, exact)}`,
      );
      // The branch's bytes are counted.
      assert(a16.weightBytes - plain.weightBytes >= 4 * R * (N + K));
      for (const l of [a16, a8, plain]) l.release();
    });
  },
);

Deno.test(
  "QuantLinear lowRank: rotated, centred and by CFG delta, the branch on the unrotated input",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [S, T, N, K, R] = [4, 8, 24, 64, 4]; // two uncond samples, then their cond twins
      const M = S * T;
      const g = new Prng(32);
      const base = g.normals(M * K).map((v, i) => v + (i % K === 3 ? 4 : 0));
      const xs = base.map((v, i) => i < (M / 2) * K ? v : base[i - (M / 2) * K] + 0.05 * v);
      const w = { data: g.normals(N * K), rows: N, cols: K };
      const plan = planHadamard({
        name: "l",
        weight: w,
        options: { rotation: "hadamard", smooth: false },
      });
      const split = lowRankSplit(plan.transformWeight(w), w, R);
      const q = uniformQuantize(split.residual, { bits: 8, symmetric: true });
      const wq = uniformDequantize(q);
      const bias = g.normals(N);
      const res = g.normals(M * N);
      const x = uploadTensor(rt, xs, [M, K]);
      // The adapter's integer GEMM, and the tiled one (the branch fused into it) on any adapter;
      // centred, and not (the branch then reuses the delta the quantizer saw).
      const run = async (intVersion: "tiled" | undefined, center: "mean" | undefined) => {
        const layer = new QuantLinear(rt, "l", q, bias, {
          abits: 8,
          center,
          transform: plan.gpu(rt),
          cfgDelta: true,
          lowRank: { a: split.a, b: split.b },
          intVersion,
        });
        const y = await runAndRead(rt, (r) =>
          layer.forward(r, x, {
            residual: uploadTensor(rt, res, [M, N]),
            rowsPerSample: T,
            cfgPair: true,
          }));
        layer.release();
        return y;
      };
      const got = await run(undefined, "mean");
      // CPU: the quantized product of d = [u; c − u] (centred, rotated), plus the branch's of d,
      // then the halves combined with the bias and the residual.
      const d = cfgDeltaRef(xs);
      const c = actCentresRef(d, T, K, "mean");
      const dt = plan.transformActivations(
        d.map((v, i) => Math.fround(v - c[Math.floor(i / (T * K)) * K + (i % K)])),
        M,
      );
      const ct = plan.transformActivations(c, S);
      const a = actQuantRef(dt, M, K, 8);
      const xhat = actDequantRef(a.codes, a.scales, M, K).map((v, i) =>
        v + ct[Math.floor(i / (T * K)) * K + (i % K)]
      );
      const z = cfgCombineRef(gemmRef(xhat, wq, M, N, K), M, N, { bias });
      const b = split.b;
      const ref = lowRankAddRef(z, xs, split.a, b, M, N, K, R, { residual: res });
      assertClose(got, ref, { atol: 2e-3, rtol: 1e-4 });
      assertClose(await run("tiled", "mean"), ref, { atol: 2e-3, rtol: 1e-4, msg: "tiled" });
      // And near the float layer x·Wᵀ + b + res (W8 of the residual, A8), centred or not.
      const exact = gemmRef(xs, w.data, M, N, K, { bias, residual: res });
      for (const y of [got, await run(undefined, undefined), await run("tiled", undefined)]) {
        assert(relErr(y, exact) < 0.01, `relative error ${relErr(y, exact)}`);
      }
    });
  },
);

Deno.test("QuantLinear lowRank: factors of the wrong size are named", gpuTest, async () => {
  await withRuntime((rt) => {
    const w = { data: new Prng(33).normals(8 * 16), rows: 8, cols: 16 };
    const q = uniformQuantize(w, { bits: 4 });
    const a = new Float32Array(2 * 16);
    assertThrows(
      () =>
        new QuantLinear(rt, "blk.ff", q, undefined, {
          abits: 16,
          lowRank: { a, b: new Float32Array(12) },
        }),
      RangeError,
      "blk.ff: lowRank must be A [R, 16] and B [8, R]",
    );
    assertThrows(
      () =>
        new QuantLinear(rt, "blk.ff", q, undefined, {
          abits: 8,
          lowRank: { a, b: new Float32Array(24) },
        }),
      RangeError,
      "got 32 and 24 values",
    );
  });
});
