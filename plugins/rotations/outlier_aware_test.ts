import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { Prng } from "../../runtime/io/prng.ts";
import { statsFromRows } from "../../runtime/quant/calibrate.ts";
import { loadLayerRotation, OutlierRotation } from "../../runtime/quant/rotation.ts";
import {
  calibrationRows,
  greedyRotation,
  outlierBlock,
  outlierRotationPlugin,
  planOutlier,
  spread,
  zigzagPermutation,
} from "./outlier_aware.ts";
import { assertGpuMatches, assertOrthogonalCpu, randomWeight, salientRows } from "./test_util.ts";
import { rotationReport } from "../../runtime/quant/rotation_plan.ts";
import type { CalibrationSettings } from "../../runtime/quant/calibrate.ts";

function assertOrthogonal(q: ArrayLike<number>, B: number, tol: number): void {
  for (let i = 0; i < B; i++) {
    for (let j = 0; j < B; j++) {
      let d = 0;
      for (let k = 0; k < B; k++) d += q[i * B + k] * q[j * B + k];
      assert(Math.abs(d - (i === j ? 1 : 0)) < tol, `QQᵀ[${i}][${j}] = ${d}`);
    }
  }
}

Deno.test("outlier: the greedy rotation spreads outliers and stays orthogonal", () => {
  const B = 32;
  const v = Float64Array.from(new Prng(1).normals(4 * B));
  v[5] = 300;
  v[B + 17] = -250;
  v[3 * B + 5] = 180;
  const r = greedyRotation(v, B, 256, new Prng(2));
  assert(r.steps >= 1, "at least one step kept");
  assertEquals(r.spread[0], spread(v));
  assert(r.spread[1] < r.spread[0] / 3, `spread ${r.spread[0]} → ${r.spread[1]}`);
  assertEquals(spread(r.row), r.spread[1]);
  assertOrthogonal(r.q, B, 1e-10);
  // row = v · blockdiag(Q)
  for (let b = 0; b < 4; b++) {
    for (let j = 0; j < B; j++) {
      let acc = 0;
      for (let i = 0; i < B; i++) acc += v[b * B + i] * r.q[i * B + j];
      assert(Math.abs(acc - r.row[b * B + j]) < 1e-9, "row is v·Q");
    }
  }
  // A flat row gains nothing: no step is kept.
  const flat = new Float64Array(2 * B).fill(1);
  assertEquals(greedyRotation(flat, B, 16, new Prng(3)).steps, 0);
});

Deno.test("outlier: the rowmax objective is each token's squared max, and the greedy lowers it", () => {
  assertEquals(spread(Float64Array.from([1, -3, 2, 0.5]), "rowmax", 2), (9 + 4) / 2);
  // 64 tokens of width 2·32: every token has a hot channel (a different one per token),
  // which no single channel's extreme would reveal; a per-token objective spreads them.
  const B = 32;
  const K = 2 * B;
  const rows = 64;
  const g = new Prng(5);
  const v = Float64Array.from(g.normals(rows * K));
  for (let r = 0; r < rows; r++) v[r * K + ((r * 7) % K)] = 40;
  const r = greedyRotation(v, B, 64, new Prng(6), "rowmax", K);
  assert(r.steps >= 1, "at least one step kept");
  assertEquals(r.spread[0], spread(v, "rowmax", K));
  assert(r.spread[1] < r.spread[0] / 4, `rowmax ${r.spread[0]} → ${r.spread[1]}`);
  assertOrthogonal(r.q, B, 1e-10);
});

Deno.test("outlier: the zigzag permutation gives every block one of the largest channels", () => {
  const B = 8;
  const nb = 5;
  const v = Float64Array.from(new Prng(4).normals(nb * B));
  const top = [3, 9, 11, 30, 38];
  for (const [i, c] of top.entries()) v[c] = 100 + i;
  const perm = zigzagPermutation(v, B);
  assertEquals([...perm].sort((a, b) => a - b), Array.from({ length: nb * B }, (_, i) => i));
  for (let b = 0; b < nb; b++) {
    const block = Array.from(perm.subarray(b * B, (b + 1) * B));
    assertEquals(block.filter((c) => top.includes(c)).length, 1, `block ${b}`);
  }
  // Zigzag: the 1st and 10th largest share block 0, the 5th and 6th share the last block.
  const order = Array.from({ length: nb * B }, (_, i) => i).sort((a, b) =>
    Math.abs(v[b]) - Math.abs(v[a])
  );
  assertEquals(perm[0], order[0]);
  assertEquals(perm[1], order[2 * nb - 1]);
  assertEquals(perm[(nb - 1) * B], order[nb - 1]);
  assertEquals(perm[(nb - 1) * B + 1], order[nb]);
});

Deno.test("outlier: block 128, or the largest power of two below it dividing K", () => {
  for (const [K, b] of [[1152, 128], [4608, 128], [192, 64], [24, 8], [128, 128], [7, 1]]) {
    assertEquals(outlierBlock(K), b, `K = ${K}`);
  }
});

Deno.test(
  "outlier: (X·T)(W·diag(m)·R)ᵀ = X·Wᵀ on the CPU and the GPU, codes exact",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      for (const [M, K, N] of [[11, 192, 24], [3, 64, 9]]) {
        const x = salientRows(M, K, K + 1, [2, 70, 71], 120);
        const w = randomWeight(N, K, K + 2);
        const plan = planOutlier({
          name: "l",
          weight: w,
          stats: statsFromRows("l", x, M, K),
          options: { rotation: "outlier", maxSteps: 64 },
        });
        assertEquals(plan.block, 64);
        assertOrthogonal(plan.q1, plan.block, 1e-6);
        assertOrthogonal(plan.q2, plan.block, 1e-6);
        // Two f32 stages of b-term sums: each output is within about b·2^-24 relative.
        const tol = 2 * plan.block * 2 ** -24;
        assertOrthogonalCpu(plan, x, M, w, tol);
        await assertGpuMatches(rt, plan, x, M, w, 8, tol);
        await assertGpuMatches(rt, plan, x, M, w, 4, tol);
      }
    });
  },
);

Deno.test("outlier: on salient channels it cuts the A8 output error of plain per-token quantization", () => {
  const [M, K] = [64, 256];
  const salient = [10, 100, 200, 201];
  const x = salientRows(M, K, 5, salient, 150);
  const w = randomWeight(32, K, 6);
  const stats = statsFromRows("l", x, M, K);
  const cal = {
    modelHash: "",
    settings: {} as CalibrationSettings,
    layers: new Map([["l", stats]]),
  };
  const weights = new Map([["l", w]]);
  for (const smooth of [false, true]) {
    const plan = planOutlier({
      name: "l",
      weight: w,
      stats,
      options: { rotation: "outlier", smooth },
    });
    const [row] = rotationReport(new Map([["l", plan]]), cal, weights, { bits: 8 });
    assert(
      row.errAfter < row.errBefore / 3,
      `smooth ${smooth}: A8 output error ${row.errBefore} → ${row.errAfter}`,
    );
    assert(plan.report.greedySteps![0] > 0, "the first pass kept steps");
  }
});

Deno.test("outlier: stored tensors load back; bad parts are refused", () => {
  const [M, K] = [6, 32];
  const x = salientRows(M, K, 7, [4]);
  const w = randomWeight(3, K, 8);
  const plan = planOutlier({
    name: "l",
    weight: w,
    stats: statsFromRows("l", x, M, K),
    options: { rotation: "outlier" },
  });
  const back = loadLayerRotation("outlier", plan.tensors());
  assertEquals(
    Array.from(back.transformActivations(x, M)),
    Array.from(plan.transformActivations(x, M)),
  );
  const t = plan.tensors();
  assertEquals(t.perm.dtype, "U32");
  assertThrows(
    () => new OutlierRotation(plan.m, plan.q1, plan.q2, new Uint32Array(K)),
    RangeError,
    "permutation",
  );
  assertThrows(
    () => planOutlier({ name: "l", weight: w, options: { rotation: "outlier" } }),
    RangeError,
    "statistics",
  );
  assertEquals(outlierRotationPlugin.name, "outlier");
});

Deno.test("outlier: the greedy rotates the quantizer's own rows when the statistics hold them", () => {
  const [M, K] = [8, 64];
  const x = salientRows(M, K, 9, [5], 30);
  const xq = salientRows(M, K, 10);
  const s = statsFromRows("l", x, M, K);
  const m = new Float32Array(K).fill(2);
  const raw = calibrationRows(s, m, M, false);
  const own = calibrationRows({ ...s, quantSample: xq }, m, M, false);
  assertEquals(Array.from(raw.data), Array.from(x, (v) => v / 2));
  assertEquals(Array.from(own.data), Array.from(xq, (v) => v / 2));
});
