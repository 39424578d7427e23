/**
 * The server's warm-up: one short generation per model before it listens. WebGPU compiles
 * each kernel at its first use (on lavapipe with a cold shader cache, minutes for the bundled
 * model), and the sampling loop paces itself by a step's measured GPU time, which it does not
 * know before a batch shape has run once. Without a warm-up, both land on the first request,
 * and that request's first steps block the JS thread (so `/healthz` too).
 *
 * @module
 */
import { UNK_ID } from "../../plugins/models/emoji_tokenizer.ts";
import { latentGeometry } from "../latent_geometry.ts";
import type { SamplerName } from "../pipeline.ts";
import type { ModelEntry } from "./models.ts";

/** Options of {@linkcode warmUp}. */
export interface WarmUpOptions {
  /** Sampler steps a model; default 2 (the loop's pacing learns from step 1 on). */
  steps?: number;
  /** Sampler, as the server's default requests use; default each model's. */
  sampler?: SamplerName;
  /** Guidance, as the server's default requests use (> 1: the CFG batch); default each model's. */
  guidance?: number;
  /** Where progress lines go; default stderr. */
  log?: (line: string) => void;
}

/** One model's warm-up. */
export interface WarmUpResult {
  /** The entry's id. */
  id: string;
  /** Its wall time, ms. */
  ms: number;
}

/**
 * Generates one image at each entry's default size with `steps` steps (the shape of a default
 * one-image request), discarding it. A model that fails to generate throws, naming it: a
 * server that cannot run a model should say so at start, not at its first request.
 */
export async function warmUp(
  entries: readonly ModelEntry[],
  o: WarmUpOptions = {},
): Promise<WarmUpResult[]> {
  const log = o.log ?? ((l: string) => console.error(l));
  const steps = o.steps ?? 2;
  const out: WarmUpResult[] = [];
  for (const e of entries) {
    const t0 = performance.now();
    const n = latentGeometry(e.pipeline).size;
    log(`warming up ${e.id} (${steps} steps at ${n}×${n})…`);
    try {
      const r = await e.pipeline.generate({
        prompt: e.pipeline.tokenizer?.vocab[UNK_ID + 1] ?? "warm up", // its first real word
        steps,
        sampler: o.sampler ?? e.pipeline.defaults.sampler,
        guidance: o.guidance ?? e.pipeline.defaults.guidance,
      });
      await e.pipeline.decode(r.latents, r.shape, { tiling: e.vaeTiling }); // its VAE's kernels
    } catch (err) {
      throw new Error(`warm-up of ${e.id} failed: ${(err as Error).message}`, { cause: err });
    }
    const ms = performance.now() - t0;
    log(`warmed up ${e.id} in ${(ms / 1000).toFixed(1)} s`);
    out.push({ id: e.id, ms });
  }
  return out;
}
