import { assertEquals, assertThrows, maxAbsDiff } from "./assert.ts";
import { assertWithin } from "./fixture_helpers.ts";

Deno.test("maxAbsDiff: the largest |a − b| and where; a NaN anywhere is the answer", () => {
  assertEquals(maxAbsDiff([1, 2, 3], [1, 2.5, 2]), { max: 1, at: 2 });
  assertEquals(maxAbsDiff([NaN, 2, 3], [1, 2, 3]), { max: NaN, at: 0 }); // not overwritten
  // assertWithin (every fixture comparison) fails on an early NaN.
  const want = Float32Array.from([1, 2, 3]);
  assertThrows(() => assertWithin(Float32Array.from([NaN, 2, 3]), want, 1, "x"), Error, "x: max");
});
