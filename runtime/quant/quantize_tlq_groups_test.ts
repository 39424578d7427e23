import { assert, assertEquals, assertRejects, relError } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { lutDequantize } from "../../plugins/quantizers/tlq.ts";
import { CheckpointError } from "../errors.ts";
import { loadPipeline } from "../pipeline.ts";
import { META, openArtifact, paramName } from "./artifact.ts";
import { quantizeModel, writeArtifact } from "./quantize.ts";
import { FIXTURE, fixtureImage, image } from "./quantize_test_util.ts";

Deno.test(
  "TLQ in groups: the artifact stores a grid a group (no LUT), reloads it, and runs both paths",
  gpuTest,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "webdit_tlqg_" });
    // Least-squares grids: METHODS.md's percentile grids start at a plane's smallest |w|, which
    // in a group of 16 wastes levels (on the bundled model they gain nothing from groups).
    const base = { model: FIXTURE, quantizer: "tlq", wbits: 4, tlqFit: "mse" as const };
    // The fixture's widths are 32 and 128: groups of 24 divide neither.
    await assertRejects(
      () => quantizeModel({ ...base, abits: 16, groupSize: 24 }),
      RangeError,
      "tlq groups must divide K = 32, got groupSize 24",
    );
    await withRuntime(async (rt) => {
      const ref = await fixtureImage(rt);
      const errs: Record<string, number> = {};
      for (const abits of [16, 8]) {
        for (const groupSize of [0, 16]) {
          const r = await quantizeModel({ ...base, abits, groupSize, runtime: rt });
          const name = "transformer_blocks.0.ff.net.2"; // K = 128: 8 groups of 16
          const l = r.plan.layers[name];
          assertEquals(l.meta?.groupSize, groupSize || undefined);
          const out = `${dir}/a${abits}g${groupSize}.safetensors`;
          await writeArtifact(out, r);
          const a = await openArtifact(out);
          // Stored: the grids, [N·K/G] (no LUT: the loader rebuilds it exactly).
          const stored = a.file.tensors;
          assert(!stored.has(paramName(name, "lut")), "no stored LUT");
          assertEquals(stored.get(paramName(name, "deltaPos"))?.shape, [
            l.out * (groupSize ? 8 : 1),
          ]);
          const q = await a.quantizedWeight(name);
          assertEquals([q.meta.groupSize, q.params.lut.length], [
            groupSize || undefined,
            l.out * (groupSize ? 8 : 1) * 16,
          ]);
          assertEquals(lutDequantize(q).length, l.out * l.in);
          a.close();
          const pipe = await loadPipeline(rt, { path: out });
          errs[`A${abits} g${groupSize}`] = relError(await image(pipe), ref);
          pipe.release();
          // A plan whose group size does not fit its layer, or is not a number, is named.
          for (const bad of abits === 8 && groupSize ? [48, "x"] : []) {
            const p = JSON.parse(r.metadata[META.plan]);
            p.layers[name].meta.groupSize = bad;
            const metadata = { ...r.metadata, [META.plan]: JSON.stringify(p) };
            await writeArtifact(out, { ...r, metadata }, { force: true });
            const e = await assertRejects(
              () => openArtifact(out).then((b) => b.quantizedWeight(name)),
              CheckpointError,
            );
            assert(e.message.includes(`${name}.meta.groupSize`), e.message);
          }
        }
      }
      // Grids of 16 weights err less than grids of a row, on both paths.
      for (const a of [16, 8]) {
        assert(errs[`A${a} g16`] < errs[`A${a} g0`], JSON.stringify(errs));
      }
    });
    await Deno.remove(dir, { recursive: true });
  },
);
