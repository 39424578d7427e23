/**
 * The text encoders of real checkpoints (plugins/models/t5.ts, clip_text.ts) at their published
 * shapes, random weights (bench/random_model.ts), f32:
 *
 * - `t5_xxl_encode_120x2`: T5-v1.1-XXL (PixArt-α/Σ, FLUX; d_model 4096, 64 heads, d_ff 10240,
 *   24 layers) on a prompt and its "" negative at 120 tokens, as PixArt-α encodes them (ms;
 *   value2 = TFLOP/s, multiply-adds × 2 of the linears and the attention);
 * - `t5_xxl_encode_512`: one FLUX prompt at 512 tokens;
 * - `clip_l_encode_77`: CLIP ViT-L/14's text model (FLUX's pooled prompt) on one prompt;
 * - `…_w16`: the same with the linears' weights stored in f16 (`--text-encoder-dtype f16`, and
 *   "auto" for a bf16 checkpoint such as FLUX's T5): half the bytes, f32 arithmetic.
 *
 * Each row's note gives the encoder's weight bytes on the GPU (the embedding tables stay on
 * the host).
 *
 * Before timing, the text-attention kernel is checked at the T5 shape (120 tokens, 64-wide
 * heads, the relative bias and a padding mask) against its CPU reference: max |error| ≤ 1e-5 ×
 * RMS asserted. On a CPU adapter T5-v1.1-small (d_model 512, 8 layers) stands in
 * (`t5_small_encode_120x2`).
 *
 *     WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/text_encoder_bench.ts
 *                          # → bench/results/<device>/<date>_text_encoder.{json,md}
 *
 * @module
 */
import { createRuntime, type Runtime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { readTensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import { textAttention } from "../runtime/ops/attention_text.ts";
import { textAttentionRef } from "../runtime/reference/attention_text.ts";
import {
  ClipTextEncoder,
  clipTextWeightShapes,
  parseClipTextConfig,
} from "../plugins/models/clip_text.ts";
import { T5Encoder, t5WeightShapes } from "../plugins/models/t5.ts";
import type { TextWeights } from "../plugins/models/text_weights.ts";
import { parseT5Config, t5Buckets } from "../plugins/models/t5_config.ts";
import { BenchSuite, deviceSlug } from "./harness.ts";
import { RandomSource } from "./random_model.ts";
import { checkWithinRms } from "./sampled_check.ts";

const adapter = (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as "auto" | "gpu" | "cpu";
const rt: Runtime = await createRuntime({ adapter });
const cpu = rt.info.fallback;
const t5Name = cpu ? "small" : "xxl";
const t5Config = parseT5Config({
  model_type: "t5",
  vocab_size: 32128,
  feed_forward_proj: "gated-gelu",
  d_kv: 64,
  ...(cpu
    ? { d_model: 512, d_ff: 1024, num_layers: 8, num_heads: 6 }
    : { d_model: 4096, d_ff: 10240, num_layers: 24, num_heads: 64 }),
});
const clipConfig = parseClipTextConfig({
  model_type: "clip_text_model",
  vocab_size: 49408,
  hidden_size: 768,
  intermediate_size: 3072,
  num_hidden_layers: 12,
  num_attention_heads: 12,
});

/** Multiply-adds × 2 of B sequences of L tokens through the T5. */
function t5Flops(B: number, L: number): number {
  const c = t5Config;
  const inner = c.numHeads * c.dKv;
  const linear = 4 * c.dModel * inner + 3 * c.dModel * c.dFf;
  return 2 * B * L * c.numLayers * (linear + 2 * L * inner);
}

function clipFlops(L: number): number {
  const c = clipConfig;
  const d = c.hiddenSize;
  return 2 * L * c.numLayers * (4 * d * d + 2 * d * c.intermediateSize + 2 * L * d);
}

let checked: string | undefined;

/** The text-attention kernel at the T5 shape against its CPU reference (once). */
async function checkAttention(): Promise<string> {
  if (checked) return checked;
  const [B, L, H, D] = [1, 120, 4, 64];
  const g = new Prng(8);
  const [qs, ks, vs] = [0, 1, 2].map(() => g.normals(B * L * H * D).map((x) => 0.2 * x));
  const mask = Float32Array.from({ length: L }, (_, i) => i < 37 ? 1 : 0);
  const table = g.normals(32 * H);
  const buckets = t5Buckets(L, L, t5Config);
  const up = (x: Float32Array) => uploadTensor(rt, x, [B, L, H * D]);
  const [q, k, v] = [up(qs!), up(ks!), up(vs!)];
  const m = uploadTensor(rt, mask, [B, L]);
  const tb = uploadTensor(rt, table, [32, H]);
  const bk = uploadTensor(rt, buckets, [buckets.length], "u32");
  const rec = new Recorder(rt);
  const o = textAttention(rec, q, k, v, {
    heads: H,
    scale: 1,
    mask: m,
    relativeBias: { table: tb, buckets: bk },
  });
  await rec.submit();
  const got = await readTensor(rt, o);
  for (const t of [q, k, v, m, tb, bk, o]) t.release();
  const ref = textAttentionRef(qs!, ks!, vs!, { B, Tq: L, Tk: L }, {
    heads: H,
    scale: 1,
    mask,
    relativeBias: { table, buckets },
  });
  const { maxErr, rms } = checkWithinRms("text attention vs CPU reference", got, ref, 1e-5);
  checked =
    `text attention checked at ${L} tokens, ${H} heads of ${D} against the CPU reference: ` +
    `max |err| ${maxErr.toExponential(2)} (RMS ${rms.toFixed(3)})`;
  return checked;
}

const t5s = new Map<TextWeights, T5Encoder>();
const clips = new Map<TextWeights, ClipTextEncoder>();
const gb = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB of weights on the GPU`;
const WEIGHTS: [TextWeights, string][] = [["f32", ""], ["f16", "_w16"]];

const suite = new BenchSuite({
  what: "text_encoder",
  describe: () =>
    Promise.resolve({
      device: rt.info.description,
      slug: deviceSlug(rt.info.description, rt.info.fallback),
      extra: {
        note: `T5-v1.1-${t5Name} and CLIP-L text encoders, random weights, f32 activations`,
      },
    }),
  teardown: () => {
    for (const e of [...t5s.values(), ...clips.values()]) e.release();
    rt.destroy();
  },
});

const ids = (n: number, vocab: number) =>
  Uint32Array.from(new Prng(2).uniforms(n), (u) => Math.floor(u * vocab));

const t5Cases: [number, number][] = cpu ? [[2, 120]] : [[2, 120], [1, 512]];
for (const [weights, suffix] of WEIGHTS) {
  for (const [B, L] of t5Cases) {
    suite.add({
      name: `t5_${t5Name}_encode_${B > 1 ? `${L}x${B}` : L}${suffix}`,
      unit: "ms",
      unit2: "TFLOP/s",
      setup: async () => {
        const note = await checkAttention();
        if (!t5s.has(weights)) {
          const src = new RandomSource(t5WeightShapes(t5Config), 11, "t5");
          t5s.set(weights, await T5Encoder.load(rt, src, t5Config, weights));
        }
        const enc = t5s.get(weights)!;
        const tok = ids(B * L, t5Config.vocabSize);
        // PixArt's mask: the prompt keeps 30 tokens, its "" negative 1; FLUX passes none.
        const mask = B > 1
          ? Float32Array.from({ length: B * L }, (_, i) => (i % L) < (i < L ? 30 : 1) ? 1 : 0)
          : undefined;
        return {
          device: rt.device,
          run: async (reps) => {
            const rec = new Recorder(rt);
            for (let i = 0; i < reps; i++) enc.encode(rec, tok, B, L, mask).release();
            await rec.submit();
          },
          value2: (ms) => t5Flops(B, L) / (ms * 1e9),
          note: `${B} × ${L} tokens${mask ? ", masked" : ""}, ${weights} weights: ` +
            `${gb(enc.weightBytes)}; ${note}`,
        };
      },
      timing: { iterations: 5, minSampleMs: 200, maxReps: 8 },
    });
  }
}

for (const [weights, suffix] of cpu ? [] : WEIGHTS) {
  suite.add({
    name: `clip_l_encode_77${suffix}`,
    unit: "ms",
    unit2: "TFLOP/s",
    setup: async () => {
      if (!clips.has(weights)) {
        const src = new RandomSource(clipTextWeightShapes(clipConfig), 12, "clip");
        clips.set(weights, await ClipTextEncoder.load(rt, src, clipConfig, weights));
      }
      const enc = clips.get(weights)!;
      const tok = ids(77, clipConfig.vocabSize);
      return {
        device: rt.device,
        run: async (reps) => {
          const rec = new Recorder(rt);
          for (let i = 0; i < reps; i++) {
            const o = enc.encode(rec, tok, 1, 77);
            o.hidden.release();
            o.pooled.release();
          }
          await rec.submit();
        },
        value2: (ms) => clipFlops(77) / (ms * 1e9),
        note: `1 × 77 tokens, causal, ${weights} weights: ${gb(enc.weightBytes)}`,
      };
    },
    timing: { iterations: 5, minSampleMs: 200, maxReps: 8 },
  });
}

suite.register();
