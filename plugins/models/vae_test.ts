import { assertEquals, assertRejects, assertThrows } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { assertWithin, FIXTURES } from "../../tests/fixture_helpers.ts";
import { CheckpointError } from "../../runtime/errors.ts";
import { uploadTensor } from "../../runtime/gpu/tensor.ts";
import {
  openSafetensors,
  type TensorToWrite,
  writeSafetensors,
} from "../../runtime/io/safetensors.ts";
import { loadVaeDecoder } from "./vae.ts";
import { parseVaeConfig, vaeLargestBytes, vaeScale } from "./vae_config.ts";
import { vaeDecodeRef } from "../../runtime/reference/vae.ts";

/** A fixture's decoder config and weights, and its latents and expected image. */
async function open(name: string) {
  const dir = `${FIXTURES}vae_${name}`;
  const config = parseVaeConfig(JSON.parse(await Deno.readTextFile(`${dir}/vae/config.json`)));
  const weights = await openSafetensors(`${dir}/vae/diffusion_pytorch_model.safetensors`);
  const io = await openSafetensors(`${dir}/io.safetensors`);
  return { config, weights, io };
}

for (const name of ["tiny", "flux_legacy"]) {
  Deno.test(`vae_${name}: the decoder matches the PyTorch reference`, gpuTest, async () => {
    await withRuntime(async (rt) => {
      const { config, weights, io } = await open(name);
      const vae = await loadVaeDecoder(rt, weights, config);
      try {
        const zs = io.info("latents").shape;
        const z = uploadTensor(rt, await io.readF32("latents"), zs);
        const want = await io.readF32("image");
        assertEquals(io.info("image").shape, [
          zs[0],
          3,
          zs[2] * vaeScale(config),
          zs[3] * vaeScale(config),
        ]);
        const got = await runAndRead(rt, (rec) => vae.decode(rec, z));
        assertWithin(got, want, 1e-4, `vae_${name}`);
        // The convolutions' explicit im2col and the attention scores in chunks of a few rows.
        const small = await runAndRead(
          rt,
          (rec) => vae.decode(rec, z, { chunkBytes: 1024, im2col: "explicit" }),
        );
        assertWithin(small, want, 1e-4, `vae_${name} in small chunks`);
        z.release();
      } finally {
        vae.release();
        weights.close();
        io.close();
      }
    });
  });
}

Deno.test("vae config: unsupported or malformed fields are errors naming the field", () => {
  const base = { _class_name: "AutoencoderKL", block_out_channels: [8, 16], norm_num_groups: 4 };
  const bad = (patch: Record<string, unknown>, field: string) => {
    const e = assertThrows(() => parseVaeConfig({ ...base, ...patch }), CheckpointError, field);
    assertEquals((e as CheckpointError).field, field);
  };
  bad({ _class_name: "AutoencoderTiny" }, "_class_name");
  bad({ act_fn: "gelu" }, "act_fn");
  bad({ norm_num_groups: 3 }, "norm_num_groups");
  bad({ up_block_types: ["UpDecoderBlock2D", "AttnUpDecoderBlock2D"] }, "up_block_types");
  bad({ block_out_channels: [] }, "block_out_channels");
  bad({ scaling_factor: "x" }, "scaling_factor");
  const c = parseVaeConfig(base);
  assertEquals([c.latentChannels, c.shiftFactor, c.usePostQuantConv, vaeScale(c)], [4, 0, true, 2]);
});

Deno.test(
  "vae weights: a missing or misshapen tensor names the file and the tensor",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const { config, weights, io } = await open("tiny");
      io.close();
      const tensors: Record<string, TensorToWrite> = {};
      for (const [n, info] of weights.tensors) {
        if (n === "decoder.conv_out.bias") continue;
        tensors[n] = { dtype: "F32", shape: [...info.shape], data: await weights.readF32(n) };
      }
      weights.close();
      const path = await Deno.makeTempFile({ suffix: ".safetensors" });
      try {
        await writeSafetensors(path, tensors);
        const f = await openSafetensors(path);
        await assertRejects(
          () => loadVaeDecoder(rt, f, config),
          CheckpointError,
          "decoder.conv_out.bias",
        );
        f.close();
      } finally {
        await Deno.remove(path);
      }
    });
  },
);

Deno.test("vaeLargestBytes: sd-vae at a 128 × 128 latent holds [1024², 256] f32 (the last upsample)", () => {
  const sd = parseVaeConfig({ block_out_channels: [128, 256, 512, 512], layers_per_block: 2 });
  assertEquals(vaeLargestBytes(sd, 128, 128), 1024 * 1024 * 256 * 4);
  assertEquals(vaeLargestBytes(sd, 8, 8), Math.max(32 * 32 * 512, 64 * 64 * 256) * 4);
});

Deno.test("vaeDecodeRef (the CPU reference the bench checks against) matches PyTorch", async () => {
  const { config, weights, io } = await open("tiny");
  try {
    const host = new Map<string, Float32Array>();
    for (const n of weights.tensors.keys()) host.set(n, await weights.readF32(n));
    const shape = io.info("latents").shape as [number, number, number, number];
    const got = vaeDecodeRef((n) => host.get(n)!, config, await io.readF32("latents"), shape);
    assertWithin(got, await io.readF32("image"), 1e-5, "vaeDecodeRef");
  } finally {
    weights.close();
    io.close();
  }
});
