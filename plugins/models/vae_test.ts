import { assert, assertEquals, assertRejects, assertThrows, relError } from "../../tests/assert.ts";
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
import { tiles } from "./vae_tiling.ts";
import { decodeLatents } from "../../runtime/vae_decode.ts";
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

/** The fixture's weights as tensors to write, changed by `edit` (return undefined to drop one). */
async function rewritten(
  name: string,
  edit: (n: string, t: TensorToWrite) => [string, TensorToWrite] | undefined,
): Promise<string> {
  const w = await openSafetensors(`${FIXTURES}vae_${name}/vae/diffusion_pytorch_model.safetensors`);
  const tensors: Record<string, TensorToWrite> = {};
  try {
    for (const [n, info] of w.tensors) {
      const e = edit(n, { dtype: "F32", shape: [...info.shape], data: await w.readF32(n) });
      if (e) tensors[e[0]] = e[1];
    }
  } finally {
    w.close();
  }
  const path = await Deno.makeTempFile({ suffix: ".safetensors" });
  await writeSafetensors(path, tensors);
  return path;
}

type Edit = (n: string, t: TensorToWrite) => [string, TensorToWrite] | undefined;

Deno.test(
  "vae weights: a missing or misshapen tensor names the file and the tensor",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const { config, weights, io } = await open("tiny");
      weights.close();
      io.close();
      const cases: [string, Edit, string][] = [
        [
          "missing",
          (n, t) => n === "decoder.conv_out.bias" ? undefined : [n, t],
          "decoder.conv_out.bias",
        ],
        [
          "misshapen",
          (
            n,
            t,
          ) => [
            n,
            n === "decoder.conv_in.weight" ? { ...t, shape: [t.shape[0], t.shape[1], 9, 1] } : t,
          ],
          "expected shape [32,4,3,3], got [32,4,9,1]",
        ],
      ];
      for (const [what, edit, msg] of cases) {
        const path = await rewritten("tiny", edit);
        try {
          const f = await openSafetensors(path);
          const e = await assertRejects(() => loadVaeDecoder(rt, f, config), CheckpointError, msg);
          assertEquals((e as CheckpointError).file, path, what);
          f.close();
        } finally {
          await Deno.remove(path);
        }
      }
    });
  },
);

Deno.test(
  "vae: legacy attention as 1×1 convs decodes the same; without mid attention, the reference",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // vae_flux_legacy's query/key/value/proj_attn as [C, C, 1, 1], as the oldest files have them.
      const { config, weights, io } = await open("flux_legacy");
      weights.close();
      const legacy = /attentions\.0\.(query|key|value|proj_attn)\.weight$/;
      const conv1x1: Edit = (n, t) => [n, legacy.test(n) ? { ...t, shape: [...t.shape, 1, 1] } : t];
      const path = await rewritten("flux_legacy", conv1x1);
      try {
        const f = await openSafetensors(path);
        const vae = await loadVaeDecoder(rt, f, config);
        f.close();
        const z = uploadTensor(rt, await io.readF32("latents"), io.info("latents").shape);
        const got = await runAndRead(rt, (rec) => vae.decode(rec, z));
        assertWithin(got, await io.readF32("image"), 1e-4, "1×1 convs");
        z.release();
        vae.release();
      } finally {
        await Deno.remove(path);
        io.close();
      }
      // mid_block_add_attention false: the tiny decoder without its attention, against the CPU reference.
      const t = await open("tiny");
      try {
        const cfg = { ...t.config, midBlockAddAttention: false };
        const vae = await loadVaeDecoder(rt, t.weights, cfg);
        const shape = t.io.info("latents").shape as [number, number, number, number];
        const zs = await t.io.readF32("latents");
        const z = uploadTensor(rt, zs, shape);
        const host = new Map<string, Float32Array>();
        for (const n of t.weights.tensors.keys()) host.set(n, await t.weights.readF32(n));
        const want = vaeDecodeRef((n) => host.get(n)!, cfg, zs, shape);
        assertWithin(await runAndRead(rt, (rec) => vae.decode(rec, z)), want, 1e-4, "no attention");
        z.release();
        vae.release();
      } finally {
        t.weights.close();
        t.io.close();
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

Deno.test(
  "vae: tiled decoding matches PyTorch's enable_tiling; one tile's latent is not tiled",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      for (const name of ["tiny", "flux_legacy"]) {
        const { config, weights, io } = await open(name);
        const vae = await loadVaeDecoder(rt, weights, config);
        try {
          const shape = io.info("latents").shape as [number, number, number, number];
          const r = await decodeLatents(rt, vae, await io.readF32("latents"), shape, {
            tiling: true,
          });
          if (name === "tiny") { // 6 × 5 cells in tiles of 4 every 3
            assert(tiles(config, shape[2], shape[3]));
            assertWithin(r.images, await io.readF32("image_tiled"), 1e-4, `vae_${name} tiled`);
            assert(relError(r.images, await io.readF32("image")) > 1e-3); // the seams differ
          } else { // 4 × 4 cells, one tile of 4: diffusers decodes it whole
            assert(!tiles(config, shape[2], shape[3]));
            assertWithin(r.images, await io.readF32("image"), 1e-4, `vae_${name} untiled`);
          }
        } finally {
          vae.release();
          weights.close();
          io.close();
        }
      }
    });
  },
);
