/**
 * The images `evaluate` writes under its `outDir`: one PNG per sample, named by the prompt's
 * position in the prompt list, a slug of the prompt and the seed, so that a prompt listed
 * twice gets two files.
 *
 * @module
 */
import { join } from "node:path";
import { writePng } from "../io/png.ts";
import type { SampleSet } from "./eval.ts";

function slug(s: string): string {
  return s.toLowerCase().replace(/[^a-z0-9]+/g, "_").replace(/^_|_$/g, "").slice(0, 40) || "image";
}

/** The file name of the image of prompt number `index` (`prompt`) and `seed` under outDir. */
export function imageName(index: number, prompt: string, seed: number): string {
  return `${String(index).padStart(3, "0")}_${slug(prompt)}_s${seed}.png`;
}

/** The file names of prompts × seeds, prompt-major (a sample set's order). */
function imageNames(prompts: readonly string[], seeds: readonly number[]): string[] {
  return prompts.flatMap((p, i) => seeds.map((seed) => imageName(i, p, seed)));
}

/**
 * The files `evaluate` writes under `outDir` for these prompts and seeds (pixel-space
 * models): `outDir/model/…` and, with a reference, `outDir/reference/…`; for checking them
 * before a run.
 */
export function outDirImagePaths(
  outDir: string,
  prompts: readonly string[],
  seeds: readonly number[],
  reference: boolean,
): string[] {
  const names = imageNames(prompts, seeds);
  return (reference ? ["model", "reference"] : ["model"])
    .flatMap((sub) => names.map((n) => join(outDir, sub, n)));
}

/**
 * Writes the set's images (samples without one are skipped) into `dir`, created if missing,
 * under the names {@linkcode outDirImagePaths} lists; returns the paths written.
 */
export async function writeImages(dir: string, set: SampleSet): Promise<string[]> {
  await Deno.mkdir(dir, { recursive: true });
  const names = imageNames(set.prompts, set.seeds);
  if (names.length !== set.samples.length) {
    throw new RangeError(
      `${set.samples.length} samples for ${set.prompts.length} prompts × ${set.seeds.length} seeds`,
    );
  }
  const written: string[] = [];
  for (const [k, s] of set.samples.entries()) {
    if (!s.image) continue;
    const path = join(dir, names[k]);
    await writePng(path, s.image);
    written.push(path);
  }
  return written;
}
