/**
 * The bundled emoji model's headline figures: the time of one 20-step image (CFG, DPM-Solver++
 * 2M, batch 1) and, with --fidelity, its prompt fidelity over bench/prompts/emoji_fidelity.txt.
 *
 *     deno run -A bench/emoji_bench.ts [--model PATH] [--fidelity] [--seeds N] [--dataset DIR]
 *                                      [--in-flight 1,2,4] [--quantized ARTIFACT ...]
 *     WEBDIT_BENCH_WRITE=1 deno run -A bench/emoji_bench.ts --fidelity
 *                            # + bench/results/<device>/<date>_emoji.{json,md}
 *
 * Rows: `emoji_s_{cpu,gpu}_image_20step` (s; f32 transformer) and `…_f16` (f16 transformer),
 * at the sampling loop's default steps in flight; with --in-flight, `…_inflight{D}` rows (f32) at
 * each given depth in the same run (1 = wait for every step, the loop before pipelining); with
 * --quantized, `…_<plan>` rows (f32 activations) for each quantized artifact (deno task
 * quantize), named by its plan (server's plan name, `-` → `_`: `…_w4a8_tlq_adaptive`).
 * timed in process after one warm-up image (shaders compiled), each image awaited (read back);
 * the value is the median of 3 runs on a CPU adapter (the host is shared: the load average of
 * every run is kept; the fastest is min_ms), of 10 on a GPU (files before 2026-11-29 give the
 * best of 3 on CPU adapters). Checked: every image's latents are finite and, the seed fixed, within
 * 1e-3 of their RMS of the warm-up image's (no reference model is run; fidelity is eval's
 * job). `emoji_s_fidelity_fp32` (%): `evaluate()` of the f32
 * model, 20 steps, the model's default guidance, seeds 0..N-1 (default 1). The GPU machine has no network: give
 * it the dataset with --dataset DIR (emoji.json + img/google/64/ of emoji-datasource-google@16.0.0,
 * 22 MiB: after any local eval, `~/.cache/webdit/emoji-datasource-google@16.0.0`; or, 5 MiB, the
 * folder tools/torch/train/prepare_data.ts writes, e.g. `.train`; carry it to the machine).
 *
 * A plain script (run with `deno run`), not `Deno.bench` cases: one CPU image takes about a
 * minute, so `deno task bench` leaves it out.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { type AdapterChoice, createRuntime } from "../runtime/gpu/device.ts";
import { evaluate } from "../runtime/eval/eval.ts";
import { DEFAULT_MODEL_DIR, loadPipeline } from "../runtime/pipeline.ts";
import { artifactPlanName } from "../runtime/server/models.ts";
import { checkInFlight, DEFAULT_IN_FLIGHT } from "../runtime/sampling/generate.ts";
import {
  type BenchResult,
  deviceSlug,
  gitCommit,
  median,
  type ResultsFile,
  resultsHeader,
  resultsMarkdown,
  writeResults,
} from "./harness.ts";
import { checkWithinRms } from "./sampled_check.ts";

const PROMPT = "red apple";
const STEPS = 20;

function round(v: number): number {
  return Number(v.toPrecision(4));
}

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    args: Deno.args,
    options: {
      model: { type: "string" },
      fidelity: { type: "boolean" },
      seeds: { type: "string" },
      dataset: { type: "string" },
      "no-f16": { type: "boolean" },
      "in-flight": { type: "string" },
      quantized: { type: "string", multiple: true },
    },
  });
  const depths = (v["in-flight"] ?? "").split(",").filter((d) => d !== "").map((d) =>
    checkInFlight(Number(d))
  );
  const model = v.model ?? DEFAULT_MODEL_DIR;
  const rt = await createRuntime({
    adapter: (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as AdapterChoice,
  });
  const onGpu = !rt.info.fallback;
  const kind = onGpu ? "gpu" : "cpu";
  const runs = onGpu ? 10 : 3;
  const results: BenchResult[] = [];
  const loads: Record<string, number[][]> = {};
  try {
    // The headline rows at the default depth, then (--in-flight) f32 at each given depth, then
    // (--quantized) each artifact.
    const cases: { dtype: "f32" | "f16"; inFlight?: number; artifact?: string; plan?: string }[] = [
      { dtype: "f32" },
    ];
    if (!v["no-f16"] && rt.info.f16) cases.push({ dtype: "f16" });
    for (const d of depths) cases.push({ dtype: "f32", inFlight: d });
    for (const artifact of v.quantized ?? []) {
      const plan = (await artifactPlanName(artifact)).replace(/[^a-z0-9]+/gi, "_");
      cases.push({ dtype: "f32", artifact, plan });
    }
    for (const { dtype, inFlight, artifact, plan } of cases) {
      const name = `emoji_s_${kind}_image_20step${dtype === "f16" ? "_f16" : ""}${
        inFlight ? `_inflight${inFlight}` : ""
      }${plan ? `_${plan}` : ""}`;
      const pipe = await loadPipeline(rt, { path: artifact ?? model, dtype, vae: false });
      try {
        let first: ArrayLike<number> | undefined;
        let worst = 0;
        const once = async () => {
          const t0 = performance.now();
          const r = await pipe.generate({
            prompt: PROMPT,
            seed: 0,
            steps: STEPS, // guidance: the model's default (CFG either way: the same work)
            inFlight,
          });
          const ms = performance.now() - t0;
          // Checked: finite, and the same image each run (its fidelity is eval's job).
          first ??= r.latents;
          worst = Math.max(worst, latentsDiff(name, r.latents, first));
          return ms;
        };
        await once(); // warm-up: compiles the pipelines
        const ms: number[] = [];
        loads[name] = [];
        for (let i = 0; i < runs; i++) {
          loads[name].push(Deno.loadavg().map(round));
          ms.push(await once());
          console.error(`${name}: run ${i + 1}/${runs} ${(ms[i] / 1000).toFixed(2)} s`);
        }
        const best = Math.min(...ms), med = median(ms);
        results.push({
          name,
          value: round(med / 1000),
          unit: "s",
          median_ms: round(med),
          min_ms: round(best),
          reps: 1,
          note: `${
            artifact ? `${artifact} (${plan})` : `${dtype} transformer`
          }, "${PROMPT}", CFG ${pipe.defaults.guidance}, DPM-Solver++ 2M, ${
            inFlight ?? DEFAULT_IN_FLIGHT
          } in flight; value = median of ${runs}${
            onGpu ? "" : " (shared host)"
          }, after a warm-up; checked: latents finite, each run within ${
            worst.toPrecision(2)
          } × RMS of the warm-up's (limit 1e-3), no reference model`,
        });
      } finally {
        pipe.release();
      }
    }
    if (v.fidelity) {
      const seeds = Number(v.seeds ?? 1);
      const t0 = performance.now();
      const r = await evaluate({
        model,
        runtime: rt,
        seeds: Array.from({ length: seeds }, (_, i) => i),
        steps: STEPS, // guidance: the model's default
        fidelity: true,
        dataset: v.dataset,
        onProgress: (_p, d, t) => {
          if (d % (STEPS * 10) === 0) console.error(`fidelity: ${d / STEPS}/${t / STEPS} images`);
        },
      });
      const f = r.fidelity!;
      const ms = performance.now() - t0;
      results.push({
        name: "emoji_s_fidelity_fp32",
        value: f.fidelity,
        unit: "%",
        median_ms: round(ms / f.total),
        min_ms: round(ms / f.total),
        reps: f.total,
        note:
          `${f.hits}/${f.total} images (${r.settings.prompts.length} prompts × ${seeds} seeds), ` +
          `20 steps, guidance ${r.settings.guidance}; ms = per image`,
      });
    }
  } finally {
    rt.destroy();
  }
  const file: ResultsFile = {
    ...resultsHeader(
      rt.info.description,
      await gitCommit(),
      Deno.env.get("WEBDIT_BENCH_COMMAND") ??
        `deno run -A bench/emoji_bench.ts ${Deno.args.join(" ")}`.trim(),
    ),
    results,
    extra: {
      model,
      host_load_average_before_each_run: loads,
      host_load_average: Deno.loadavg().map(round),
      cpus: navigator.hardwareConcurrency,
    },
  };
  console.log(resultsMarkdown(file));
  if (Deno.env.get("WEBDIT_BENCH_WRITE") === "1") {
    const p = await writeResults(deviceSlug(rt.info.description, rt.info.fallback), "emoji", file);
    console.log(`wrote ${p.json} and ${p.md}`);
  }
}

/**
 * Throws unless `got` is finite and within 1e-3 of its RMS of `ref` (the same seed's image);
 * returns the largest |Δ| as a share of the RMS.
 */
/** A run's latents against the warm-up's: max |Δ| ≤ 1e-3 × RMS (non-finite fails); the ratio. */
function latentsDiff(name: string, got: ArrayLike<number>, ref: ArrayLike<number>): number {
  const label = `${name}: a run's image against the warm-up's`;
  const { maxErr, rms } = checkWithinRms(label, got, ref, 1e-3);
  return maxErr / rms;
}

if (import.meta.main) await main();
