import { assertEquals } from "../../tests/assert.ts";
import { statsFromRows } from "./calibrate.ts";
import { centredStats } from "./centred_stats.ts";

Deno.test("centred stats: each channel shifted by its midpoint, absmax the half range", () => {
  // Channel 0 carries an offset of 10 (values 9..11), channel 1 none (−2..2).
  const x = Float32Array.from([9, -2, 11, 2, 10, 0]);
  const s = statsFromRows("l", x, 3, 2);
  const c = centredStats(s);
  assertEquals(Array.from(s.absmax), [11, 2]);
  assertEquals(Array.from(c.absmax), [1, 2]);
  assertEquals(Array.from(c.min), [-1, -2]);
  assertEquals(Array.from(c.max), [1, 2]);
  assertEquals(Array.from(c.sample), [-1, -2, 1, 2, 0, 0]);
  // Σx² (the ARS RMS J) and the rest stay the run's own.
  assertEquals(c.sumsq, s.sumsq);
  assertEquals(c.rows, s.rows);
});
