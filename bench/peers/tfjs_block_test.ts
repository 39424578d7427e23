import { assert } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../../runtime/gpu/kernel.ts";
import { readTensor, uploadTensor } from "../../runtime/gpu/tensor.ts";
import { Prng } from "../../runtime/io/prng.ts";
import { denseLinears } from "../../runtime/model/linear.ts";
import { elementwise } from "../../runtime/ops/elementwise.ts";
import { loadPixArt } from "../../plugins/models/pixart_load.ts";
import { parsePixArtConfig, pixartWeightShapes } from "../../plugins/models/pixart_config.ts";
import { RandomSource } from "../random_model.ts";
import { readBlockWeights, tfjsPixArtBlock } from "./tfjs_block.ts";

function relMax(a: Float32Array, b: Float32Array): number {
  let e = 0;
  let m = 0;
  for (let i = 0; i < a.length; i++) {
    e = Math.max(e, Math.abs(a[i] - b[i]));
    m = Math.max(m, Math.abs(b[i]));
  }
  return e / m;
}

Deno.test(
  "tfjs PixArt block equals the model's blockForward (tiny shape, padded caption)",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const [H, Dh, grid, L, B, C] = [2, 16, 8, 8, 2, 16];
      const D = H * Dh;
      const T = grid * grid;
      const config = parsePixArtConfig({
        num_attention_heads: H,
        attention_head_dim: Dh,
        in_channels: 4,
        out_channels: 8,
        num_layers: 2,
        cross_attention_dim: D,
        sample_size: 2 * grid,
        patch_size: 2,
        caption_channels: C,
      });
      const source = new RandomSource(pixartWeightShapes(config), 3, "block-test");
      const model = await loadPixArt(rt, source, config, {
        dtype: "f32",
        linears: denseLinears("f32"),
      });
      const g = new Prng(4);
      const emb = uploadTensor(rt, g.normals(B * L * C), [B, L, C]);
      // Item 1 has a padded caption: the mask bias must match diffusers' on both sides.
      const maskHost = Float32Array.from({ length: B * L }, (_, i) => i >= L + 5 ? 0 : 1);
      const mask = uploadTensor(rt, maskHost, [B, L]);
      let rec = new Recorder(rt);
      const cond = model.prepare(rec, emb, mask);
      await rec.submit();
      const xHost = g.normals(B * T * D);
      const t6Host = g.normals(B * 6 * D).map((v) => 0.3 * v);
      const x = uploadTensor(rt, xHost, [B * T, D]);
      const t6 = uploadTensor(rt, t6Host, [B, 6 * D]);
      rec = new Recorder(rt);
      // Block 1: its own weights and its own cross-attention keys/values.
      const y = model.blockForward(rec, 1, elementwise(rec, "copy", x), t6, cond, {
        h: grid,
        w: grid,
      });
      await rec.submit();
      const ours = await readTensor(rt, y);
      const blk = await tfjsPixArtBlock(
        await readBlockWeights(source, 1),
        { batch: B, tokens: T, captionTokens: L, heads: H, headDim: Dh },
        {
          x: xHost,
          t6: t6Host,
          keys: await readTensor(rt, cond.keys[1]),
          values: await readTensor(rt, cond.values[1]),
          mask: maskHost,
        },
      );
      try {
        blk.run(1);
        const theirs = await blk.read();
        const upd = (v: Float32Array) => v.map((a, i) => a - xHost[i]);
        // The update is a real change of x, and both implementations agree on it.
        assert(relMax(ours, xHost) > 0.05, `block barely changes x: ${relMax(ours, xHost)}`);
        const e = relMax(upd(theirs), upd(ours));
        assert(e < 1e-4, `tfjs vs webdit block update: relative max error ${e}`);
        // Two chained blocks (the bench's unit of a sample) stay finite and differ from one.
        blk.run(2);
        const two = await blk.read();
        assert(two.every(Number.isFinite) && relMax(two, theirs) > 1e-3, "chained run");
      } finally {
        blk.dispose();
        for (const t of [emb, x, t6, y]) t.release();
        cond.release();
        model.release();
      }
    });
  },
);
