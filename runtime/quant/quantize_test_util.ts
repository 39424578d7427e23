/**
 * Shared helpers of the quantize tests: the fixture model, a temporary artifact path, and
 * the images of quantized artifacts against the FP32 fixture's.
 *
 * @module
 */
import { relError } from "../../tests/assert.ts";
import type { Runtime } from "../gpu/device.ts";
import { loadPipeline, type Pipeline } from "../pipeline.ts";
import { writeArtifact } from "./quantize.ts";
import type { QuantizeResult } from "./quantize_types.ts";

/** The random PixArt fixture model (hidden width 32). */
export const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;

/** A fresh temporary folder's `model.safetensors`. */
export async function tmpFile(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "webdit_quant_" });
  return `${dir}/model.safetensors`;
}

/** The final latents of "red apple", seed 3, two steps. */
export async function image(pipe: Pipeline): Promise<Float32Array> {
  const r = await pipe.generate({ prompt: "red apple", seed: 3, steps: 2 });
  return r.latents;
}

/** The FP32 fixture's {@linkcode image}. */
export async function fixtureImage(rt: Runtime): Promise<Float32Array> {
  const fpp = await loadPipeline(rt, { path: FIXTURE });
  try {
    return await image(fpp);
  } finally {
    fpp.release();
  }
}

/**
 * Each quantize result written beside `out` (the first to `out` itself) and generated from:
 * its image's relative error against the FP32 fixture's, in order.
 */
export async function imageErrors(
  rt: Runtime,
  out: string,
  results: QuantizeResult[],
): Promise<number[]> {
  const pipes: Pipeline[] = [];
  const fpp = await loadPipeline(rt, { path: FIXTURE });
  try {
    for (const [i, r] of results.entries()) {
      const path = i === 0 ? out : out.replace(/model\.safetensors$/, `other${i}.safetensors`);
      await writeArtifact(path, r, { force: true });
      pipes.push(await loadPipeline(rt, { path }));
    }
    const ref = await image(fpp);
    const errs: number[] = [];
    for (const p of pipes) errs.push(relError(await image(p), ref));
    return errs;
  } finally {
    for (const p of pipes) p.release();
    fpp.release();
  }
}
