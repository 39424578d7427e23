import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import {
  cachedParoStats,
  calibrateParo,
  decodeParoStats,
  encodeParoStats,
  mergeParoStats,
  type ParoCalibrationOptions,
  paroStatsKey,
} from "./paro_calibrate.ts";
import type { ParoStats } from "./paro_plan.ts";

function stats(seed: number, maps: number): ParoStats {
  const nb = 2; // 8×10 grid: 80 tokens
  let x = seed;
  const arr = () => Float64Array.from({ length: nb * nb }, () => (x = (x * 37 + 11) % 101));
  return {
    h: 8,
    w: 10,
    layers: 2,
    heads: 1,
    steps: 3,
    candidates: ["hw", "wh"],
    maps,
    stats: [0, 1].map(() =>
      [0].map(() =>
        [0, 1, 2].map(() => [0, 1].map(() => ({ mass: arr(), sparse: arr(), incoherence: arr() })))
      )
    ),
  };
}

Deno.test("PARO statistics survive encoding; merging sums them", () => {
  const a = stats(1, 2);
  const b = stats(5, 4);
  assertEquals(decodeParoStats(encodeParoStats(a)), a);
  const m = mergeParoStats([a, b]);
  assertEquals(m.maps, 6);
  assertEquals(
    Array.from(m.stats[1][0][2][1].incoherence),
    Array.from(a.stats[1][0][2][1].incoherence).map((v, i) =>
      v + b.stats[1][0][2][1].incoherence[i]
    ),
  );
  assertThrows(() => mergeParoStats([a, { ...b, steps: 2 }]), RangeError, "different");
  assertThrows(() => decodeParoStats(encodeParoStats(a).subarray(0, 100)), TypeError);
});

const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;

Deno.test(
  "cached PARO statistics are reused only for the same model, prompts and steps",
  gpuTest,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "webdit_paro_cache_" });
    const file = `${dir}/stats.bin`;
    let calibrated = 0;
    const opts = (o: Partial<ParoCalibrationOptions>): ParoCalibrationOptions => ({
      path: FIXTURE,
      prompts: ["red apple"],
      steps: 2,
      onProgress: (p) => calibrated += p.step === 1 && p.prompt === 0 ? 1 : 0,
      ...o,
    });
    try {
      await withRuntime(async (rt) => {
        const a = await cachedParoStats(rt, file, opts({}));
        assertEquals(calibrated, 1);
        assertEquals(await cachedParoStats(rt, file, opts({})), a, "same key: read back");
        assertEquals(calibrated, 1);
        const b = await cachedParoStats(rt, file, opts({ prompts: ["dog face"] }));
        assertEquals(calibrated, 2, "other prompts: calibrated again");
        // What came back is those prompts' own statistics, not the first key's: the fixture's
        // nearly uniform maps can sum to the same f32 masses for both prompts on some GPUs,
        // so it is checked against a calibration of them, not against the first prompt's.
        assertEquals(b, await calibrateParo(rt, opts({ prompts: ["dog face"] })));
      });
      // The weights are part of the key (a model retrained in place is another model).
      const other = new URL("../../tests/fixtures/pixart_tiny_sq", import.meta.url).pathname;
      assert(await paroStatsKey(opts({})) !== await paroStatsKey(opts({ path: other })));
      assert(await paroStatsKey(opts({})) !== await paroStatsKey(opts({ steps: 3 })));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
