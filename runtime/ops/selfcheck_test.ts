import { assert, assertEquals } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { maxError, runSelfChecks } from "./selfcheck.ts";

Deno.test(
  "doctor's self-checks: every kernel family agrees with its CPU reference",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const results = await runSelfChecks(rt);
      assert(results.length >= 15, `only ${results.length} checks ran`);
      const bad = results.filter((r) => !r.ok);
      assert(
        bad.length === 0,
        bad.map((r) => `${r.name}: error ${r.maxError} > ${r.tolerance} (${r.note ?? ""})`).join(
          "; ",
        ),
      );
    });
  },
);

Deno.test("maxError: the largest |a − b|; a NaN anywhere is Infinity", () => {
  assertEquals(maxError([1, 2, 3], [1, 2.5, 2]), 1);
  assertEquals(maxError([NaN, 2, 3], [1, 2, 3]), Infinity); // not overwritten by later entries
  assertEquals(maxError([1, 2, 3], [1, 2, NaN]), Infinity);
});
