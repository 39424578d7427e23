import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { Prng } from "../io/prng.ts";
import { gramRef } from "../reference/act_gram.ts";
import { unpackCodes } from "./pack.ts";
import { statsFromRows } from "./calibrate.ts";
import { uniformQuantizer } from "../../plugins/quantizers/uniform.ts";
import { tlqQuantizer } from "../../plugins/quantizers/tlq.ts";
import { planHadamard } from "../../plugins/rotations/hadamard.ts";
import type { HostMatrix, QuantizerPlugin } from "../../plugins/types.ts";
import {
  cholesky,
  GPTQ_DAMP,
  gptqRound,
  inverseCholeskyUpper,
  invertLower,
  outputSqnrDb,
  outputSqnrsDb,
  transformGram,
} from "./gptq.ts";
import { correlatedRows } from "./gptq_test_util.ts";

function weight(N: number, K: number, seed: number): HostMatrix {
  return { data: new Prng(seed).normals(N * K).map((v) => v / Math.sqrt(K)), rows: N, cols: K };
}

Deno.test("inverseCholeskyUpper: Uᵀ U = H⁻¹ and U is upper-triangular", () => {
  const K = 7;
  const h = gramRef(correlatedRows(40, K, 1), 40, K);
  const u = inverseCholeskyUpper(h, K)!;
  // Uᵀ U H = I
  for (let i = 0; i < K; i++) {
    for (let j = 0; j < K; j++) {
      if (j < i) assertEquals(u[i * K + j], 0);
      let s = 0;
      for (let k = 0; k < K; k++) {
        let utu = 0;
        for (let m = 0; m < K; m++) utu += u[m * K + i] * u[m * K + k];
        s += utu * h[k * K + j];
      }
      assert(Math.abs(s - (i === j ? 1 : 0)) < 1e-9, `(UᵀU H)[${i},${j}] = ${s}`);
    }
  }
  assertEquals(inverseCholeskyUpper(new Float64Array([1, 2, 2, 1]), 2), undefined);
});

Deno.test("cholesky and invertLower equal the one-row-at-a-time loops bit for bit", () => {
  for (const n of [1, 4, 6, 13, 30]) {
    const h = gramRef(correlatedRows(2 * n + 3, n, n), 2 * n + 3, n);
    const a = new Float64Array(h);
    for (let i = 0; i < n; i++) a[i * n + i] += 0.01;
    const ref = new Float64Array(n * n); // Cholesky–Banachiewicz, one row at a time
    for (let i = 0; i < n; i++) {
      for (let j = 0; j <= i; j++) {
        let s = a[i * n + j];
        for (let k = 0; k < j; k++) s -= ref[i * n + k] * ref[j * n + k];
        ref[i * n + j] = j < i ? s / ref[j * n + j] : Math.sqrt(s);
      }
    }
    const l = cholesky(a, n)!;
    assertEquals(l, ref);
    const inv = new Float64Array(n * n); // forward substitution, one row at a time
    for (let i = 0; i < n; i++) {
      for (let k = 0; k < i; k++) {
        for (let j = 0; j <= k; j++) inv[i * n + j] -= l[i * n + k] * inv[k * n + j];
      }
      inv[i * n + i] = 1;
      for (let j = 0; j <= i; j++) inv[i * n + j] *= 1 / l[i * n + i];
    }
    assertEquals(invertLower(l, n), inv);
  }
});

Deno.test("gptqRound's lazy batches give the column-at-a-time loop's codes", () => {
  const N = 5, K = 700; // K crosses the 64-column blocks and the 512-column chunks
  const h = gramRef(correlatedRows(800, K, 11), 800, K);
  const w = weight(N, K, 12);
  const q = uniformQuantizer.calibrate(w, { bits: 4 });
  const grid = uniformQuantizer.grid!(q);
  // The paper's loop: columns by decreasing H_jj; after each, its error onto all later ones.
  const order = Array.from({ length: K }, (_, j) => j)
    .sort((a, b) => h[b * K + b] - h[a * K + a] || a - b);
  let mean = 0;
  for (let j = 0; j < K; j++) mean += h[j * K + j] / K;
  const hp = new Float64Array(K * K);
  for (let a = 0; a < K; a++) {
    for (let b = 0; b < K; b++) hp[a * K + b] = h[order[a] * K + order[b]];
    hp[a * K + a] += GPTQ_DAMP * mean;
  }
  const u = inverseCholeskyUpper(hp, K)!;
  const wp = Float64Array.from({ length: N * K }, (_, i) => w.data[(i - i % K) + order[i % K]]);
  const codes = new Uint8Array(N * K);
  for (let a = 0; a < K; a++) {
    for (let r = 0; r < N; r++) {
      const v = wp[r * K + a];
      let best = 0;
      for (let c = 1; c < 16; c++) {
        const vals = grid.values.subarray(r * 16, r * 16 + 16);
        const [dc, db] = [Math.abs(v - vals[c]), Math.abs(v - vals[best])];
        if (dc < db || (dc === db && vals[c] < vals[best])) best = c;
      }
      codes[r * K + order[a]] = best;
      const e = (v - grid.values[r * 16 + best]) / u[a * K + a];
      for (let b = a + 1; b < K; b++) wp[r * K + b] -= e * u[a * K + b];
    }
  }
  assertEquals(unpackCodes(gptqRound(w, q, grid, h).codes, N, K, 4), codes);
});

for (const plugin of [uniformQuantizer, tlqQuantizer] as QuantizerPlugin[]) {
  Deno.test(`${plugin.name}: its grid holds exactly what dequantize gives`, () => {
    const w = weight(9, 40, 3);
    for (const bits of [3, 4]) {
      const q = plugin.calibrate(w, { bits, groupSize: 8 });
      const grid = plugin.grid!(q);
      const deq = plugin.dequantize(q);
      const codes = unpackCodes(q.codes, 9, 40, bits);
      const ng = Math.ceil(40 / grid.groupSize);
      for (let r = 0; r < 9; r++) {
        for (let c = 0; c < 40; c++) {
          const set = r * ng + Math.floor(c / grid.groupSize);
          assertEquals(grid.values[set * 2 ** bits + codes[r * 40 + c]], deq[r * 40 + c]);
        }
      }
    }
  });

  Deno.test(`${plugin.name} + GPTQ: lower output error than plain rounding at 3 and 4 bits`, () => {
    const [N, K, M] = [24, 64, 256];
    const x = correlatedRows(M, K, 5);
    const h = gramRef(x, M, K);
    const w = weight(N, K, 6);
    for (const bits of [3, 4]) {
      const q = plugin.calibrate(w, { bits });
      const g = gptqRound(w, q, plugin.grid!(q), h);
      const before = outputSqnrDb(w.data, plugin.dequantize(q), h, N, K);
      const after = outputSqnrDb(w.data, plugin.dequantize(g), h, N, K);
      assert(
        after > before + 1,
        `${bits} bits: output SQNR ${before.toFixed(2)} → ${after.toFixed(2)} dB`,
      );
      assertEquals(g.params, q.params); // the grid is unchanged: only codes move
      assertEquals(g.meta.gptqDamp, 0.01);
    }
  });
}

Deno.test("uniform per group + GPTQ: each group keeps its grid, lower output error", () => {
  const [N, K, M] = [16, 64, 256];
  const x = correlatedRows(M, K, 11);
  const h = gramRef(x, M, K);
  const w = weight(N, K, 12);
  const q = uniformQuantizer.calibrate(w, { bits: 4, groupSize: 16 });
  const grid = uniformQuantizer.grid!(q);
  assertEquals(grid.groupSize, 16);
  const g = gptqRound(w, q, grid, h);
  const before = outputSqnrDb(w.data, uniformQuantizer.dequantize(q), h, N, K);
  const after = outputSqnrDb(w.data, uniformQuantizer.dequantize(g), h, N, K);
  assert(after > before + 1, `output SQNR ${before.toFixed(2)} → ${after.toFixed(2)} dB`);
  assertEquals(g.params, q.params);
});

Deno.test("GPTQ with uncorrelated inputs (H = I) is plain nearest rounding", () => {
  const [N, K] = [6, 20];
  const w = weight(N, K, 8);
  const h = new Float64Array(K * K);
  for (let i = 0; i < K; i++) h[i * K + i] = 1;
  const q = uniformQuantizer.calibrate(w, { bits: 4 });
  const g = gptqRound(w, q, uniformQuantizer.grid!(q), h);
  assertEquals(Array.from(g.codes), Array.from(q.codes));
});

Deno.test("GPTQ: a dead input channel (H_jj = 0) and bad arguments", () => {
  const [N, K, M] = [5, 12, 64];
  const x = correlatedRows(M, K, 2);
  for (let r = 0; r < M; r++) x[r * K + 3] = 0;
  const h = gramRef(x, M, K);
  const w = weight(N, K, 4);
  const q = uniformQuantizer.calibrate(w, { bits: 4 });
  const g = gptqRound(w, q, uniformQuantizer.grid!(q), h); // no throw: the channel is skipped
  assert(Number.isFinite(outputSqnrDb(w.data, uniformQuantizer.dequantize(g), h, N, K)));
  assertThrows(() => gptqRound(w, q, uniformQuantizer.grid!(q), h.slice(1)), RangeError, "H has");
  assertThrows(
    () => gptqRound(w, q, uniformQuantizer.grid!(q), h, { damp: -1 }),
    RangeError,
    "damp",
  );
  assertThrows(
    () => gptqRound(w, q, { groupSize: K, values: new Float32Array(3) }, h),
    RangeError,
    "grid has",
  );
});

Deno.test("transformGram is the Gram matrix of the transformed rows (hadamard + smoothing)", () => {
  const [M, K] = [50, 32];
  const x = correlatedRows(M, K, 7);
  const r = planHadamard({
    name: "blocks.0.ff",
    weight: weight(8, K, 1),
    stats: statsFromRows("blocks.0.ff", x, M, K),
    options: { rotation: "hadamard" },
  });
  const got = transformGram(
    Float32Array.from(gramRef(x, M, K)),
    K,
    (a, n) => r.transformActivations(a, n),
  );
  const want = gramRef(r.transformActivations(x, M), M, K);
  for (let i = 0; i < K * K; i++) {
    const scale = Math.sqrt(want[Math.floor(i / K) * (K + 1)] * want[(i % K) * (K + 1)]);
    assert(Math.abs(got[i] - want[i]) <= 1e-5 * scale, `[${i}] ${got[i]} vs ${want[i]}`);
  }
});

Deno.test("outputSqnrsDb: one pass gives each weight's outputSqnrDb", () => {
  const [N, K, M] = [7, 24, 64];
  const h = gramRef(correlatedRows(M, K, 13), M, K);
  const w = weight(N, K, 14);
  const q3 = uniformQuantizer.dequantize(uniformQuantizer.calibrate(w, { bits: 3 }));
  const q4 = uniformQuantizer.dequantize(uniformQuantizer.calibrate(w, { bits: 4 }));
  const both = outputSqnrsDb(w.data, [q3, q4], h, N, K);
  const one = [outputSqnrDb(w.data, q3, h, N, K), outputSqnrDb(w.data, q4, h, N, K)];
  for (let i = 0; i < 2; i++) assert(Math.abs(both[i] - one[i]) < 1e-9, `${both[i]} vs ${one[i]}`);
  assert(both[1] > both[0], "4 bits beat 3");
  assertEquals(outputSqnrsDb(w.data, [w.data], h, N, K), [Infinity]);
});
