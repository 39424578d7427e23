/**
 * GPTQ on the GPU (runtime/quant/gptq_gpu.ts) against the f64 CPU reference
 * (runtime/quant/gptq.ts): the factor U, and the codes of uniform (per row, per group, in
 * column order) and TLQ weights, with the output error they give.
 */
import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { Prng } from "../io/prng.ts";
import { gramRef } from "../reference/act_gram.ts";
import { uniformQuantizer } from "../../plugins/quantizers/uniform.ts";
import { tlqQuantizer } from "../../plugins/quantizers/tlq.ts";
import type { QuantizedWeight, QuantizerPlugin } from "../../plugins/types.ts";
import {
  type GptqOptions,
  gptqRound,
  inverseCholeskyUpper,
  outputSqnrDb,
  outputSqnrsDb,
} from "./gptq.ts";
import { gptqRoundGpu, gpuInverseCholeskyUpper, outputSqnrsDbGpu } from "./gptq_gpu.ts";
import { unpackCodes } from "./pack.ts";
import { correlatedRows } from "./gptq_test_util.ts";
import { GptqPool } from "./gptq_pool.ts";

/** The Gram matrix of correlated inputs [M, K]. */
function gram(M: number, K: number, seed: number): Float64Array {
  return gramRef(correlatedRows(M, K, seed), M, K);
}

Deno.test(
  "gpuInverseCholeskyUpper: the CPU's U within f32 rounding; not PD is undefined",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // 37: two blocks of 32; 100: four, the last of 4 rows.
      for (const K of [37, 100]) {
        const h = new Float64Array(gram(3 * K, K, 1));
        for (let i = 0; i < K; i++) h[i * K + i] += 0.01;
        const cpu = inverseCholeskyUpper(h, K)!;
        const gpu = (await gpuInverseCholeskyUpper(rt, h, K))!;
        let diff = 0;
        let max = 0;
        for (let i = 0; i < K * K; i++) {
          diff = Math.max(diff, Math.abs(cpu[i] - gpu[i]));
          max = Math.max(max, Math.abs(cpu[i]));
        }
        assert(diff < 1e-4 * max, `K ${K}: max |U_gpu − U_cpu| ${diff} (max |U| ${max})`);
      }
      assertEquals(await gpuInverseCholeskyUpper(rt, new Float64Array([1, 2, 2, 1]), 2), undefined);
    });
  },
);

Deno.test(
  "gptqRoundGpu: the CPU's codes up to near-ties, the same output error",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const cases: [string, QuantizerPlugin, number, number, number, object, GptqOptions][] = [
        ["uniform W4, act order", uniformQuantizer, 9, 70, 4, {}, {}], // 70: batches of 32, 32, 6
        [
          "uniform W3 in groups of 16, column order",
          uniformQuantizer,
          12,
          64,
          3,
          { groupSize: 16 },
          {
            actOrder: false,
          },
        ],
        ["tlq W4", tlqQuantizer, 8, 40, 4, {}, {}],
        ["uniform W8", uniformQuantizer, 6, 33, 8, {}, {}],
      ];
      for (const [label, plugin, N, K, bits, opts, o] of cases) {
        const h = gram(4 * K, K, N + K);
        const g = new Prng(N * K);
        const w = { data: g.normals(N * K).map((v) => v / Math.sqrt(K)), rows: N, cols: K };
        const q = plugin.calibrate(w, { bits, ...opts });
        const grid = plugin.grid!(q);
        const cpu = gptqRound(w, q, grid, h, o);
        const gpu = await gptqRoundGpu(rt, w, q, grid, h, o);
        assertEquals(gpu.meta, cpu.meta, label);
        assertEquals(gpu.params, q.params, label); // same grid
        const [a, b] = [cpu, gpu].map((x) => unpackCodes(x.codes, N, K, bits));
        const differ = a.filter((c, i) => c !== b[i]).length;
        assert(differ <= 0.01 * N * K, `${label}: ${differ} of ${N * K} codes differ`);
        const db = (x: QuantizedWeight) => outputSqnrDb(w.data, plugin.dequantize(x), h, N, K);
        const [dc, dg, d0] = [db(cpu), db(gpu), db(q)];
        assert(Math.abs(dc - dg) < 0.05, `${label}: output SQNR CPU ${dc} GPU ${dg}`);
        assert(dg > d0 + 1, `${label}: GPTQ ${dg} dB against plain rounding's ${d0}`);
      }
    });
  },
);

Deno.test(
  "gptqRoundGpu: a dead input channel, a damped retry and bad arguments",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [N, K] = [5, 12];
      const h = gram(64, K, 2);
      for (let i = 0; i < K; i++) h[i * K + 3] = h[3 * K + i] = 0; // input 3 is always 0
      const w = { data: new Prng(4).normals(N * K), rows: N, cols: K };
      const q = uniformQuantizer.calibrate(w, { bits: 4 });
      const grid = uniformQuantizer.grid!(q);
      const g = await gptqRoundGpu(rt, w, q, grid, h);
      assert(Number.isFinite(outputSqnrDb(w.data, uniformQuantizer.dequantize(g), h, N, K)));
      // Rank 1 and no dampening: not positive definite until damped (×10 from 1e-6).
      const r1 = new Float32Array(K * K).map((_, i) => (1 + (i % K)) * (1 + Math.floor(i / K)));
      const d = await gptqRoundGpu(rt, w, q, grid, r1, { damp: 0 });
      assert(Number(d.meta.gptqDamp) > 0, `damp used ${d.meta.gptqDamp}`);
      await assertRejects(() => gptqRoundGpu(rt, w, q, grid, h.slice(1)), RangeError, "H has");
    });
  },
);

Deno.test("outputSqnrsDbGpu: the CPU's output SQNRs within 0.01 dB", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const [N, K] = [7, 45];
    const h = gram(3 * K, K, 9);
    const g = new Prng(10);
    const w = g.normals(N * K);
    const deqs = [0.01, 0.1].map((s) => w.map((x, i) => x + s * Math.sin(3 * i)));
    const cpu = outputSqnrsDb(w, deqs, h, N, K);
    const gpu = await outputSqnrsDbGpu(rt, w, deqs, h, N, K);
    assert(cpu[0] > cpu[1] + 10, `${cpu}`);
    for (let i = 0; i < 2; i++) assert(Math.abs(cpu[i] - gpu[i]) < 0.01, `CPU ${cpu} GPU ${gpu}`);
  });
});

Deno.test(
  "GptqPool with a GPU: jobs of N·K² ≥ gpuMinWork there, smaller ones on the CPU",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const pool = new GptqPool(1, rt, 6 * 20 * 20);
      try {
        const run = (N: number, K: number) => {
          const w = { data: new Prng(N).normals(N * K), rows: N, cols: K };
          const q = uniformQuantizer.calibrate(w, { bits: 4 });
          const h = new Float32Array(gram(3 * K, K, K));
          return pool.run({
            name: `${N}x${K}`,
            w: w.data,
            rows: N,
            cols: K,
            bits: 4,
            codes: q.codes,
            grid: uniformQuantizer.grid!(q),
            h,
          });
        };
        const [small, big] = await Promise.all([run(5, 20), run(6, 20)]);
        assertEquals([small.device, big.device], ["cpu", "gpu"]);
        assert(big.outSqnrDb! > big.outSqnrRtnDb!, "the GPU job's output SQNRs");
      } finally {
        pool.close();
      }
    });
  },
);
