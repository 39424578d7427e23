import { assert, assertEquals } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { calibrate } from "./calibrate.ts";
import {
  buildRotationReport,
  planRotations,
  readLinearBiases,
  readLinearWeights,
} from "./rotation_plan.ts";

const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;

Deno.test(
  "buildRotationReport: branch, J and errors before/after for every planned layer",
  gpuTest,
  async () => {
    const cacheDir = await Deno.makeTempDir();
    try {
      await withRuntime(async (rt) => {
        const calibration = { prompts: ["red apple"], steps: 2, cacheDir };
        const stats = await calibrate(rt, { path: FIXTURE, ...calibration });
        const names = [...stats.layers.keys()].filter((n) => n.startsWith("transformer_blocks.0."));
        const weights = await readLinearWeights(FIXTURE, names);
        const biases = await readLinearBiases(FIXTURE, names);
        assertEquals(weights.get("transformer_blocks.0.ff.net.2")!.cols, 128);
        assertEquals(weights.get("transformer_blocks.0.ff.net.2")!.rows, 32);
        assertEquals(biases.get("transformer_blocks.0.ff.net.2")!.length, 32);
        const plans = planRotations(stats, weights, { rotation: "adaptive", maxSteps: 16 });
        const { rows, text } = await buildRotationReport(rt, {
          model: FIXTURE,
          plans,
          bits: 8,
          calibration,
        });
        assertEquals(rows.map((r) => r.layer), names);
        for (const r of rows) {
          assertEquals(r.kind, plans.get(r.layer)!.kind);
          assert(r.errBefore > 0 && r.errBefore < 0.05, `${r.layer} before ${r.errBefore}`);
          assert(r.errAfter > 0 && r.errAfter < 0.05, `${r.layer} after ${r.errAfter}`);
          assert(Number.isFinite(r.J) && r.J > 0, `${r.layer} J`);
          assert(text.includes(r.layer), r.layer);
        }
        assert(/\d+ layers \(/.test(text), text);
      });
    } finally {
      await Deno.remove(cacheDir, { recursive: true });
    }
  },
);
