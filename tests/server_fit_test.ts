/**
 * Sizes and batches over the adapter's storage-binding limit: a request that cannot fit is a
 * 400 on size or n, the queue never merges jobs that would not fit together, and a forward
 * that fails on the GPU anyway leaks no GPU memory.
 */
import { assert, assertClose, assertEquals, assertRejects, rms } from "./assert.ts";
import { gpuTest, withBindingLimit, withRuntime } from "./gpu.ts";
import { createDefaultRegistry } from "../runtime/builtins.ts";
import { createApp } from "../runtime/server/app.ts";
import type { RowScope } from "../runtime/model/linear.ts";
import { parseVaeConfig } from "../plugins/models/vae_config.ts";
import { largestTensorBytes, maxImagesThatFit } from "../runtime/server/checks.ts";
import { ModelCatalog, type ModelEntry } from "../runtime/server/models.ts";
import {
  makeApp,
  pixelEntry,
  pixelPrompts,
  post,
  stubEntry,
  type StubLog,
  stubPipeline,
  until,
} from "./server_helpers.ts";

Deno.test("server fit: the estimate is the hidden states, or the feed-forward's chunk", () => {
  // emoji-s (D 128, patch 2) at 512x512 with guidance: hidden [131072, 128] f32 = 64 MiB.
  // Its [131072, 512] feed-forward intermediate (256 MiB, the audit's failing tensor) goes
  // in row chunks: dense layers split it down to one row.
  const entry = (scope?: RowScope) => {
    const transformer = {
      dtype: "f32",
      config: { innerDim: 128, patchSize: 2, inChannels: 3, outChannels: 3 },
      linears: scope ? [{ rowScope: scope }] : [],
    };
    return {
      plan: { abits: null },
      pipeline: { runtime: { bindingLimit: 128 * 2 ** 20 }, model: transformer, transformer },
    } as unknown as ModelEntry;
  };
  const b = { images: 1, height: 512, width: 512, guidance: 4.5 };
  assertEquals(largestTensorBytes(entry(), b), 67108864);
  assertEquals(largestTensorBytes(entry("row"), b), 67108864);
  // Four requests of 4 images at 128x128, batched: the same hidden states.
  assertEquals(
    largestTensorBytes(entry(), { ...b, images: 16, height: 128, width: 128 }),
    67108864,
  );
  assertEquals(maxImagesThatFit(entry("row"), b), 2);
  // Centring layers split by samples: one sample's [65536, 512] f32 is 128 MiB.
  assertEquals(largestTensorBytes(entry("sample"), b), 134217728);
  assertEquals(maxImagesThatFit(entry("sample"), b), 2);
  // CFG-delta layers by pairs: 256 MiB, over the limit whatever the batch.
  assertEquals(largestTensorBytes(entry("pair"), b), 268435456);
  assertEquals(maxImagesThatFit(entry("pair"), b), 0);
  assertEquals(maxImagesThatFit(entry("pair"), { ...b, guidance: 1 }), 4);
  // A layer that never splits: the whole intermediate, per image.
  assertEquals(largestTensorBytes(entry("batch"), { ...b, height: 256, width: 256 }), 67108864);
  assertEquals(maxImagesThatFit(entry("batch"), { ...b, height: 256, width: 256 }), 2);
  // Only the feed-forward's own layers bound its chunks (CFG delta on attention does not).
  const mixed = entry();
  (mixed.pipeline.transformer as { linears: unknown }).linears = [
    { name: "transformer_blocks.0.attn1.to_q", rowScope: "pair" },
    { name: "transformer_blocks.0.ff.net.2", rowScope: "row" },
  ];
  assertEquals(largestTensorBytes(mixed, b), 67108864);
  // A VAE decodes one image at a time: its widest activation counts once, whatever n.
  const vae = entry("row");
  const cfg = parseVaeConfig({ block_out_channels: [128, 256, 512, 512] });
  (vae.pipeline as { vae: unknown }).vae = { config: cfg };
  const small = { images: 1, height: 16, width: 16, guidance: 4.5 }; // 128² pixels: 16 MiB
  assertEquals(largestTensorBytes(vae, small), 128 * 128 * 256 * 4);
  assertEquals(maxImagesThatFit(vae, small), Math.floor(2 ** 27 / (2 * 64 * 128 * 4)));
  assertEquals(maxImagesThatFit(vae, { ...small, height: 64, width: 64 }), 0); // 256 MiB
  // serve --vae-tiling: one tile's activations (sample_size 32: 4 × 4 cells, 32² pixels).
  vae.vaeTiling = true;
  // The hidden states [2·32², 128] and the tile [32², 256] are 1 MiB each.
  assertEquals(largestTensorBytes(vae, { ...small, height: 64, width: 64 }), 2 ** 20);
  assert(maxImagesThatFit(vae, { ...small, height: 64, width: 64 }) > 0);
});

Deno.test("server fit: too large for the adapter is a 400 on size or n", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const pixel = await pixelEntry(rt);
    try {
      const s = makeApp(rt, [pixel]);
      const [prompt] = await pixelPrompts();
      const one = largestTensorBytes(pixel, { images: 1, height: 16, width: 16, guidance: 4.5 });
      await withBindingLimit(rt, one - 4, async () => {
        const res = await s.app.request(post({ prompt, size: "16x16" }));
        const e = (await res.json()).error;
        assertEquals([res.status, e.param], [400, "size"], e.message);
        assert(e.message.includes("16x16"), e.message);
      });
      await withBindingLimit(rt, 2 * one, async () => {
        const res = await s.app.request(post({ prompt, size: "16x16", n: 3 }));
        const e = (await res.json()).error;
        assertEquals([res.status, e.param], [400, "n"], e.message);
        assert(e.message.includes("at most 2"), e.message);
        const ok = await s.app.request(post({ prompt, size: "16x16", n: 2, steps: 1 }));
        assertEquals(ok.status, 200, await ok.text());
      });
      s.close();
    } finally {
      pixel.pipeline.release();
    }
  });
});

Deno.test("server fit: the queue does not merge jobs that would not fit", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const log: StubLog = { calls: [], steps: 0 };
    const pipe = stubPipeline(10, log);
    (pipe.transformer.config as { innerDim: number }).innerDim = 8;
    const e = stubEntry("stub", pipe);
    const one = largestTensorBytes(e, { images: 1, height: 16, width: 16, guidance: 4.5 });
    (pipe as { runtime: unknown }).runtime = { bindingLimit: 4 * one };
    const s = makeApp(rt, [e]);
    const body = { prompt: "x", size: "16x16", guidance: 4.5, steps: 3 };
    const first = s.app.request(post({ ...body, n: 1 }));
    await until(() => log.calls.length === 1, 5000, "the first batch");
    const rest = [1, 2, 3].map(() => s.app.request(post({ ...body, n: 2 })));
    const all = await Promise.all([first, ...rest]);
    assertEquals(all.map((r) => r.status), [200, 200, 200, 200]);
    // 6 images waited; at most 4 fit in one batch.
    assertEquals(log.calls.map((c) => c.prompts.length), [1, 4, 2]);
    s.close();
  });
});

Deno.test("server fit: a forward that fails on the GPU leaks nothing", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const pixel = await pixelEntry(rt);
    try {
      const [prompt] = await pixelPrompts();
      // Guidance off: the sampling loop's CFG copy of the latents is not the model's to free.
      const req = { prompt, steps: 1, guidance: 1, height: 16, width: 16 };
      await pixel.pipeline.generate(req); // position embeddings cached, kernels compiled
      const before = rt.pool.liveBytes;
      // No room for the hidden states [rows·T, D]: the forward throws after its first tensors.
      const hidden = largestTensorBytes(pixel, { images: 1, height: 16, width: 16, guidance: 1 });
      await withBindingLimit(rt, hidden - 4, async () => {
        await assertRejects(() => pixel.pipeline.generate(req), RangeError, "binding limit");
      });
      assertEquals(rt.pool.liveBytes, before, "GPU bytes held after the failed request");
      await pixel.pipeline.generate(req); // and it still runs
    } finally {
      pixel.pipeline.release();
    }
  });
});

Deno.test(
  "server fit: a feed-forward over the limit runs in row chunks, same image",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const pixel = await pixelEntry(rt);
      try {
        const [prompt] = await pixelPrompts();
        const req = { prompt, steps: 2, guidance: 4.5, height: 16, width: 16, seed: 3 };
        const whole = await pixel.pipeline.generate(req);
        const c = pixel.pipeline.transformer.config;
        const T = 64; // 16x16 at patch 2
        const hidden = 2 * T * c.innerDim * 4; // [2·T, D] f32 under guidance
        const ff = 4 * hidden; // [2·T, 4·D]: once an error (binding limit)
        // Whole samples (one of the pair a chunk): the same kernels, the same values.
        const samples = await withBindingLimit(rt, ff / 2, () => pixel.pipeline.generate(req));
        assertEquals(samples.latents, whole.latents);
        // Parts of one sample (T/2 rows): on a CPU adapter the GEMM takes another version
        // under 64 rows (defaultGemmVersion), so the sums round differently.
        const parts = await withBindingLimit(rt, hidden, () => pixel.pipeline.generate(req));
        const tol = { atol: 1e-5 * rms(whole.latents), rtol: 1e-5 };
        assertClose(parts.latents, whole.latents, tol);
        // The server takes such requests now: the estimate is the hidden states.
        assertEquals(
          largestTensorBytes(pixel, { images: 1, height: 16, width: 16, guidance: 4.5 }),
          hidden,
        );
      } finally {
        pixel.pipeline.release();
      }
    });
  },
);

Deno.test("server fit: the default size limit is twice the largest model's", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const pixel = await pixelEntry(rt);
    try {
      const [prompt] = await pixelPrompts();
      const s = makeApp(rt, [pixel]); // the tiny model: 16x16
      const res = await s.app.request(post({ prompt, size: "48x48" }));
      const e = (await res.json()).error;
      assertEquals([res.status, e.param], [400, "size"], e.message);
      assert(e.message.includes("limit of 32 pixels"), e.message);
      const ok = await s.app.request(post({ prompt, size: "32x32", steps: 1 }));
      assertEquals(ok.status, 200, await ok.text());
      s.close();
      // An explicit limit (serve --max-side) still rules.
      const wide = createApp({
        runtime: rt,
        catalog: new ModelCatalog([pixel]),
        registry: createDefaultRegistry(),
        log: () => {},
        limits: { maxSide: 48 },
      });
      const big = await wide.app.request(post({ prompt, size: "48x48", steps: 1 }));
      assertEquals(big.status, 200, await big.text());
      wide.close();
    } finally {
      pixel.pipeline.release();
    }
  });
});
