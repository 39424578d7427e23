import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { type CalibrationStats, statsFromRows } from "../../runtime/quant/calibrate.ts";
import {
  formatRotationReport,
  planRotations,
  rotationReport,
} from "../../runtime/quant/rotation_plan.ts";
import type { HostMatrix } from "../types.ts";
import { adaptiveRotationPlugin, matchesLayer, overrideFor, planAdaptive } from "./adaptive.ts";
import { assertGpuMatches, randomWeight, salientRows } from "./test_util.ts";
import { planHadamard } from "./hadamard.ts";
import { planIdentity } from "./identity.ts";
import { planOutlier } from "./outlier_aware.ts";
import { layerErrors, rotationErrors } from "../../runtime/quant/rotation_error.ts";
import { tlqQuantizer } from "../quantizers/tlq.ts";
import { actQuantRef } from "../../runtime/reference/act_quant.ts";

/** Two layers: "calm" (N(0, 0.5²) inputs, J ≈ 0.5) and "loud" (salient channels, J ≫ 1). */
function twoLayers(): {
  stats: CalibrationStats;
  weights: Map<string, HostMatrix>;
  x: Float32Array[];
} {
  const [M, K] = [32, 128];
  const calm = salientRows(M, K, 1).map((v) => 0.5 * v);
  const loud = salientRows(M, K, 2, [7, 90], 80);
  const layers = new Map([
    ["blocks.0.calm", statsFromRows("blocks.0.calm", calm, M, K)],
    ["blocks.0.loud", statsFromRows("blocks.0.loud", loud, M, K)],
  ]);
  const weights = new Map([
    ["blocks.0.calm", randomWeight(16, K, 3)],
    ["blocks.0.loud", randomWeight(16, K, 4)],
  ]);
  return {
    stats: { modelHash: "test", settings: {} as CalibrationStats["settings"], layers },
    weights,
    x: [calm, loud],
  };
}

Deno.test("adaptive: J < τ takes hadamard, J ≥ τ outlier-aware; τ moves the split", () => {
  const { stats, weights } = twoLayers();
  const plans = planRotations(stats, weights, { rotation: "adaptive" });
  assertEquals(plans.get("blocks.0.calm")!.kind, "hadamard");
  assertEquals(plans.get("blocks.0.loud")!.kind, "outlier");
  assert(plans.get("blocks.0.calm")!.report.J < 1, "calm J < 1");
  assert(plans.get("blocks.0.loud")!.report.J >= 1, "loud J ≥ 1");
  assert(plans.get("blocks.0.loud")!.report.reason!.includes("≥ τ 1"), "reason says why");
  const high = planRotations(stats, weights, { rotation: "adaptive", tau: 1e6 });
  assertEquals(high.get("blocks.0.loud")!.kind, "hadamard");
  const low = planRotations(stats, weights, { rotation: "adaptive", tau: 0 });
  assertEquals(low.get("blocks.0.calm")!.kind, "outlier");
});

Deno.test("adaptive, select error: the branch of least measured error among hadamard, outlier, none", () => {
  const { stats, weights } = twoLayers();
  for (const act of [{ bits: 8 }, { bits: 4, group: 16, asym: true }]) {
    const plans = planRotations(stats, weights, { rotation: "adaptive", select: "error", act });
    for (const [name, plan] of plans) {
      const input = {
        name,
        weight: weights.get(name)!,
        stats: stats.layers.get(name)!,
        options: {
          rotation: "adaptive" as const,
          act,
        },
      };
      const errs = [planHadamard(input), planOutlier(input), planIdentity(input)].map((p) =>
        rotationErrors(p, input.stats, input.weight, act).after
      );
      const chosen = rotationErrors(plan, input.stats, input.weight, act).after;
      assertEquals(chosen, Math.min(...errs), `${name} A${act.bits}: ${plan.report.reason}`);
      assert(
        plan.report.reason!.startsWith("least error (activations): hadamard "),
        plan.report.reason,
      );
    }
    // Salient channels: per-token quantization without a rotation is the worst of the three.
    assert(plans.get("blocks.0.loud")!.kind !== "none", `A${act.bits} loud`);
  }
  // With the weight quantizer the choice is by the whole layer's error.
  const act = { bits: 4, group: 16, asym: true };
  const weightQuant = (m: HostMatrix) =>
    tlqQuantizer.dequantize(tlqQuantizer.calibrate(m, { bits: 4 }));
  const opts = { rotation: "adaptive" as const, select: "error" as const, act, weightQuant };
  for (const [name, plan] of planRotations(stats, weights, opts)) {
    const input = {
      name,
      weight: weights.get(name)!,
      stats: stats.layers.get(name)!,
      options: opts,
    };
    const candidates = [planHadamard(input), planOutlier(input), planIdentity(input)];
    const errs = layerErrors(candidates, input.stats, input.weight, act, weightQuant);
    const [chosen] = layerErrors([plan], input.stats, input.weight, act, weightQuant);
    assertEquals(chosen, Math.min(...errs), `${name}: ${plan.report.reason}`);
    // It counts the weights' error: above the activations' alone.
    assert(chosen > rotationErrors(plan, input.stats, input.weight, act).after, name);
    // "act-error" ignores the weight quantizer: the least activation error, as without it.
    const byAct = planAdaptive({ ...input, options: { ...opts, select: "act-error" } });
    const actErrs = candidates.map((p) => rotationErrors(p, input.stats, input.weight, act).after);
    assertEquals(rotationErrors(byAct, input.stats, input.weight, act).after, Math.min(...actErrs));
    assert(byAct.report.reason!.startsWith("least error (activations)"), byAct.report.reason);
    // Neither quantizer on (a weight-only layer with exact weights): (X·T)(W·R)ᵀ = X·Wᵀ.
    const [exact] = layerErrors([plan], input.stats, input.weight, undefined, (m) => m.data);
    assert(exact < 1e-5, `${name}: ${exact}`);
  }
});

Deno.test("adaptive: overrides by exact name or pattern force the branch", () => {
  const { stats, weights } = twoLayers();
  const plans = planRotations(stats, weights, {
    rotation: "adaptive",
    overrides: { "blocks.0.loud": "hadamard", "blocks.*.calm": "none" },
  });
  assertEquals(plans.get("blocks.0.loud")!.kind, "hadamard");
  assertEquals(plans.get("blocks.0.calm")!.kind, "none");
  assertEquals(plans.get("blocks.0.calm")!.report.reason, "override");
  // Overrides also apply under a fixed rotation.
  const fixed = planRotations(stats, weights, {
    rotation: "hadamard",
    overrides: { "*.loud": "outlier" },
  });
  assertEquals(fixed.get("blocks.0.loud")!.kind, "outlier");
  assertEquals(fixed.get("blocks.0.calm")!.kind, "hadamard");
  assert(
    matchesLayer("transformer_blocks.*.ff.net.2", "transformer_blocks.12.ff.net.2"),
    "pattern",
  );
  assert(!matchesLayer("transformer_blocks.1", "transformer_blocks.12"), "exact");
  assertEquals(overrideFor({ "a.*": "none", "a.b": "outlier" }, "a.b"), "outlier");
});

Deno.test("planRotations: none needs no statistics; the others do; unknown rotations are refused", () => {
  const { weights } = twoLayers();
  const none = planRotations(undefined, weights, { rotation: "none" });
  assertEquals([...none.values()].map((p) => p.kind), ["none", "none"]);
  assertEquals(Object.keys(none.get("blocks.0.calm")!.tensors()).length, 0);
  assertThrows(
    () => planRotations(undefined, weights, { rotation: "adaptive" }),
    RangeError,
    "No calibration statistics",
  );
  const plain = planRotations(undefined, weights, { rotation: "hadamard", smooth: false });
  assertEquals(plain.get("blocks.0.loud")!.kind, "hadamard");
  assertThrows(
    () => planRotations(undefined, weights, { rotation: "spin" as "none" }),
    RangeError,
    "Unknown rotation",
  );
  assertThrows(
    () =>
      planAdaptive({ name: "x", weight: randomWeight(2, 8, 1), options: { rotation: "adaptive" } }),
    RangeError,
    "statistics",
  );
  assertEquals(adaptiveRotationPlugin.name, "adaptive");
});

Deno.test(
  "adaptive plan: every layer orthogonal on the GPU with exact codes; the report lists branch, J, errors",
  gpuTest,
  async () => {
    const { stats, weights, x } = twoLayers();
    const plans = planRotations(stats, weights, { rotation: "adaptive", maxSteps: 32 });
    await withRuntime(async (rt) => {
      for (const [i, name] of ["blocks.0.calm", "blocks.0.loud"].entries()) {
        const p = plans.get(name)!;
        await assertGpuMatches(
          rt,
          p,
          x[i].subarray(0, 5 * 128),
          5,
          weights.get(name)!,
          8,
          2 * p.block * 2 ** -24,
        );
      }
    });
    const rows = rotationReport(plans, stats, weights, { bits: 8 });
    assertEquals(rows.map((r) => r.kind), ["hadamard", "outlier"]);
    for (const r of rows) assertEquals(r.rows, 32);
    // Gaussian inputs gain nothing from a rotation (nor lose much); salient channels do.
    const [calm, loud] = rows;
    assert(calm.errAfter < 1.25 * calm.errBefore, `calm: ${calm.errBefore} → ${calm.errAfter}`);
    assert(loud.errAfter < loud.errBefore / 3, `loud: ${loud.errBefore} → ${loud.errAfter}`);
    assert(rows[1].channelRatio > 20, "the loud layer's max/median channel ratio");
    const text = formatRotationReport(rows);
    assert(text.includes("blocks.0.loud") && text.includes("outlier"), text);
    assert(text.includes("2 layers (hadamard: 1, outlier: 1)"), text);
    // A weight-only layer (A16 in a mixed plan) has no activation error to show.
    const mixed = rotationReport(plans, stats, weights, {
      bits: 8,
      layerBits: new Map([["blocks.0.calm", 16]]),
    });
    assert(Number.isNaN(mixed[0].errBefore) && Number.isNaN(mixed[0].errAfter), "A16 row");
    assertEquals(mixed[1].errAfter, loud.errAfter);
    assert(formatRotationReport(mixed).includes("err A8 before"));
    assertThrows(() => actQuantRef(new Float32Array(8), 2, 4, 16), RangeError, "bits must be 2…8");
  },
);
