import { assert, assertEquals, assertRejects, relError } from "../../tests/assert.ts";
import { gpuTest, withRuntime } from "../../tests/gpu.ts";
import { CheckpointError } from "../errors.ts";
import { loadPipeline } from "../pipeline.ts";
import { codesName, lowRankName, META, openArtifact } from "./artifact.ts";
import { quantizeModel, writeArtifact } from "./quantize.ts";
import { FIXTURE, fixtureImage, image, imageErrors, tmpFile } from "./quantize_test_util.ts";

Deno.test(
  "low rank: the artifact stores each layer's branch, reloads it, and runs nearer FP32 (W3)",
  gpuTest,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "webdit_lowrank_" });
    const base = { model: FIXTURE, quantizer: "uniform", wbits: 3 };
    // The fixture's narrowest layers have K = 32.
    await assertRejects(
      () => quantizeModel({ ...base, abits: 16, lowRank: 40 }),
      RangeError,
      "lowRank 40 exceeds min(N, K) = 32",
    );
    await assertRejects(
      () => quantizeModel({ ...base, abits: 16, lowRank: 2.5 }),
      RangeError,
      "lowRank must be a positive integer (0: none), got 2.5",
    );
    await assertRejects(
      () => quantizeModel({ ...base, abits: 16, lowRank: 129 }),
      RangeError,
      "lowRank is at most 128",
    );
    await withRuntime(async (rt) => {
      const ref = await fixtureImage(rt);
      const errs: Record<string, number> = {};
      for (const abits of [16, 8]) {
        for (const lowRank of [0, 8]) {
          const r = await quantizeModel({ ...base, abits, lowRank, runtime: rt });
          const name = "transformer_blocks.0.ff.net.2";
          const l = r.plan.layers[name];
          assertEquals(l.lowRank, lowRank || undefined);
          assertEquals(r.plan.settings.lowRank, lowRank || undefined);
          const rep = r.layers.find((x) => x.name === name)!;
          const out = `${dir}/a${abits}r${lowRank}.safetensors`;
          await writeArtifact(out, r);
          const a = await openArtifact(out);
          assertEquals(
            a.file.tensors.get(lowRankName(name, "a"))?.shape,
            lowRank ? [8, l.in] : undefined,
          );
          assertEquals(
            a.file.tensors.get(lowRankName(name, "b"))?.shape,
            lowRank ? [l.out, 8] : undefined,
          );
          a.close();
          if (lowRank) {
            assert(rep.bytes >= 4 * 8 * (l.out + l.in), "the branch's bytes are counted");
          }
          const pipe = await loadPipeline(rt, { path: out });
          errs[`A${abits} r${lowRank}`] = relError(await image(pipe), ref);
          pipe.release();
          // A branch tensor of the wrong shape, or missing, is named.
          if (abits === 8 && lowRank) {
            const p = JSON.parse(r.metadata[META.plan]);
            p.layers[name].lowRank = 4;
            const metadata = { ...r.metadata, [META.plan]: JSON.stringify(p) };
            await writeArtifact(out, { ...r, metadata }, { force: true });
            const e = await assertRejects(() => loadPipeline(rt, { path: out }), CheckpointError);
            assert(
              e.message.includes(lowRankName(name, "a")) && e.message.includes("[4,"),
              e.message,
            );
            const tensors = { ...r.tensors };
            delete tensors[lowRankName(name, "b")];
            await writeArtifact(out, { ...r, tensors }, { force: true });
            const m = await assertRejects(() => loadPipeline(rt, { path: out }), CheckpointError);
            assert(
              m.message.includes(lowRankName(name, "b")) && m.message.includes("missing"),
              m.message,
            );
          }
        }
      }
      // The float branch takes the weights' largest directions out of W3's rounding.
      for (const a of ["A16", "A8"]) {
        assert(errs[`${a} r8`] < errs[`${a} r0`], `${a}: ${JSON.stringify(errs)}`);
      }
    });
    await Deno.remove(dir, { recursive: true });
  },
);

Deno.test(
  "low rank override: matching layers take their own rank (0: none), the plan keeps the list and reloads",
  gpuTest,
  async () => {
    const dir = await Deno.makeTempDir({ prefix: "webdit_lowrank_ovr_" });
    const base = { model: FIXTURE, quantizer: "uniform", wbits: 4, abits: 8 };
    await assertRejects(
      () => quantizeModel({ ...base, lowRankOverride: [{ pattern: "*", rank: 200 }] }),
      RangeError,
      "lowRankOverride[0] (*): rank must be an integer in [0, 128], got 200",
    );
    await assertRejects(
      () => quantizeModel({ ...base, lowRankOverride: [{ pattern: "", rank: 4 }] }),
      RangeError,
      "lowRankOverride[0]: the pattern must be a non-empty string",
    );
    const lowRankOverride = [
      { pattern: "transformer_blocks.0.ff.*", rank: 12 },
      { pattern: "*.attn2.*", rank: 0 },
    ];
    await withRuntime(async (rt) => {
      const r = await quantizeModel({ ...base, lowRank: 4, lowRankOverride, runtime: rt });
      const ranks = Object.entries(r.plan.layers).filter(([, l]) => l.quantizer !== "fp");
      for (const [name, l] of ranks) {
        const want = name.startsWith("transformer_blocks.0.ff.")
          ? 12
          : name.includes(".attn2.")
          ? undefined
          : 4;
        assertEquals(l.lowRank, want, name);
        assertEquals(r.layers.find((x) => x.name === name)?.lowRank, want, name);
      }
      assert(ranks.some(([n]) => n.includes(".attn2.")), "the fixture has cross-attention layers");
      const out = `${dir}/ovr.safetensors`;
      await writeArtifact(out, r);
      const a = await openArtifact(out);
      assertEquals(a.plan.settings.lowRankOverride, lowRankOverride);
      assertEquals(a.plan.settings.lowRank, 4);
      assertEquals(
        a.file.tensors.get(lowRankName("transformer_blocks.0.attn2.to_k", "a")),
        undefined,
      );
      a.close();
      const pipe = await loadPipeline(rt, { path: out });
      const img = await image(pipe);
      assert(img.every(Number.isFinite), "the image is finite");
      pipe.release();
      // A stored override with a bad rank is named.
      const p = JSON.parse(r.metadata[META.plan]);
      p.settings.lowRankOverride[1].rank = -1;
      const metadata = { ...r.metadata, [META.plan]: JSON.stringify(p) };
      await writeArtifact(out, { ...r, metadata }, { force: true });
      const e = await assertRejects(() => openArtifact(out), CheckpointError);
      assert(e.message.includes("lowRankOverride[1].rank"), e.message);
      // The plan records the fit (refit: no GPTQ); an unknown one is named.
      assertEquals(p.settings.lowRankFit, "refit");
      p.settings.lowRankOverride[1].rank = 0;
      p.settings.lowRankFit = "qr";
      const bad = { ...r.metadata, [META.plan]: JSON.stringify(p) };
      await writeArtifact(out, { ...r, metadata: bad }, { force: true });
      const f = await assertRejects(() => openArtifact(out), CheckpointError);
      assert(f.message.includes("settings.lowRankFit") && f.message.includes("svd"), f.message);
    });
    await Deno.remove(dir, { recursive: true });
  },
);

Deno.test(
  "low rank fit: refit and hessian leave less weight and image error than SVDQuant's split (W3, GPTQ)",
  gpuTest,
  async () => {
    const base = {
      model: FIXTURE,
      quantizer: "uniform",
      wbits: 3,
      abits: 16,
      lowRank: 8,
      calibration: { prompts: ["red apple", "green apple"], steps: 2, cacheDir: false as const },
    };
    await assertRejects(
      () => quantizeModel({ ...base, lowRankFit: "hessian" }),
      RangeError,
      'lowRankFit "hessian" needs gptq',
    );
    await assertRejects(
      () => quantizeModel({ ...base, lowRank: 0, lowRankFit: "refit" }),
      RangeError,
      "lowRankFit needs a low-rank branch",
    );
    const out = await tmpFile();
    await withRuntime(async (rt) => {
      const fits = ["svd", "refit", "hessian"] as const;
      const rs = [];
      for (const lowRankFit of fits) {
        rs.push(await quantizeModel({ ...base, gptq: true, lowRankFit, runtime: rt }));
      }
      const [svd, refit, hessian] = rs;
      assertEquals(rs.map((r) => r.plan.settings.lowRankFit), [...fits]);
      const plainDefault = await quantizeModel({ ...base, runtime: rt });
      assertEquals(plainDefault.plan.settings.lowRankFit, "refit");
      const gptqDefault = await quantizeModel({ ...base, gptq: true, runtime: rt });
      assertEquals(gptqDefault.plan.settings.lowRankFit, "hessian");
      // Same codes, the down factor refitted: never more weight error, layer by layer.
      for (const [i, l] of svd.layers.entries()) {
        if (l.quantizer === "fp") continue;
        assertEquals(refit.tensors[codesName(l.name)].data, svd.tensors[codesName(l.name)].data);
        assert(refit.layers[i].sqnrDb! >= l.sqnrDb!, `${l.name}: ${refit.layers[i].sqnrDb}`);
      }
      const errs = await imageErrors(rt, out, [svd, refit, hessian]);
      assert(errs[1] < errs[0] && errs[2] < errs[1], `svd, refit, hessian: ${errs}`);
    });
    await Deno.remove(out.slice(0, out.lastIndexOf("/")), { recursive: true });
  },
);
