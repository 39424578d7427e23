import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { tlqQuantize } from "../../plugins/quantizers/tlq.ts";
import { CheckpointError } from "../errors.ts";
import { openCheckpoint } from "../io/safetensors_index.ts";
import { uploadQWeight } from "../ops/qweight.ts";
import { hasCompactTlq } from "../reference/qgemm.ts";
import { META, openArtifact, paramName } from "./artifact.ts";
import { quantizeModel, writeArtifact } from "./quantize.ts";
import type { QuantizeResult } from "./quantize_types.ts";

const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;
const LAYER = "transformer_blocks.1.ff.net.2";

/** Writes `r` as `<dir>/<name>.safetensors`. */
async function write(r: QuantizeResult, dir: string, name: string): Promise<string> {
  const path = `${dir}/${name}.safetensors`;
  await writeArtifact(path, r);
  return path;
}

Deno.test(
  "TLQ artifacts store Δ±, z± (and η in the plan), not the LUT; older ones with qparam.lut still load",
  gpuTest,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "webdit_artifact_" });
    try {
      const r = await quantizeModel({ model: FIXTURE, quantizer: "tlq", wbits: 4, abits: 8 });
      const tlqLayers = Object.entries(r.plan.layers).filter(([, l]) => l.quantizer === "tlq");
      assert(tlqLayers.length > 0);
      const params = Object.keys(r.tensors).filter((t) => t.includes(".qparam."));
      assertEquals(params.filter((t) => t.endsWith(".qparam.lut")), []);
      for (const k of ["deltaPos", "zeroPos", "deltaNeg", "zeroNeg"]) {
        assert(params.includes(paramName(LAYER, k)), k);
      }

      // New artifact: the LUT rebuilt on load is the quantizer's, bit for bit.
      const a = await openArtifact(await write(r, dir, "new"));
      const src = await openCheckpoint(`${FIXTURE}/transformer`);
      const luts = new Map<string, Float32Array>();
      try {
        const q = await a.quantizedWeight(LAYER);
        const w = await src.readF32(`${LAYER}.weight`);
        const ref = tlqQuantize({ data: w, rows: q.rows, cols: q.cols }, { bits: 4 });
        assertEquals(Array.from(q.params.lut), Array.from(ref.params.lut));
        assert(hasCompactTlq(q));
        for (const [name] of tlqLayers) luts.set(name, (await a.quantizedWeight(name)).params.lut);
      } finally {
        a.close();
        src.close();
      }

      // As an earlier version wrote it: qparam.lut stored, Δ not rounded to f16.
      const tensors = { ...r.tensors };
      for (const [name, lut] of luts) {
        tensors[paramName(name, "lut")] = { dtype: "F32", shape: [lut.length], data: lut };
        const d = r.tensors[paramName(name, "deltaPos")].data as Float32Array;
        tensors[paramName(name, "deltaPos")] = {
          dtype: "F32",
          shape: [d.length],
          data: d.map((v) => v * (1 + 1e-6)),
        };
      }
      const old = await openArtifact(await write({ ...r, tensors }, dir, "old"));
      try {
        const q = await old.quantizedWeight(LAYER);
        assertEquals(Array.from(q.params.lut), Array.from(luts.get(LAYER)!));
        assert(!hasCompactTlq(q), "an f64 Δ cannot go compact");
        await withRuntime((rt) => {
          const w = uploadQWeight(rt, q, { a16: true, int: true });
          assertEquals([w.a16!.mode, w.int!.mode], [0, 2]); // the LUT modes
          w.release();
        });
      } finally {
        old.close();
      }

      // No qparam.lut and no η: an error naming the field.
      const plan = JSON.parse(r.metadata[META.plan]);
      delete plan.layers[LAYER].meta.eta;
      const noEta = await openArtifact(
        await write(
          { ...r, metadata: { ...r.metadata, [META.plan]: JSON.stringify(plan) } },
          dir,
          "no_eta",
        ),
      );
      try {
        await assertRejects(() => noEta.quantizedWeight(LAYER), CheckpointError, "eta");
      } finally {
        noEta.close();
      }
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
);
