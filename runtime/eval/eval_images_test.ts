import { join } from "node:path";
import { assertEquals, assertRejects } from "../../tests/assert.ts";
import { readPng } from "../io/png.ts";
import type { SampleSet } from "./eval.ts";
import { imageName, outDirImagePaths, writeImages } from "./eval_images.ts";

const REPEATED = ["red apple", "cat", "red apple"];

/** A sample set of 1×1 images whose red value is the sample's position. */
function tinySet(prompts: string[], seeds: number[]): SampleSet {
  const jobs = prompts.flatMap((prompt) => seeds.map((seed) => ({ prompt, seed })));
  return {
    prompts,
    seeds,
    steps: 1,
    guidance: 1,
    sampler: "ddim",
    model: "m",
    shape: [3, 1, 1],
    batch: 1,
    samples: jobs.map((j, k) => ({
      ...j,
      latents: new Float32Array(3),
      image: { width: 1, height: 1, channels: 3, data: new Uint8Array([k, 0, 0]) },
    })),
    unknownWords: [],
    ms: 0,
    steadyStepMs: NaN,
  };
}

Deno.test("imageName: position, slug and seed", () => {
  assertEquals(imageName(2, "Red Apple!", 7), "002_red_apple_s7.png");
  assertEquals(imageName(0, "!!!", 0), "000_image_s0.png");
});

Deno.test("outDirImagePaths: a repeated prompt gets a file per position", () => {
  const paths = outDirImagePaths("od", REPEATED, [0, 1], true);
  assertEquals(new Set(paths).size, paths.length);
  assertEquals(paths.slice(0, 6), [
    "od/model/000_red_apple_s0.png",
    "od/model/000_red_apple_s1.png",
    "od/model/001_cat_s0.png",
    "od/model/001_cat_s1.png",
    "od/model/002_red_apple_s0.png",
    "od/model/002_red_apple_s1.png",
  ]);
  assertEquals(paths[6], "od/reference/000_red_apple_s0.png");
});

Deno.test("writeImages: writes each sample to its listed file, repeats included", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_eval_images_" });
  try {
    const set = tinySet(REPEATED, [0, 1]);
    const written = await writeImages(join(dir, "model"), set);
    assertEquals(written, outDirImagePaths(dir, REPEATED, [0, 1], false));
    for (const [k, p] of written.entries()) assertEquals((await readPng(p)).data[0], k);
    assertEquals((await Array.fromAsync(Deno.readDir(join(dir, "model")))).length, 6);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("writeImages: a set whose samples are not prompts × seeds is refused", async () => {
  const set = tinySet(["cat"], [0]);
  set.samples.push(set.samples[0]);
  const dir = await Deno.makeTempDir({ prefix: "webdit_eval_images_" });
  try {
    await assertRejects(() => writeImages(dir, set), RangeError, "2 samples for 1 prompts");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
