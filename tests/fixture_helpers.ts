/**
 * Helpers of the fixture tests (pixart_fixtures_test.ts, flux_fixtures_test.ts): where the
 * PyTorch test vectors live, how a folder's io.safetensors opens, the RMS-relative
 * tolerance check, and the forward tests every fixture folder gets.
 *
 * @module
 */
import { assert, maxAbsDiff, rms } from "./assert.ts";
import { gpuTest, withBindingLimit, withRuntime } from "./gpu.ts";
import type { Runtime } from "../runtime/gpu/device.ts";
import { openSafetensors, type SafetensorsFile } from "../runtime/io/safetensors.ts";
import { type GenerateRequest, loadPipeline, type Pipeline } from "../runtime/pipeline.ts";

type Dtype = "f32" | "f16";

/** The fixtures folder (a trailing slash: `${FIXTURES}${name}` is a model folder). */
export const FIXTURES = new URL("./fixtures/", import.meta.url).pathname;

/** The tiny pixel-space model with its own caption encoder (16×16 images). */
export const PIXEL_MODEL: string = `${FIXTURES}pixart_pixel`;

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
 * A PixArt fixture's guided sampler request: its caption and negative embeddings with masks,
 * its initial latents (and their size) and guidance scale; the caller adds steps and sampler.
 */
export async function fixtureRequest(f: SafetensorsFile): Promise<GenerateRequest> {
  return {
    captionEmbeds: {
      embeds: await f.readF32("prompt_embeds"),
      mask: await f.readF32("prompt_attention_mask"),
      shape: f.info("prompt_embeds").shape as [number, number, number],
      negative: {
        embeds: await f.readF32("negative_prompt_embeds"),
        mask: await f.readF32("negative_prompt_attention_mask"),
      },
    },
    latents: await f.readF32("latents"),
    height: f.info("latents").shape[2],
    width: f.info("latents").shape[3],
    guidance: (await f.readF32("guidance_scale"))[0],
  };
}

/**
 * Registers fixture `name`'s forward tests, f32 and (where the adapter has it) f16:
 * `forward` runs the loaded model on the fixture's inputs and returns its output, which
 * must match the fixture's "output" within 1e-4 × RMS (f32) or 1e-2 × RMS (f16). With
 * `rowChunked` (the bytes of the model's widest row-chunked intermediate, f32), a third
 * runs the f32 forward with the binding limit at half of it, so that part goes in row
 * chunks (runtime/model/row_chunks.ts), against the same output and tolerance.
 */
export function forwardTests(
  name: string,
  forward: (rt: Runtime, f: SafetensorsFile, pipe: Pipeline, dtype: Dtype) => Promise<Float32Array>,
  rowChunked?: (f: SafetensorsFile, pipe: Pipeline) => number,
): void {
  const cases = [["f32"], ["f16"], ...(rowChunked ? [["f32", "chunked"]] : [])] as const;
  for (const [dtype, chunked] of cases as readonly (readonly [Dtype, "chunked"?])[]) {
    const what = chunked
      ? "in row chunks matches the PyTorch reference"
      : dtype === "f32"
      ? "matches the PyTorch reference"
      : "matches within 1e-2 × RMS";
    Deno.test(`${name}: ${dtype} forward ${what}`, gpuTest, async () => {
      await withRuntime(async (rt) => {
        if (dtype === "f16" && !rt.info.f16) return;
        const f = await openFixture(name);
        try {
          const pipe = await loadPipeline(rt, { path: `${FIXTURES}${name}`, dtype });
          try {
            // Lowered after loading: the weights are not what this test splits.
            const got = chunked
              ? await withBindingLimit(
                rt,
                4 * Math.floor(rowChunked!(f, pipe) / 8),
                () => forward(rt, f, pipe, dtype),
              )
              : await forward(rt, f, pipe, dtype);
            const tol = dtype === "f32" ? 1e-4 : 1e-2;
            assertWithin(got, await f.readF32("output"), tol, `${name} ${dtype} forward`);
          } finally {
            pipe.release();
          }
        } finally {
          f.close();
        }
      });
    });
  }
}
