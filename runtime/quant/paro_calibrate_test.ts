import { assertEquals, assertThrows } from "../../tests/assert.ts";
import { decodeParoStats, encodeParoStats, mergeParoStats } from "./paro_calibrate.ts";
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
