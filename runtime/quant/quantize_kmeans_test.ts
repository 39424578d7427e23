import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { lutDequantize } from "../../plugins/quantizers/tlq.ts";
import { codesName, openArtifact, paramName } from "./artifact.ts";
import { CheckpointError } from "../errors.ts";
import { quantizeModel, writeArtifact } from "./quantize.ts";
import { FIXTURE, imageErrors, tmpFile } from "./quantize_test_util.ts";

Deno.test(
  "kmeans: the artifact stores each row's levels, reloads them, and generates on both paths",
  gpuTest,
  async () => {
    const base = { model: FIXTURE, quantizer: "kmeans", wbits: 3 };
    await assertRejects(
      () => quantizeModel({ ...base, abits: 8, wbits: 8 }),
      RangeError,
      'quantizer "kmeans" takes 3, 4 bits, not 8',
    );
    await assertRejects(
      () => quantizeModel({ ...base, abits: 16, groupSize: 24 }),
      RangeError,
      "kmeans groups must divide K = 32, got groupSize 24",
    );
    const out = await tmpFile();
    await withRuntime(async (rt) => {
      const km = await quantizeModel({ ...base, abits: 8, runtime: rt });
      const km16 = await quantizeModel({ ...base, abits: 16, runtime: rt });
      const uni = await quantizeModel({ ...base, quantizer: "uniform", abits: 8, runtime: rt });
      // With GPTQ and a rotation: the codes re-chosen on the same levels.
      const gptqOpts = {
        ...base,
        abits: 8,
        gptq: true,
        gptqSqnr: true,
        rotation: "hadamard" as const,
        calibration: { prompts: ["red apple", "green apple"], steps: 2, cacheDir: false as const },
        runtime: rt,
      };
      const gptq = await quantizeModel(gptqOpts);
      // --gptq-refit: the same codes, each row's levels refitted: no less output SQNR, layer by layer.
      const refit = await quantizeModel({ ...gptqOpts, gptqRefit: true });
      for (const [i, l] of refit.layers.entries()) {
        if (l.quantizer === "fp") continue;
        const g = gptq.layers[i];
        assertEquals(refit.tensors[codesName(l.name)].data, gptq.tensors[codesName(l.name)].data);
        assert(l.outSqnrDb! >= g.outSqnrDb! - 1e-9, `${l.name}: ${l.outSqnrDb} < ${g.outSqnrDb}`);
        assertEquals(refit.plan.layers[l.name].meta?.gptqRefit, true);
      }
      for (
        const [bad, msg] of [
          [{ gptq: false }, "gptqRefit needs gptq"],
          [{ groupSize: 16 }, "no groupSize"],
        ] as const
      ) {
        await assertRejects(
          () => quantizeModel({ ...gptqOpts, ...bad, gptqRefit: true }),
          RangeError,
          msg,
        );
      }
      // The least weight error of any per-row grid: never above uniform's, layer by layer.
      for (const [i, l] of km.layers.entries()) {
        if (l.quantizer === "fp") continue;
        assert(l.sqnrDb! >= uni.layers[i].sqnrDb!, `${l.name}: ${l.sqnrDb} < uniform`);
      }
      const errs = await imageErrors(rt, out, [km, uni, gptq, km16, refit]);
      // Stored: codes and the LUT [N·2^b], read back as written.
      const name = "transformer_blocks.0.ff.net.2";
      const l = km.plan.layers[name];
      const a = await openArtifact(out);
      assertEquals(a.file.tensors.get(paramName(name, "lut"))?.shape, [l.out * 8]);
      const q = await a.quantizedWeight(name);
      assertEquals(q.quantizer, "kmeans");
      assertEquals(q.params.lut, km.tensors[paramName(name, "lut")].data as Float32Array);
      assertEquals(lutDequantize(q).length, l.out * l.in);
      a.close();
      // A table of the wrong size, or none, is named.
      const lutName = paramName(name, "lut");
      const t = km.tensors[lutName];
      const { [lutName]: _, ...noLut } = km.tensors;
      const bads = [{ ...t, data: (t.data as Float32Array).subarray(0, 8), shape: [8] }, undefined];
      for (const bad of bads) {
        const tensors = bad ? { ...km.tensors, [lutName]: bad } : noLut;
        await writeArtifact(out, { ...km, tensors }, { force: true });
        const b = await openArtifact(out);
        const e = await assertRejects(() => b.quantizedWeight(name), CheckpointError);
        assert(e.message.includes(lutName), e.message);
        b.close();
      }
      assert(errs[0] < errs[1], `kmeans ${errs[0]} vs uniform ${errs[1]} (W3A8 image error)`);
      assert(errs[2] < 1, `kmeans + GPTQ + hadamard: ${errs[2]}`);
      assert(errs[3] < errs[0], `weight-only ${errs[3]} vs A8 ${errs[0]}`);
      assert(errs[4] < 1, `kmeans + GPTQ refit + hadamard: ${errs[4]}`);
    });
    await Deno.remove(out.replace(/\/[^/]*$/, ""), { recursive: true });
  },
);
