import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { assertWithin, FIXTURES } from "../../tests/fixture_helpers.ts";
import { CheckpointError } from "../../runtime/errors.ts";
import { Recorder } from "../../runtime/gpu/kernel.ts";
import { readAndRelease } from "../../runtime/gpu/tensor.ts";
import { openCheckpoint } from "../../runtime/io/safetensors_index.ts";
import {
  openSafetensors,
  type SafetensorsFile,
  type TensorToWrite,
  writeSafetensors,
} from "../../runtime/io/safetensors.ts";
import { clipEosIndex, ClipTextEncoder, parseClipTextConfig } from "./clip_text.ts";
import { HfTokenizer } from "./hf_tokenizer.ts";
import { readSentencePiece } from "./spiece.ts";
import { T5Encoder } from "./t5.ts";
import { parseT5Config, t5Bucket } from "./t5_config.ts";

const PIXART = `${FIXTURES}text_pixart`;
const FLUX = `${FIXTURES}text_flux`;

async function ints(io: SafetensorsFile, name: string): Promise<Uint32Array> {
  assertEquals(io.info(name).dtype, "I32");
  const raw = await io.readRaw(name);
  return Uint32Array.from(new Int32Array(raw.slice().buffer));
}

function prompts(io: SafetensorsFile): string[] {
  return JSON.parse(io.metadata["prompts"]!);
}

/** Each prompt's ids padded to L, concatenated, and whether any was cut. */
function tokenize(tok: HfTokenizer, texts: string[], L: number) {
  const rows = texts.map((t) => tok.encode(t, L));
  const ids = new Uint32Array(texts.length * L);
  const mask = new Float32Array(texts.length * L);
  rows.forEach((r, i) => {
    ids.set(r.ids, i * L);
    mask.set(r.mask, i * L);
  });
  return { ids, mask, cut: rows.map((r) => r.truncated) };
}

Deno.test("T5 relative position buckets match transformers' for -600..600", async () => {
  const io = await openSafetensors(`${PIXART}/io.safetensors`);
  for (const [nb, md] of [[32, 128], [64, 256]]) {
    const want = new Int32Array((await io.readRaw(`t5_buckets_${nb}_${md}`)).slice().buffer);
    const got = Int32Array.from({ length: 1201 }, (_, i) => t5Bucket(i - 600, nb!, md!));
    assertEquals(got, want, `${nb} buckets up to ${md}`);
  }
  io.close();
});

Deno.test("T5 tokenizer from spiece.model (PixArt's folder) gives the slow T5Tokenizer's ids", async () => {
  const io = await openSafetensors(`${PIXART}/io.safetensors`);
  const tok = await HfTokenizer.load(`${PIXART}/tokenizer`);
  const texts = prompts(io).map((p) => p.toLowerCase().trim());
  const L = Number(io.metadata["max_length"]);
  const got = tokenize(tok, texts, L);
  assertEquals(got.ids, await ints(io, "input_ids"));
  assertEquals(got.mask, await io.readF32("prompt_attention_mask"));
  assertEquals(got.cut, texts.map((_, i) => i === texts.length - 1), "only the long prompt is cut");
  const neg = tokenize(tok, texts.map(() => ""), L);
  assertEquals(neg.mask, await io.readF32("negative_prompt_attention_mask"));
  io.close();
});

Deno.test("FLUX's tokenizers (CLIP BPE, T5 tokenizer.json) give the Rust tokenizers' ids", async () => {
  const io = await openSafetensors(`${FLUX}/io.safetensors`);
  const texts = prompts(io);
  const clip = await HfTokenizer.load(`${FLUX}/tokenizer`);
  assertEquals(clip.modelMaxLength, 77);
  assertEquals(tokenize(clip, texts, 77).ids, await ints(io, "clip_input_ids"));
  const t5 = await HfTokenizer.load(`${FLUX}/tokenizer_2`);
  const L = Number(io.metadata["max_sequence_length"]);
  assertEquals(tokenize(t5, texts, L).ids, await ints(io, "t5_input_ids"));
  io.close();
});

Deno.test(
  "PixArt's T5 encoder matches transformers' T5EncoderModel (masked, 120 tokens)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const io = await openSafetensors(`${PIXART}/io.safetensors`);
      const cfg = parseT5Config(
        JSON.parse(await Deno.readTextFile(`${PIXART}/text_encoder/config.json`)),
      );
      const src = await openCheckpoint(`${PIXART}/text_encoder`);
      const enc = await T5Encoder.load(rt, src, cfg);
      src.close();
      const [B, L] = io.info("input_ids").shape as [number, number];
      for (
        const [ids, mask, want] of [
          ["input_ids", "prompt_attention_mask", "prompt_embeds"],
          [undefined, "negative_prompt_attention_mask", "negative_prompt_embeds"],
        ] as const
      ) {
        const m = await io.readF32(mask);
        // The negatives are "" (just </s>, then padding).
        const idv = ids
          ? await ints(io, ids)
          : Uint32Array.from(m, (v, i) => v && i % L === 0 ? 1 : 0);
        const rec = new Recorder(rt);
        const out = enc.encode(rec, idv, B, L, m);
        await rec.submit();
        const [got] = await readAndRelease(rt, [out]);
        assertWithin(got!, await io.readF32(want), 5e-6, want); // measured 1.2e-6 (f32 vs float64)
      }
      enc.release();
      io.close();
    });
  },
);

Deno.test(
  "FLUX's CLIP (pooled) and bf16 sharded T5 (512 tokens, no mask) match transformers'",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const io = await openSafetensors(`${FLUX}/io.safetensors`);
      const ccfg = parseClipTextConfig(
        JSON.parse(await Deno.readTextFile(`${FLUX}/text_encoder/config.json`)),
      );
      // The fixture has transformers 5's names; FLUX's file has transformers 4's "text_model." ones.
      const orig = await openCheckpoint(`${FLUX}/text_encoder`);
      const renamed: Record<string, TensorToWrite> = {};
      for (const [n, info] of orig.tensors) {
        const data = await orig.readRaw(n);
        renamed[`text_model.${n}`] = { dtype: info.dtype, shape: info.shape, data };
      }
      const tmp = await Deno.makeTempFile({ suffix: ".safetensors" });
      await writeSafetensors(tmp, renamed);
      const csrc = await openSafetensors(tmp);
      const clip = await ClipTextEncoder.load(rt, csrc, ccfg);
      csrc.close();
      await Deno.remove(tmp);
      const clip5 = await ClipTextEncoder.load(rt, orig, ccfg);
      orig.close();
      const tcfg = parseT5Config(
        JSON.parse(await Deno.readTextFile(`${FLUX}/text_encoder_2/config.json`)),
      );
      const tsrc = await openCheckpoint(`${FLUX}/text_encoder_2`);
      assert(tsrc.path.endsWith(".index.json"), "the T5 is sharded");
      const t5 = await T5Encoder.load(rt, tsrc, tcfg);
      tsrc.close();
      const [B, Lc] = io.info("clip_input_ids").shape as [number, number];
      const Lt = io.info("t5_input_ids").shape[1]!;
      const rec = new Recorder(rt);
      const cids = await ints(io, "clip_input_ids");
      const c = clip.encode(rec, cids, B, Lc);
      const c5 = clip5.encode(rec, cids, B, Lc);
      const t = t5.encode(rec, await ints(io, "t5_input_ids"), B, Lt);
      await rec.submit();
      const outs = [c.pooled, t, c5.pooled, c.hidden, c5.hidden];
      const [pooled, emb, pooled5] = await readAndRelease(rt, outs);
      const want = await io.readF32("pooled_prompt_embeds");
      assertWithin(pooled!, want, 2e-5, "pooled_prompt_embeds");
      assertWithin(pooled5!, want, 2e-5, "pooled_prompt_embeds (transformers 5 names)");
      // f32 sums over 512 keys (every pad token attends, no mask): measured 2.7e-5 (120 masked: 1.2e-6).
      assertWithin(emb!, await io.readF32("prompt_embeds"), 5e-5, "prompt_embeds");
      clip.release();
      clip5.release();
      t5.release();
      io.close();
    });
  },
);

Deno.test("text encoder configs: unsupported forms are errors naming the field", () => {
  const t5 = {
    model_type: "t5",
    vocab_size: 8,
    d_model: 4,
    d_kv: 2,
    d_ff: 8,
    num_layers: 1,
    num_heads: 2,
  };
  assertThrows(() => parseT5Config(t5, "c.json"), CheckpointError, "feed_forward_proj");
  assertEquals(parseT5Config({ ...t5, feed_forward_proj: "gated-gelu" }).activation, "gelu");
  assertThrows(
    () => parseT5Config({ ...t5, feed_forward_proj: "gated-gelu", d_ff: 0 }),
    CheckpointError,
    "d_ff",
  );
  assertThrows(() => parseT5Config({ model_type: "bert" }), CheckpointError, "model_type");
  const clip = {
    model_type: "clip_text_model",
    vocab_size: 8,
    hidden_size: 6,
    intermediate_size: 12,
    num_hidden_layers: 1,
    num_attention_heads: 4,
  };
  assertThrows(() => parseClipTextConfig(clip), CheckpointError, "num_attention_heads");
  assertThrows(
    () => parseClipTextConfig({ ...clip, num_attention_heads: 2, hidden_act: "gelu" }),
    CheckpointError,
    "hidden_act",
  );
});

Deno.test("clipEosIndex: the highest id (eos_token_id 2) or the first eos", () => {
  assertEquals(clipEosIndex([5, 9, 3, 9, 9], 2), 1);
  assertEquals(clipEosIndex([5, 7, 3, 7], 7), 1);
  assertEquals(clipEosIndex([5, 6], 7), 0);
});

Deno.test("spiece.model: a cut or foreign file is a CheckpointError naming it", async () => {
  const bytes = await Deno.readFile(`${PIXART}/tokenizer/spiece.model`);
  assertEquals(readSentencePiece(bytes).pieces.length, 240);
  assertThrows(
    () => readSentencePiece(bytes.subarray(0, 1000), "x.model"),
    CheckpointError,
    "x.model",
  );
  assertThrows(
    () => readSentencePiece(new TextEncoder().encode("{}"), "y.model"),
    CheckpointError,
    "y.model",
  );
});
