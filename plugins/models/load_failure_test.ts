/**
 * Model loaders free what they loaded when a later tensor fails (runtime/model/weights.ts:
 * LoadedSoFar): the text encoders and the transformers, half-built layers included.
 */
import { assertEquals, assertRejects } from "../../tests/assert.ts";
import { gpuTest, withBindingLimit, withRuntime } from "../../tests/gpu.ts";
import { FIXTURES } from "../../tests/fixture_helpers.ts";
import { openCheckpoint } from "../../runtime/io/safetensors_index.ts";
import { denseLinears, type LinearFactory } from "../../runtime/model/linear.ts";
import { loadPixArt } from "./pixart_load.ts";
import { parsePixArtConfig } from "./pixart_config.ts";
import { T5Encoder } from "./t5.ts";
import { parseT5Config } from "./t5_config.ts";

Deno.test(
  "text encoders: a tensor that fails to load frees what was loaded before it",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // The fixture T5's q/k/v/o are [32, 32] f32 (4096 bytes), wi_0 [40, 32]: over a 4100-byte
      // binding limit, in the middle of layer 0.
      const live = rt.pool.liveBytes;
      await withBindingLimit(rt, 4100, async () => {
        await assertRejects(
          async () => {
            const dir = `${FIXTURES}text_pixart/text_encoder`;
            const cfg = parseT5Config(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
            const src = await openCheckpoint(dir);
            try {
              (await T5Encoder.load(rt, src, cfg, "f32")).release();
            } finally {
              src.close();
            }
          },
          RangeError,
          "binding limit",
        );
      });
      assertEquals(rt.pool.liveBytes, live);
    });
  },
);

Deno.test(
  "transformers: a linear that fails to load frees what was loaded before it",
  gpuTest,
  async () => {
    // PixArt's loader (and FLUX's, the same LoadedSoFar): the scale-shift tables too.
    const dir = `${FIXTURES}pixart_pixel/transformer`;
    const config = parsePixArtConfig(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
    await withRuntime(async (rt) => {
      const dense = denseLinears("f32");
      const failing: LinearFactory = {
        create: (r, src) => {
          if (src.name === "transformer_blocks.1.ff.net.2") throw new RangeError("no room");
          return dense.create(r, src);
        },
      };
      const src = await openCheckpoint(dir);
      const live = rt.pool.liveBytes;
      try {
        await assertRejects(
          () => loadPixArt(rt, src, config, { dtype: "f32", linears: failing }),
          RangeError,
          "no room",
        );
      } finally {
        src.close();
      }
      assertEquals(rt.pool.liveBytes, live);
    });
  },
);
