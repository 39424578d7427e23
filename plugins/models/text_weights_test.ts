import { assert, assertEquals, assertThrows } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { assertWithin, FIXTURES } from "../../tests/fixture_helpers.ts";
import type { Runtime } from "../../runtime/gpu/device.ts";
import { Recorder } from "../../runtime/gpu/kernel.ts";
import { readAndRelease } from "../../runtime/gpu/tensor.ts";
import type { TensorSource } from "../../runtime/io/safetensors.ts";
import { openCheckpoint } from "../../runtime/io/safetensors_index.ts";
import { openSafetensors, type SafetensorsFile } from "../../runtime/io/safetensors.ts";
import { T5Encoder } from "./t5.ts";
import { parseT5Config } from "./t5_config.ts";
import { fitsF16, HostEmbedding, type TextWeights, weightStorage } from "./text_weights.ts";

Deno.test("text weights: storage by mode and stored dtype; past f16's range stays f32", () => {
  const source = {
    tensors: new Map([["a", { dtype: "BF16" }], ["b", { dtype: "F32" }], ["c", { dtype: "F16" }]]),
  } as unknown as TensorSource;
  const small = Float32Array.of(0.5, -3, 65504);
  const big = Float32Array.of(0.5, 70000);
  const s = (n: string, v: Float32Array, m: TextWeights) => weightStorage(source, n, v, m);
  assertEquals([s("a", small, "auto"), s("b", small, "auto"), s("c", small, "auto")], [
    "f16",
    "f32",
    "f16",
  ]);
  assertEquals([s("b", small, "f16"), s("a", small, "f32")], ["f16", "f32"]);
  assertEquals([s("a", big, "auto"), s("b", big, "f16")], ["f32", "f32"]);
  assert(!fitsF16(Float32Array.of(NaN)));
});

Deno.test("text weights: a host embedding gathers rows, f16 exactly for f16 values", () => {
  const v = Float32Array.from({ length: 12 }, (_, i) => (i - 5) / 4); // quarters: exact in f16
  for (const storage of ["f32", "f16"] as const) {
    const e = new HostEmbedding(v, 4, 3, storage);
    assertEquals([...e.gather([2, 0, 2])], [...v.slice(6, 9), ...v.slice(0, 3), ...v.slice(6, 9)]);
    assertEquals(e.byteLength, storage === "f16" ? 24 : 48);
    assertThrows(() => e.gather([4]), RangeError, "past the table's 4 rows");
  }
  assertThrows(() => new HostEmbedding(v, 5, 3, "f32"), RangeError, "[5, 3]");
});

/** A fixture's I32 token ids. */
async function ints(io: SafetensorsFile, name: string): Promise<Uint32Array> {
  return Uint32Array.from(new Int32Array((await io.readRaw(name)).slice().buffer));
}

async function encodeT5(rt: Runtime, dir: string, weights: TextWeights) {
  const cfg = parseT5Config(JSON.parse(await Deno.readTextFile(`${dir}/config.json`)));
  const src = await openCheckpoint(dir);
  const t5 = await T5Encoder.load(rt, src, cfg, weights);
  src.close();
  return t5;
}

Deno.test(
  "T5 with f16 weights: a bf16 checkpoint as stored ('auto'), an f32 one within f16 rounding",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      // FLUX's fixture T5 is bf16: "auto" keeps it in f16 (half the bytes), the same output.
      const io = await openSafetensors(`${FIXTURES}text_flux/io.safetensors`);
      const [B, L] = io.info("t5_input_ids").shape as [number, number];
      const ids32 = await ints(io, "t5_input_ids");
      const run = async (
        t5: T5Encoder,
        ids: Uint32Array,
        B: number,
        L: number,
        mask?: Float32Array,
      ) => {
        const rec = new Recorder(rt);
        const out = t5.encode(rec, ids, B, L, mask);
        await rec.submit();
        const [y] = await readAndRelease(rt, [out]);
        return y!;
      };
      const auto = await encodeT5(rt, `${FIXTURES}text_flux/text_encoder_2`, "auto");
      const f32 = await encodeT5(rt, `${FIXTURES}text_flux/text_encoder_2`, "f32");
      const lin16 = auto.weightBytes, lin32 = f32.weightBytes;
      assert(lin16 < 0.55 * lin32, `bf16 T5 in f16: ${lin16} of ${lin32} bytes`);
      assertEquals(auto.hostBytes * 2, f32.hostBytes);
      const want = await io.readF32("prompt_embeds");
      const y16 = await run(auto, ids32, B, L);
      assertWithin(y16, await run(f32, ids32, B, L), 1e-5, "bf16 in f16 vs f32");
      assertWithin(y16, want, 5e-5, "vs transformers");
      auto.release();
      f32.release();
      io.close();

      // PixArt's fixture T5 is f32: forced f16 rounds the weights (11-bit mantissas).
      const pio = await openSafetensors(`${FIXTURES}text_pixart/io.safetensors`);
      const [pB, pL] = pio.info("input_ids").shape as [number, number];
      const pids = await ints(pio, "input_ids");
      const mask = await pio.readF32("prompt_attention_mask");
      const p16 = await encodeT5(rt, `${FIXTURES}text_pixart/text_encoder`, "f16");
      const p32 = await encodeT5(rt, `${FIXTURES}text_pixart/text_encoder`, "auto");
      assert(p16.weightBytes < 0.55 * p32.weightBytes);
      const pwant = await pio.readF32("prompt_embeds");
      assertWithin(await run(p32, pids, pB, pL, mask), pwant, 5e-6, "f32");
      // Every weight rounded to f16 (2^-12 relative), two layers: measured 2.7e-3 × RMS at worst.
      assertWithin(await run(p16, pids, pB, pL, mask), pwant, 5e-3, "forced f16");
      p16.release();
      p32.release();
      pio.close();
    });
  },
);
