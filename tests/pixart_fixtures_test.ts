/**
 * The PixArt transformer, caption encoder and samplers against test vectors written by
 * the independent PyTorch implementation (tools/torch/make_fixtures.py). Tolerances of
 * issue 3: max |error| ≤ 1e-4 × RMS of the expected output in f32, ≤ 1e-2 × RMS in f16.
 */
import { gpuTest, withRuntime } from "./gpu.ts";
import {
  assertWithin,
  fixtureRequest,
  FIXTURES,
  forwardTests,
  openFixture,
} from "./fixture_helpers.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import type { Runtime } from "../runtime/gpu/device.ts";
import { readTensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import type { SafetensorsFile } from "../runtime/io/safetensors.ts";
import { loadPipeline, type Pipeline, type SamplerName } from "../runtime/pipeline.ts";

const NAMES = ["pixart_tiny_sq", "pixart_tiny_rect", "pixart_pixel"];

/** Half of the model batch [uncond…, cond…] for the added conditions of a sampler run. */
async function added(f: SafetensorsFile, prefix: string) {
  if (!f.tensors.has(`${prefix}resolution`)) return undefined;
  return {
    resolution: await f.readF32(`${prefix}resolution`),
    aspectRatio: await f.readF32(`${prefix}aspect_ratio`),
  };
}

/** The transformer's forward on the fixture's inputs. */
async function forward(rt: Runtime, f: SafetensorsFile, pipe: Pipeline, dtype: "f32" | "f16") {
  const x = await f.readF32("hidden_states");
  const xs = f.info("hidden_states").shape;
  const e = await f.readF32("encoder_hidden_states");
  const es = f.info("encoder_hidden_states").shape;
  const m = await f.readF32("encoder_attention_mask");
  const t = await f.readF32("timestep");
  const rec = new Recorder(rt);
  const cond = pipe.transformer.prepare(
    rec,
    uploadTensor(rt, e, es, dtype),
    uploadTensor(rt, m, [es[0], es[1]], dtype),
    await added(f, ""),
  );
  const out = pipe.transformer.forward(rec, uploadTensor(rt, x, xs, dtype), [...t], cond);
  await rec.submit();
  const got = await readTensor(rt, out);
  cond.release();
  return got;
}

async function samplerCheck(rt: Runtime, name: string, sampler: SamplerName) {
  const f = await openFixture(name);
  try {
    const pipe = await loadPipeline(rt, { path: `${FIXTURES}${name}` });
    try {
      const res = await pipe.generate({
        ...await fixtureRequest(f),
        steps: 4,
        sampler,
        added: await added(f, "sample_"),
      });
      const key = sampler === "ddim" ? "ddim" : "dpm";
      assertWithin(
        res.latents,
        await f.readF32(`${key}_latents`),
        1e-4,
        `${name} ${sampler} 4 steps`,
      );
    } finally {
      pipe.release();
    }
  } finally {
    f.close();
  }
}

/** Bytes of the feed-forward's f32 intermediate [B·T, 4D] on the fixture's input. */
function feedForwardBytes(f: SafetensorsFile, pipe: Pipeline): number {
  const [B, , H, W] = f.info("hidden_states").shape;
  const c = pipe.transformer.config;
  return B * (H / c.patchSize) * (W / c.patchSize) * 4 * c.innerDim * 4;
}

for (const name of NAMES) {
  forwardTests(name, forward, feedForwardBytes);
  for (const sampler of ["dpm++2m", "ddim"] as const) {
    Deno.test(
      `${name}: 4-step ${sampler} with CFG matches the PyTorch reference`,
      gpuTest,
      async () => {
        await withRuntime((rt) => samplerCheck(rt, name, sampler));
      },
    );
  }
}

Deno.test("pixart_pixel: the caption encoder matches the PyTorch reference", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const f = await openFixture("pixart_pixel");
    const pipe = await loadPipeline(rt, { path: `${FIXTURES}pixart_pixel` });
    try {
      const ids = await f.readF32("te_input_ids");
      const mask = await f.readF32("te_attention_mask");
      const [B, L] = f.info("te_input_ids").shape;
      const caps = Array.from({ length: B }, (_, b) => ({
        ids: Uint32Array.from(ids.subarray(b * L, (b + 1) * L)),
        mask: mask.slice(b * L, (b + 1) * L),
        unknown: [],
        truncated: [],
      }));
      const rec = new Recorder(rt);
      const { embeds } = pipe.encoder!.encode(rec, caps);
      await rec.submit();
      assertWithin(
        await readTensor(rt, embeds),
        await f.readF32("te_output"),
        1e-4,
        "caption encoder",
      );
    } finally {
      pipe.release();
      f.close();
    }
  });
});
