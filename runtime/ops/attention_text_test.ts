import { assertClose, assertThrows, rms } from "../../tests/assert.ts";
import { gpuTest, runAndRead, withRuntime } from "../../tests/gpu.ts";
import { Recorder } from "../gpu/kernel.ts";
import { uploadTensor } from "../gpu/tensor.ts";
import { Prng } from "../io/prng.ts";
import { textAttentionRef } from "../reference/attention_text.ts";
import { type RelativeBias, textAttention } from "./attention_text.ts";

interface Case {
  B: number;
  Tq: number;
  Tk: number;
  H: number;
  D: number;
  mask?: boolean;
  causal?: boolean;
  bias?: boolean;
}

Deno.test(
  "textAttention matches the reference: masks, causal, relative bias, odd shapes",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const cases: Case[] = [
        { B: 2, Tq: 7, Tk: 7, H: 3, D: 5, mask: true, bias: true }, // T5-like, odd head dim
        { B: 1, Tq: 77, Tk: 77, H: 2, D: 8, causal: true }, // CLIP-like, over one workgroup
        { B: 2, Tq: 9, Tk: 13, H: 2, D: 4, mask: true, causal: true, bias: true },
        { B: 1, Tq: 70, Tk: 70, H: 1, D: 128, bias: true },
        { B: 1, Tq: 3, Tk: 4, H: 2, D: 4 },
      ];
      for (const c of cases) {
        const g = new Prng(c.Tq * 31 + c.D);
        const W = c.H * c.D;
        const qs = g.normals(c.B * c.Tq * W).map((x) => 0.8 * x);
        const ks = g.normals(c.B * c.Tk * W);
        const vs = g.normals(c.B * c.Tk * W);
        // Every second caption ends in padding; the other keeps all its keys.
        const mask = c.mask
          ? Float32Array.from(
            { length: c.B * c.Tk },
            (_, i) => i % c.Tk < c.Tk - 3 * (Math.floor(i / c.Tk) % 2) ? 1 : 0,
          )
          : undefined;
        const nb = 6;
        const table = g.normals(nb * c.H);
        const buckets = Uint32Array.from({ length: c.Tq + c.Tk - 1 }, (_, i) => (i * 7) % nb);
        const scale = c.bias ? 1 : 1 / Math.sqrt(c.D);
        const q = uploadTensor(rt, qs, [c.B, c.Tq, W]);
        const k = uploadTensor(rt, ks, [c.B, c.Tk, W]);
        const v = uploadTensor(rt, vs, [c.B, c.Tk, W]);
        const m = mask ? uploadTensor(rt, mask, [c.B, c.Tk]) : undefined;
        const rb: RelativeBias | undefined = c.bias
          ? {
            table: uploadTensor(rt, table, [nb, c.H]),
            buckets: uploadTensor(rt, buckets, [buckets.length], "u32"),
          }
          : undefined;
        const got = await runAndRead(
          rt,
          (r) =>
            textAttention(r, q, k, v, {
              heads: c.H,
              scale,
              mask: m,
              causal: c.causal,
              relativeBias: rb,
            }),
        );
        const ref = textAttentionRef(qs, ks, vs, c, {
          heads: c.H,
          scale,
          mask,
          causal: c.causal,
          relativeBias: c.bias ? { table, buckets } : undefined,
        });
        assertClose(got, ref, { atol: 1e-5 * rms(ref), rtol: 1e-5, msg: JSON.stringify(c) });
      }
    });
  },
);

Deno.test(
  "textAttention: a row with every key dropped gives zeros; shapes are checked",
  gpuTest,
  async () => {
    await withRuntime(async (rt) => {
      const q = uploadTensor(rt, new Prng(1).normals(2 * 3 * 4), [2, 3, 4]);
      const mask = uploadTensor(rt, Float32Array.from([0, 0, 0, 1, 1, 1]), [2, 3]);
      const got = await runAndRead(
        rt,
        (r) => textAttention(r, q, q, q, { heads: 2, scale: 1, mask }),
      );
      assertClose(got.subarray(0, 12), new Float32Array(12), { atol: 0 });
      const rec = new Recorder(rt);
      assertThrows(
        () => textAttention(rec, q, q, q, { heads: 3, scale: 1 }),
        RangeError,
        "heads 3",
      );
      const m2 = uploadTensor(rt, new Float32Array(5), [5]);
      assertThrows(
        () => textAttention(rec, q, q, q, { heads: 2, scale: 1, mask: m2 }),
        RangeError,
        "mask",
      );
    });
  },
);
