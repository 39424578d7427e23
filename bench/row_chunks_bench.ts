/**
 * What splitting the feed-forward into row chunks costs (runtime/model/row_chunks.ts): one
 * PixArt-α-shaped sampler step (bench/pixart_step.ts: 28 × 1152, 4096 tokens, batch 2 under
 * CFG) on a runtime that binds the whole [8192, 4608] f32 intermediate (151 MB), and on a
 * second runtime of the same adapter capped at 128 MiB (`maxBindingBytes`, the CPU
 * adapter's and WebGPU's default limit), where each block's feed-forward runs as two
 * chunks of one sample each:
 *
 * - `step_pixart_alpha_{f32,f16}`: whole;
 * - `step_pixart_alpha_{f32,f16}_ffn_chunks2`: capped (value2: its time over the whole
 *   step's, same run). f16 splits too: chunks are sized at 4 bytes a value.
 *
 * Before timing, the capped step's latents are compared with the whole step's (the same
 * kernels on fewer rows; max |diff| in the note, ≤ 1e-5 × RMS asserted). On a CPU adapter
 * the shape shrinks to `step_pixart_tiny_*` (2 × 144, 256 tokens) with the cap at half its
 * intermediate.
 *
 *     WEBDIT_BENCH_WRITE=1 deno bench -A --no-check bench/row_chunks_bench.ts
 *                          # → bench/results/<device>/<date>_row_chunks.{json,md}
 *
 * @module
 */
import { createRuntime, type Runtime } from "../runtime/gpu/device.ts";
import { Recorder } from "../runtime/gpu/kernel.ts";
import { readTensor } from "../runtime/gpu/tensor.ts";
import { denseLinears } from "../runtime/model/linear.ts";
import { BenchSuite, deviceSlug } from "./harness.ts";
import { checkWithinRms } from "./sampled_check.ts";
import { ALPHA, inputs, load, recordStep, type Shape, shapeNote, TINY } from "./pixart_step.ts";

const adapter = (Deno.env.get("WEBDIT_ADAPTER") ?? "auto") as "auto" | "gpu" | "cpu";
const whole: Runtime = await createRuntime({ adapter });
const shape: Shape = whole.info.fallback ? TINY : ALPHA;
const D = shape.heads * shape.headDim;
const ffnBytes = 2 * (shape.latent / 2) ** 2 * 4 * D * 4; // [2·T, 4D] f32
const cap = whole.info.fallback ? ffnBytes / 2 : 128 * 2 ** 20;
if (ffnBytes > whole.bindingLimit) throw new Error("this adapter cannot bind the whole step");
const capped: Runtime = await createRuntime({ adapter, maxBindingBytes: cap });

const suite = new BenchSuite({
  what: "row_chunks",
  describe: () =>
    Promise.resolve({
      device: whole.info.description,
      slug: deviceSlug(whole.info.description, whole.info.fallback),
      extra: {
        note: "one sampler step: forward (cached caption K/V) + CFG combine + axpby update; " +
          `feed-forward whole vs in row chunks under a ${cap}-byte binding limit`,
      },
    }),
  teardown: () => {
    whole.destroy();
    capped.destroy();
  },
});

/** The whole step's latents of each dtype (from its row, if it ran), for the capped rows. */
const wholeOut = new Map<string, Float32Array>();
const wholeMs = new Map<string, () => number | undefined>();

async function prepare(r: Runtime, dtype: "f32" | "f16") {
  const model = await load(r, shape, dtype, denseLinears(dtype));
  const { cond, xLatent } = await inputs(r, model, shape, dtype);
  const rec = new Recorder(r);
  const y = recordStep(rec, model, cond, xLatent);
  await rec.submit();
  const out = await readTensor(r, y);
  y.release();
  if (!out.every(Number.isFinite)) throw new Error("non-finite step output");
  const run = async (reps: number) => {
    const rec = new Recorder(r);
    for (let i = 0; i < reps; i++) recordStep(rec, model, cond, xLatent).release();
    await rec.submit();
  };
  const dispose = () => {
    cond.release();
    xLatent.release();
    model.release();
  };
  return { out, run, dispose };
}

for (const dtype of ["f32", "f16"] as const) {
  if (dtype === "f16" && !whole.info.f16) continue;
  const name = `step_pixart_${shape.tag}_${dtype}`;
  suite.add({
    name,
    unit: "ms",
    setup: async () => {
      const p = await prepare(whole, dtype);
      wholeOut.set(dtype, p.out);
      return {
        device: whole.device,
        run: p.run,
        note: `${shapeNote(shape)}; the feed-forward whole`,
        dispose: p.dispose,
      };
    },
  });
  wholeMs.set(dtype, () => suite.lastResults.find((r) => r.name === name)?.median_ms);
  suite.add({
    name: `${name}_ffn_chunks2`,
    unit: "ms",
    unit2: "× whole",
    setup: async () => {
      const p = await prepare(capped, dtype);
      let ref = wholeOut.get(dtype);
      if (!ref) {
        const w = await prepare(whole, dtype); // its row was filtered out
        ref = w.out;
        w.dispose();
      }
      const { maxErr: diff, rms } = checkWithinRms(
        `${dtype}: the chunked step vs the whole`,
        p.out,
        ref,
        1e-5,
      );
      return {
        device: capped.device,
        run: p.run,
        value2: (ms) => {
          const w = wholeMs.get(dtype)?.();
          return w && Number.isFinite(w) ? ms / w : undefined;
        },
        note: `${shapeNote(shape)}; binding limit ${cap} bytes: each block's feed-forward ` +
          `in 2 chunks of one sample; latents vs whole: max |diff| ${diff.toExponential(2)} ` +
          `(RMS ${rms.toFixed(3)})`,
        dispose: p.dispose,
      };
    },
  });
}

suite.register();
