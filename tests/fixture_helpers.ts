/**
 * Helpers of the fixture tests (pixart_fixtures_test.ts, flux_fixtures_test.ts): where the
 * PyTorch test vectors live, how a folder's io.safetensors opens, the RMS-relative
 * tolerance check, and the forward tests every fixture folder gets.
 *
 * @module
 */
import { assert, maxAbsDiff, rms } from "./assert.ts";
import { gpuTest, withRuntime } from "./gpu.ts";
import type { Runtime } from "../runtime/gpu/device.ts";
import { openSafetensors, type SafetensorsFile } from "../runtime/io/safetensors.ts";

/** The fixtures folder (a trailing slash: `${FIXTURES}${name}` is a model folder). */
export const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

/** Asserts max |actual − expected| ≤ rel × RMS(expected), naming the worst entry. */
export function assertWithin(
  actual: Float32Array,
  expected: Float32Array,
  rel: number,
  what: string,
): void {
  const { max, at } = maxAbsDiff(actual, expected);
  const r = rms(expected);
  assert(
    max <= rel * r,
    `${what}: max |error| ${max.toExponential(3)} at ${at} > ${rel} × RMS ${
      r.toExponential(3)
    } (= ${(rel * r).toExponential(3)})`,
  );
}

/** The inputs and expected outputs of fixture folder `name` (its io.safetensors). */
export async function openFixture(name: string): Promise<SafetensorsFile> {
  return await openSafetensors(`${FIXTURES}${name}/io.safetensors`);
}

/**
 * Registers fixture `name`'s two forward tests: `check` in f32, and in f16 where the adapter
 * has it (`check` applies the tolerance; the f16 test's name states its 1e-2 × RMS).
 */
export function forwardTests(
  name: string,
  check: (rt: Runtime, name: string, dtype: "f32" | "f16") => Promise<void>,
): void {
  Deno.test(`${name}: f32 forward matches the PyTorch reference`, gpuTest, async () => {
    await withRuntime((rt) => check(rt, name, "f32"));
  });
  Deno.test(`${name}: f16 forward matches within 1e-2 × RMS`, gpuTest, async () => {
    await withRuntime(async (rt) => {
      if (rt.info.f16) await check(rt, name, "f16");
    });
  });
}
