/**
 * Sizes and batches over the adapter's storage-binding limit: a request that cannot fit is a
 * 400 on size or n, the queue never merges jobs that would not fit together, and a forward
 * that fails on the GPU anyway leaks no GPU memory.
 */
import { assert, assertEquals, assertRejects } from "./assert.ts";
import { gpuTest, withRuntime } from "./gpu.ts";
import { createDefaultRegistry } from "../runtime/builtins.ts";
import type { Runtime } from "../runtime/gpu/device.ts";
import { createApp } from "../runtime/server/app.ts";
import { largestTensorBytes } from "../runtime/server/checks.ts";
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

const LIMIT = "maxStorageBufferBindingSize";

/** Runs `fn` with the runtime's storage-binding limit set to `bytes`. */
async function withLimit<T>(rt: Runtime, bytes: number, fn: () => Promise<T>): Promise<T> {
  const limits = rt.info.limits;
  const old = limits[LIMIT];
  limits[LIMIT] = bytes;
  try {
    return await fn();
  } finally {
    limits[LIMIT] = old;
  }
}

Deno.test("server fit: the estimate is the failing tensor of the audit", () => {
  // emoji-s (D 128, patch 2) at 512x512 with guidance: [131072, 512] f32 = 268435456 bytes.
  const entry = {
    plan: { abits: null },
    pipeline: {
      transformer: {
        dtype: "f32",
        config: { innerDim: 128, patchSize: 2, inChannels: 3, outChannels: 3 },
      },
    },
  } as unknown as ModelEntry;
  const b = { images: 1, height: 512, width: 512, guidance: 4.5 };
  assertEquals(largestTensorBytes(entry, b), 268435456);
  // Four requests of 4 images at 128x128, batched: the same tensor.
  assertEquals(largestTensorBytes(entry, { ...b, images: 16, height: 128, width: 128 }), 268435456);
});

Deno.test("server fit: too large for the adapter is a 400 on size or n", gpuTest, async () => {
  await withRuntime(async (rt) => {
    const pixel = await pixelEntry(rt);
    try {
      const s = makeApp(rt, [pixel]);
      const [prompt] = await pixelPrompts();
      const one = largestTensorBytes(pixel, { images: 1, height: 16, width: 16, guidance: 4.5 });
      await withLimit(rt, one - 4, async () => {
        const res = await s.app.request(post({ prompt, size: "16x16" }));
        const e = (await res.json()).error;
        assertEquals([res.status, e.param], [400, "size"], e.message);
        assert(e.message.includes("16x16"), e.message);
      });
      await withLimit(rt, 2 * one, async () => {
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
    (pipe as { runtime: unknown }).runtime = { info: { limits: { [LIMIT]: 4 * one } } };
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
      // Room for everything but the feed-forward's [rows·T, 4·D] tensor: a block throws midway.
      const ff = largestTensorBytes(pixel, { images: 1, height: 16, width: 16, guidance: 1 });
      await withLimit(rt, ff - 4, async () => {
        await assertRejects(() => pixel.pipeline.generate(req), RangeError, "binding limit");
      });
      assertEquals(rt.pool.liveBytes, before, "GPU bytes held after the failed request");
      await pixel.pipeline.generate(req); // and it still runs
    } finally {
      pixel.pipeline.release();
    }
  });
});

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
