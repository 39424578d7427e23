import { assert, assertAlmostEquals, assertEquals, assertThrows } from "../../tests/assert.ts";
import { kmeansQuantizer } from "../../plugins/quantizers/kmeans.ts";
import { tlqQuantizer } from "../../plugins/quantizers/tlq.ts";
import { uniformQuantizer } from "../../plugins/quantizers/uniform.ts";
import type { QuantizerPlugin } from "../../plugins/types.ts";
import { hasCompactTlq } from "../reference/qgemm.ts";
import { Prng } from "../io/prng.ts";
import { gptqRound, outputSqnrDb } from "./gptq.ts";
import { type GptqJob, runGptqJob } from "./gptq_pool.ts";
import { levelError, levelNormals, levelSqnrDb, refitFreeLevels } from "./gptq_refit.ts";
import { unpackCodes } from "./pack.ts";
import { gramRef } from "../reference/act_gram.ts";

/** A layer [N, K] and its inputs' Gram matrix (neighbouring channels correlated). */
function layer(N: number, K: number, seed: number) {
  const r = new Prng(seed);
  const w = { data: r.normals(N * K).map((v) => 0.05 * v), rows: N, cols: K };
  const T = 4 * K;
  const x = r.normals(T * K);
  for (let t = 0; t < T; t++) {
    for (let k = 1; k < K; k++) x[t * K + k] += 0.7 * x[t * K + k - 1];
  }
  const h = gramRef(x, T, K);
  return { w, h };
}

/** A plugin's W3 weight of the layer with GPTQ's codes, and their level normal equations. */
function gptqWeight(p: QuantizerPlugin, N: number, K: number, seed: number, bits = 3) {
  const { w, h } = layer(N, K, seed);
  const q = p.calibrate(w, { bits, ...(p.name === "tlq" ? { fit: "mse" as const } : {}) });
  const g = gptqRound(w, q, p.grid!(q), h);
  return { w, h, g, m: levelNormals(w.data, N, K, bits, g.codes, h) };
}

Deno.test("levelNormals: E(l) is the row's output error, its SQNR outputSqnrDb's", () => {
  const [N, K] = [5, 20];
  const { w, h, g, m } = gptqWeight(kmeansQuantizer, N, K, 2);
  const deq = kmeansQuantizer.dequantize(g);
  for (let n = 0; n < N; n++) {
    let e = 0;
    for (let a = 0; a < K; a++) {
      for (let b = 0; b < K; b++) {
        e += (w.data[n * K + a] - deq[n * K + a]) * h[a * K + b] *
          (w.data[n * K + b] - deq[n * K + b]);
      }
    }
    assertAlmostEquals(levelError(m, n, g.params.lut, n * 8), e, 1e-9 * m.c[n]);
  }
  assertAlmostEquals(levelSqnrDb(m, g.params.lut), outputSqnrDb(w.data, deq, h, N, K), 1e-6);
});

Deno.test("kmeans refit: each row's least-squares levels, less output error", () => {
  const [N, K] = [7, 24];
  const { w, h, g, m } = gptqWeight(kmeansQuantizer, N, K, 4);
  const old = g.params.lut;
  const values = refitFreeLevels(m, { groupSize: K, values: old }, K);
  const c = unpackCodes(g.codes, N, K, 3);
  for (let n = 0; n < N; n++) {
    assert(levelError(m, n, values, n * 8) <= levelError(m, n, old, n * 8), `row ${n}`);
    // The optimum: the gradient Cᵀ H (w − ŵ) vanishes for every level a weight uses; a level
    // no weight uses keeps its value.
    for (let l = 0; l < 8; l++) {
      if (!Array.from(c.subarray(n * K, (n + 1) * K)).includes(l)) {
        assertEquals(values[n * 8 + l], old[n * 8 + l]);
        continue;
      }
      let grad = 0;
      let scale = 0;
      for (let i = 0; i < K; i++) {
        if (c[n * K + i] !== l) continue;
        for (let j = 0; j < K; j++) {
          grad += h[i * K + j] * (w.data[n * K + j] - values[n * 8 + c[n * K + j]]);
          scale += Math.abs(h[i * K + j] * w.data[n * K + j]);
        }
      }
      assert(Math.abs(grad) < 1e-4 * scale, `row ${n} level ${l}: gradient ${grad} of ${scale}`);
    }
  }
  assert(levelSqnrDb(m, values) > levelSqnrDb(m, old) + 0.05, "a gain");
  assertThrows(() => refitFreeLevels(m, { groupSize: 8, values: old }, K), RangeError, "groups");
});

Deno.test("uniform and TLQ refits: their own format, never more output error, a gain overall", () => {
  const [N, K] = [9, 32];
  for (const p of [uniformQuantizer, tlqQuantizer, kmeansQuantizer]) {
    for (const bits of [3, 4]) {
      const { g, m } = gptqWeight(p, N, K, 6 + bits, bits);
      const r = p.refit!(g, m);
      assertEquals(r.codes, g.codes);
      const [before, after] = [p.grid!(g).values, p.grid!(r).values];
      for (let n = 0; n < N; n++) {
        const L = 2 ** bits;
        const [e0, e1] = [levelError(m, n, before, n * L), levelError(m, n, after, n * L)];
        assert(e1 <= e0 * (1 + 1e-12), `${p.name} W${bits} row ${n}: ${e1} > ${e0}`);
      }
      const gain = levelSqnrDb(m, after) - levelSqnrDb(m, before);
      assert(gain > 0.01, `${p.name} W${bits}: ${gain} dB`);
      // The stored form holds: uniform's zero, TLQ's compact parameters (Δ f16, the LUT theirs).
      if (p.name === "uniform") assertEquals(r.params.zero, g.params.zero);
      if (p.name === "tlq") assert(hasCompactTlq(r), "TLQ refit stays compact");
    }
  }
});

Deno.test("a GPTQ job with refit returns the level normals of its codes", () => {
  const [N, K] = [6, 32];
  const { w, h } = layer(N, K, 9);
  const q = kmeansQuantizer.calibrate(w, { bits: 3 });
  const job = (refit: boolean): GptqJob => ({
    id: 0,
    name: "l",
    w: w.data.slice(),
    rows: N,
    cols: K,
    bits: 3,
    codes: q.codes,
    grid: { groupSize: K, values: q.params.lut },
    h: Float32Array.from(h),
    refit,
  });
  const plain = runGptqJob(job(false));
  const refit = runGptqJob(job(true));
  assertEquals(plain.normals, undefined);
  assertEquals(refit.codes, plain.codes);
  const m = refit.normals!;
  // The job's GPTQ SQNR is of the old levels; the normals score them alike.
  assertAlmostEquals(levelSqnrDb(m, q.params.lut), plain.outSqnrDb!, 1e-4);
});
