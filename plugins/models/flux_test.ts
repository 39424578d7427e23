import { assert, assertEquals, assertThrows, maxAbsDiff } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { CheckpointError } from "../../runtime/errors.ts";
import { Recorder } from "../../runtime/gpu/kernel.ts";
import { readTensor, type Tensor, uploadTensor } from "../../runtime/gpu/tensor.ts";
import { elementwise } from "../../runtime/ops/elementwise.ts";
import { openCheckpoint } from "../../runtime/io/safetensors_index.ts";
import { Prng } from "../../runtime/io/prng.ts";
import { denseLinears, type LinearFactory } from "../../runtime/model/linear.ts";
import type { FluxAttentionContext } from "./flux.ts";
import { fluxModelTime, times1000 } from "./flux_time.ts";
import { loadFlux } from "./flux_load.ts";
import { fluxWeightShapes, parseFlowSchedulerConfig, parseFluxConfig } from "./flux_config.ts";
import { denseSelfAttention, type SelfAttention } from "./pixart.ts";

const DEV = new URL("../../tests/fixtures/flux_dev/", import.meta.url).pathname;

Deno.test("parseFluxConfig: diffusers' defaults (FLUX.1) and errors naming the field", () => {
  const c = parseFluxConfig({ _class_name: "FluxTransformer2DModel" });
  assertEquals(
    [c.inChannels, c.outChannels, c.numLayers, c.numSingleLayers, c.innerDim, c.jointAttentionDim],
    [64, 64, 19, 38, 3072, 4096],
  );
  assertEquals([c.pooledProjectionDim, c.guidanceEmbeds, c.axesDimsRope, c.latentChannels], [
    768,
    false,
    [16, 56, 56],
    16,
  ]);
  assertEquals(parseFluxConfig({ out_channels: null, in_channels: 8 }).outChannels, 8);
  const bad: [Record<string, unknown>, string][] = [
    [{ _class_name: "PixArtTransformer2DModel" }, "_class_name"],
    [{ patch_size: 2 }, "patch_size"],
    [{ in_channels: 6 }, "in_channels"],
    [{ attention_head_dim: 16 }, "axes_dims_rope"], // (16, 56, 56) sums to 128
    [{ attention_head_dim: 256, axes_dims_rope: [64, 96, 96] }, "attention_head_dim"],
    [{ attention_head_dim: 12, axes_dims_rope: [4, 3, 5] }, "axes_dims_rope"],
    [{ num_layers: -1 }, "num_layers"],
    [{ guidance_embeds: "yes" }, "guidance_embeds"],
  ];
  for (const [raw, field] of bad) {
    const e = assertThrows(() => parseFluxConfig(raw), CheckpointError) as CheckpointError;
    assert(e.message.includes(field), `${JSON.stringify(raw)}: ${e.message}`);
  }
});

Deno.test("fluxWeightShapes: diffusers' key layout, guidance embedder only for dev", () => {
  const base = {
    num_layers: 1,
    num_single_layers: 1,
    attention_head_dim: 8,
    num_attention_heads: 2,
  };
  const dev = fluxWeightShapes(
    parseFluxConfig({ ...base, axes_dims_rope: [2, 2, 4], guidance_embeds: true }),
  );
  const schnell = fluxWeightShapes(parseFluxConfig({ ...base, axes_dims_rope: [2, 2, 4] }));
  assertEquals(dev.size - schnell.size, 4); // guidance_embedder.linear_{1,2}.{weight,bias}
  assertEquals(dev.get("transformer_blocks.0.norm1.linear.weight"), [96, 16]);
  assertEquals(dev.get("transformer_blocks.0.attn.norm_added_k.weight"), [8]);
  assertEquals(dev.get("single_transformer_blocks.0.proj_out.weight"), [16, 80]);
  assertEquals(dev.get("norm_out.linear.weight"), [32, 16]);
  assertEquals(dev.get("proj_out.weight"), [64, 16]);
  assert(!schnell.has("time_text_embed.guidance_embedder.linear_1.weight"));
});

Deno.test("parseFlowSchedulerConfig: FLUX.1-dev and -schnell configs, unsupported options", () => {
  const common = {
    _class_name: "FlowMatchEulerDiscreteScheduler",
    base_image_seq_len: 256,
    base_shift: 0.5,
    max_image_seq_len: 4096,
    max_shift: 1.15,
    num_train_timesteps: 1000,
  };
  const dev = parseFlowSchedulerConfig({ ...common, shift: 3.0, use_dynamic_shifting: true });
  assertEquals([dev.useDynamicShifting, dev.shift, dev.timeShiftType], [true, 3, "exponential"]);
  const schnell = parseFlowSchedulerConfig({ ...common, shift: 1.0, use_dynamic_shifting: false });
  assertEquals([schnell.useDynamicShifting, schnell.shift], [false, 1]);
  for (const k of ["use_karras_sigmas", "invert_sigmas", "stochastic_sampling"]) {
    assertThrows(() => parseFlowSchedulerConfig({ ...common, [k]: true }), CheckpointError, k);
  }
  assertThrows(
    () => parseFlowSchedulerConfig({ _class_name: "DDIMScheduler" }),
    CheckpointError,
    "_class_name",
  );
});

Deno.test(
  "FLUX: every linear comes from the factory; the attention hook sees joint tokens",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const cfg = parseFluxConfig(
        JSON.parse(await Deno.readTextFile(`${DEV}transformer/config.json`)),
      );
      const names: string[] = [];
      const dense = denseLinears("f32");
      const factory: LinearFactory = {
        create: (r, src) => {
          names.push(src.name);
          return dense.create(r, src);
        },
      };
      const calls: { layer: number; ctx: FluxAttentionContext; shape: readonly number[] }[] = [];
      const spy: SelfAttention = {
        run: (rec, layer, q, k, v, ctx) => {
          calls.push({
            layer,
            ctx: ctx as FluxAttentionContext,
            shape: "shape" in q ? q.shape : [],
          });
          return denseSelfAttention.run(rec, layer, q, k, v, ctx);
        },
      };
      const src = await openCheckpoint(`${DEV}transformer`);
      const m = await loadFlux(rt, src, cfg, {
        dtype: "f32",
        linears: factory,
        selfAttention: spy,
      });
      src.close();
      try {
        // Every 2-D weight of the checkpoint, FFNs and adaLN modulation linears included.
        const linears = [...fluxWeightShapes(cfg)].filter(([, s]) => s.length === 2).map(([n]) =>
          n
        );
        assertEquals(names.sort(), linears.map((n) => n.replace(/\.weight$/, "")).sort());
        assert(names.includes("transformer_blocks.1.ff_context.net.2"));
        assert(names.includes("single_transformer_blocks.0.norm.linear"));
        const [B, L, H, W] = [2, 7, 6, 10];
        const g = new Prng(3);
        const x = uploadTensor(rt, g.normals(B * 4 * H * W), [B, 4, H, W]);
        const e = uploadTensor(rt, g.normals(B * L * cfg.jointAttentionDim), [
          B,
          L,
          cfg.jointAttentionDim,
        ]);
        const p = uploadTensor(rt, g.normals(B * cfg.pooledProjectionDim), [
          B,
          cfg.pooledProjectionDim,
        ]);
        const run = async (step: { index: number; total: number }) => {
          const rec = new Recorder(rt);
          const cond = m.prepare(rec, e, p, [3.5, 3.5]);
          const out = m.forward(rec, x, [0.5, 0.5], cond, step);
          await rec.submit();
          const y = await readTensor(rt, out);
          cond.release();
          out.release();
          return y;
        };
        const y = await run({ index: 2, total: 4 });
        assertEquals(calls.map((c) => c.layer), [0, 1, 2, 3]);
        assertEquals(calls.map((c) => c.ctx.block), ["double", "double", "single", "single"]);
        for (const c of calls) {
          const { heads, h, w, textTokens, step, steps } = c.ctx;
          assertEquals([heads, h, w, textTokens, step, steps], [3, 3, 5, 7, 2, 4]);
          assertEquals(c.shape, [B, L + 15, 48]);
        }
        // Swapping the hook at run time changes the output (a zero attention), and back.
        m.selfAttention = {
          run: (rec, l, q, k, v, ctx) => zero(spy.run(rec, l, q, k, v, ctx), rec),
        };
        const z = await run({ index: 0, total: 1 });
        assert(maxAbsDiff(z, y).max > 1e-3, "the hook was not used");
        m.selfAttention = denseSelfAttention;
        assertEquals(maxAbsDiff(await run({ index: 0, total: 1 }), y).max, 0);
      } finally {
        m.release();
      }
    });
  },
);

/** A zero tensor shaped like `t` (consumes t). */
function zero(t: Tensor, rec: Recorder): Tensor {
  const z = elementwise(rec, "affine", t, { alpha: 0, beta: 0 });
  t.release();
  return z;
}

Deno.test("FLUX time: f16 models get diffusers' f16 roundings of t / 1000 and · 1000", () => {
  // FluxPipeline: t.to(f16) / 1000, then the transformer's .to(f16) * 1000 (f32: no change).
  const t = Math.fround(988.4086);
  assertEquals(times1000(fluxModelTime(t, "f16"), "f16"), 988.5);
  assertEquals(
    times1000(fluxModelTime(t, "f32"), "f32"),
    Math.fround(Math.fround(t / 1000) * 1000),
  );
  assertEquals(times1000(3.5, "f16"), 3500);
  assertEquals(times1000(0.1, "f16"), 100);
});
