/**
 * The sampling loop itself at PixArt-α scale: `sampleLoop` (DPM-Solver++ 2M, CFG 4.5) for a few
 * steps of the random PixArt-α-shaped f32 model of step_bench.ts, with 1 step in flight (wait
 * for every step before recording the next) and with the default, in alternating rounds. Beside
 * each, the longest the event loop went without running a 10 ms timer (what a server sharing the
 * thread would wait): Deno's completion calls block the thread until the GPU is idle, and the
 * loop sleeps through most of a step before asking.
 *
 *     deno run -A bench/loop_bench.ts [--steps 6] [--rounds 3] [--write]
 *
 * Rows (ms): `loop_pixart_alpha_f32_inflight{1,4}` (per step, median over rounds) and
 * `loop_pixart_alpha_f32_inflight{1,4}_event_loop_gap` (the longest gap, max over rounds). On
 * a CPU adapter the model shrinks to `pixart_tiny` (2 × 144, 256 tokens).
 *
 * Checked (the rows' notes say so): the first round's latents at 1 and at 4 in flight are finite
 * and agree to 1e-5 of their RMS (the depth must change when the host waits, not the result).
 * The forward itself is not checked against a reference here (tests/ compare the PixArt forward
 * with PyTorch's fixtures; step_bench compares quantized forwards with the f32 one).
 *
 * @module
 */
import { parseArgs } from "node:util";
import { createRuntime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { readTensor, uploadTensor } from "../runtime/gpu/tensor.ts";
import { Prng } from "../runtime/io/prng.ts";
import { denseLinears } from "../runtime/model/linear.ts";
import { DEFAULT_IN_FLIGHT, type Denoiser, sampleLoop } from "../runtime/sampling/generate.ts";
import { createGpuSampler } from "../runtime/sampling/guidance.ts";
import { addedConditions } from "../plugins/models/pixart.ts";
import { loadPixArt } from "../plugins/models/pixart_load.ts";
import { parsePixArtConfig, pixartWeightShapes } from "../plugins/models/pixart_config.ts";
import { deviceSlug, gitCommit, median, resultsHeader, writeResults } from "./harness.ts";
import { RandomSource } from "./random_model.ts";
import { checkWithinRms } from "./sampled_check.ts";

async function main(): Promise<void> {
  const { values: v } = parseArgs({
    options: {
      steps: { type: "string" },
      rounds: { type: "string" },
      write: { type: "boolean" },
    },
  });
  const steps = Number(v.steps ?? 6);
  const rounds = Number(v.rounds ?? 3);
  const rt = await createRuntime({
    adapter: (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as "auto",
  });
  const gpu = !rt.info.fallback;
  const tag = gpu ? "alpha" : "tiny";
  const [layers, heads, latent, capTokens, capChannels] = gpu
    ? [28, 16, 128, 120, 4096]
    : [2, 2, 32, 16, 64];
  const config = parsePixArtConfig({
    num_attention_heads: heads,
    attention_head_dim: 72,
    in_channels: 4,
    out_channels: 8,
    num_layers: layers,
    cross_attention_dim: heads * 72,
    sample_size: latent,
    patch_size: 2,
    caption_channels: capChannels,
  });
  // The same seed and weights as step_bench.ts.
  const source = new RandomSource(pixartWeightShapes(config), 7, `pixart-${tag}`);
  const model = await loadPixArt(rt, source, config, {
    dtype: "f32",
    linears: denseLinears("f32"),
  });
  const g = new Prng(11);
  const emb = uploadTensor(rt, g.normals(2 * capTokens * capChannels), [2, capTokens, capChannels]);
  const mask = uploadTensor(rt, new Float32Array(2 * capTokens).fill(1), [2, capTokens]);
  const rec = new Recorder(rt, "prepare");
  const cond = model.prepare(rec, emb, mask, addedConditions(2, 8 * latent, 8 * latent));
  await rec.submit();
  emb.release();
  mask.release();
  const noise = uploadTensor(rt, g.normals(4 * latent * latent), [1, 4, latent, latent]);
  const denoiser: Denoiser = {
    inChannels: 4,
    outChannels: 8,
    dtype: "f32",
    forward: (r, x, t, step) => model.forward(r, x, t, cond, step),
  };

  const stepTimes = new Map<string, number>();

  /**
   * One loop of `steps` steps: ms per step, the longest gap between 10 ms timer ticks, and
   * (`read`, after the timing) the final latents.
   */
  async function once(inFlight: number, read = false) {
    let last = performance.now();
    let gap = 0;
    const tick = setInterval(() => {
      const now = performance.now();
      gap = Math.max(gap, now - last);
      last = now;
    }, 10);
    const t0 = performance.now();
    const { latents } = await sampleLoop(rt, denoiser, noise, {
      sampler: createGpuSampler("dpm++2m", steps),
      guidance: 4.5,
      inFlight,
      stepTimes, // kept across loops, as Pipeline does
    });
    const ms = performance.now() - t0;
    clearInterval(tick);
    gap = Math.max(gap, performance.now() - last);
    const out = read ? await readTensor(rt, latents) : undefined;
    latents.release();
    return { perStep: ms / steps, gap, out };
  }

  const depths = [1, DEFAULT_IN_FLIGHT];
  await once(DEFAULT_IN_FLIGHT); // warm-up: compiles the pipelines
  const runs: Record<number, { perStep: number; gap: number }[]> = {};
  const outs: Float32Array[] = [];
  for (let r = 0; r < rounds; r++) {
    for (const d of depths) {
      const { out, ...x } = await once(d, r === 0);
      if (out) outs.push(out);
      (runs[d] ??= []).push(x);
      console.error(
        `round ${r + 1}, ${d} in flight: ${x.perStep.toFixed(1)} ms/step, ` +
          `longest event-loop gap ${x.gap.toFixed(1)} ms`,
      );
    }
  }
  const check = checkSameLatents(outs[0], outs[1], depths);
  const results = depths.flatMap((d) => {
    const per = runs[d].map((x) => x.perStep);
    const gaps = runs[d].map((x) => x.gap);
    const note = `sampleLoop, ${steps} steps of DPM-Solver++ 2M, CFG 4.5 (batch 2), random ` +
      `pixart-${tag} f32 (${layers} layers × ${heads * 72}, ${(latent / 2) ** 2} tokens), ` +
      `${d} in flight; ${rounds} rounds alternating with the other depth; ${check}`;
    return [
      {
        name: `loop_pixart_${tag}_f32_inflight${d}`,
        value: Number(median(per).toPrecision(4)),
        unit: "ms",
        median_ms: Number(median(per).toPrecision(4)),
        min_ms: Number(Math.min(...per).toPrecision(4)),
        note: `${note}; ms per step`,
      },
      {
        name: `loop_pixart_${tag}_f32_inflight${d}_event_loop_gap`,
        value: Number(Math.max(...gaps).toPrecision(4)),
        unit: "ms",
        median_ms: Number(median(gaps).toPrecision(4)),
        min_ms: Number(Math.min(...gaps).toPrecision(4)),
        note: `${note}; the longest time a 10 ms interval timer waited, max over rounds`,
      },
    ];
  });
  cond.release();
  noise.release();
  model.release();
  const file = {
    ...resultsHeader(
      rt.info.description,
      await gitCommit(),
      Deno.env.get("WEBDIT_BENCH_COMMAND") ??
        `deno run -A bench/loop_bench.ts ${Deno.args.join(" ")}`.trim(),
    ),
    results,
    extra: { runs },
  };
  for (const r of results) console.log(`${r.name}: ${r.value} ${r.unit}`);
  if (v.write) {
    const out = await writeResults(deviceSlug(rt.info.description, rt.info.fallback), "loop", file);
    console.error(`wrote ${out.json}`);
  }
  rt.destroy();
}

/**
 * Throws unless both loops' latents are finite and agree to 1e-5 of their RMS; else a note.
 */
function checkSameLatents(a: Float32Array, b: Float32Array, depths: number[]): string {
  const label = `loop_bench: the latents at ${depths.join(" and ")} in flight`;
  const { maxErr: max, rms } = checkWithinRms(label, b, a, 1e-5);
  return `checked: the latents at ${depths.join(" and ")} in flight are finite and agree (max |Δ| ${
    max.toPrecision(2)
  }, RMS ${rms.toPrecision(3)}); ` +
    "the forward is not checked against a reference here";
}

// A plain script: `deno task bench` imports it without running it (one row takes ~10 s).
if (import.meta.main) await main();
