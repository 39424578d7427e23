import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { statsFromRows } from "../../runtime/quant/calibrate.ts";
import { loadLayerRotation } from "../../runtime/quant/rotation.ts";
import { smoothingFactors } from "../../runtime/quant/smooth.ts";
import { blockHadamardDense } from "../../runtime/reference/hadamard.ts";
import { hadamardRotationPlugin, planHadamard } from "./hadamard.ts";
import { assertGpuMatches, assertOrthogonalCpu, randomWeight, salientRows } from "./test_util.ts";

Deno.test("hadamard: the block is the largest power of two dividing K, recorded in the plan", () => {
  for (const [K, b] of [[1152, 128], [192, 64], [512, 512], [24, 8], [9, 1]]) {
    const w = randomWeight(3, K, 1);
    const p = planHadamard({
      name: "l",
      weight: w,
      options: { rotation: "hadamard", smooth: false },
    });
    assertEquals(p.block, b, `K = ${K}`);
    assertEquals(p.report.block, b);
    assertEquals(p.tensors().block.data[0], b);
  }
});

Deno.test("hadamard: R is orthogonal and the signs are a seeded ±1 diagonal", () => {
  const K = 48;
  const p = planHadamard({
    name: "a",
    weight: randomWeight(2, K, 2),
    options: { rotation: "hadamard", smooth: false, seed: 3 },
  });
  const r = blockHadamardDense(p.signs, p.block);
  for (let i = 0; i < K; i++) {
    for (let j = 0; j < K; j++) {
      let d = 0;
      for (let k = 0; k < K; k++) d += r[i * K + k] * r[j * K + k];
      assert(Math.abs(d - (i === j ? 1 : 0)) < 1e-12, `RRᵀ[${i}][${j}] = ${d}`);
    }
  }
  const again = planHadamard({
    name: "a",
    weight: randomWeight(2, K, 2),
    options: { rotation: "hadamard", smooth: false, seed: 3 },
  });
  assertEquals(Array.from(again.signs), Array.from(p.signs));
  const other = planHadamard({
    name: "b",
    weight: randomWeight(2, K, 2),
    options: { rotation: "hadamard", smooth: false, seed: 3 },
  });
  assert(other.signs.some((v, i) => v !== p.signs[i]), "another layer draws other signs");
});

Deno.test(
  "hadamard with smoothing: (X·T)(W·diag(m)·R)ᵀ = X·Wᵀ on the CPU and the GPU, codes exact",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      for (const [M, K, N] of [[13, 192, 40], [1, 96, 7]]) {
        const x = salientRows(M, K, K, [5, 77], 60);
        const w = randomWeight(N, K, M + K);
        const stats = statsFromRows("l", x, M, K);
        const plan = planHadamard({
          name: "l",
          weight: w,
          stats,
          options: { rotation: "hadamard" },
        });
        assertEquals(Array.from(plan.m), Array.from(smoothingFactors(stats.absmax, w, 0.5)));
        assertOrthogonalCpu(plan, x, M, w);
        await assertGpuMatches(rt, plan, x, M, w, 8);
        await assertGpuMatches(rt, plan, x, M, w, 4);
      }
    });
  },
);

Deno.test("hadamard: stored tensors load back into the same transform", () => {
  const [M, K] = [4, 64];
  const x = salientRows(M, K, 9, [1]);
  const w = randomWeight(5, K, 10);
  const plan = planHadamard({
    name: "l",
    weight: w,
    stats: statsFromRows("l", x, M, K),
    options: { rotation: "hadamard", alpha: 0.7 },
  });
  const t = plan.tensors();
  const raw = Object.fromEntries(
    Object.entries(t).map(([k, v]) => [k, { ...v, data: new Uint8Array(v.data.buffer.slice(0)) }]),
  );
  const back = loadLayerRotation("hadamard", raw);
  assertEquals(back.kind, "hadamard");
  assertEquals(
    Array.from(back.transformActivations(x, M)),
    Array.from(plan.transformActivations(x, M)),
  );
  assertEquals(Array.from(back.transformWeight(w).data), Array.from(plan.transformWeight(w).data));
  assertThrows(
    () => loadLayerRotation("hadamard", { m: t.m, signs: t.signs }),
    RangeError,
    "block",
  );
  assertThrows(() => loadLayerRotation("spin", {}), RangeError, "Unknown rotation");
});

Deno.test("hadamard: the descriptor plans with planHadamard", () => {
  assertEquals(hadamardRotationPlugin.kind, "rotation");
  assertEquals(hadamardRotationPlugin.name, "hadamard");
  const w = randomWeight(2, 16, 1);
  const p = hadamardRotationPlugin.planLayer({
    name: "x",
    weight: w,
    options: { rotation: "hadamard", smooth: false },
  });
  assertEquals(p.kind, "hadamard");
  assertEquals(p.report.alpha, null);
});
