import { assert, assertEquals, assertRejects } from "../../tests/assert.ts";
import { type TensorToWrite, writeSafetensors } from "../io/safetensors.ts";
import { UsageError } from "./common.ts";
import {
  readCalibrationEmbeds,
  readCaptionEmbeds,
  readGenerateInputs,
  readLatents,
} from "./embeds.ts";

/** An F32 tensor of `shape` filled with `fill`. */
function f32(shape: number[], fill = 0.5): TensorToWrite {
  const n = shape.reduce((a, b) => a * b, 1);
  return { dtype: "F32", shape, data: new Float32Array(n).fill(fill) };
}

/** Writes `tensors` to a file in a fresh folder; calls `fn` with its path. */
async function withFile(
  tensors: Record<string, TensorToWrite>,
  fn: (path: string) => Promise<void>,
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "webdit_embeds_" });
  try {
    const path = `${dir}/in.safetensors`;
    await writeSafetensors(path, tensors);
    await fn(path);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs `fn` with console.error captured; returns what it printed. */
async function captureStderr(fn: () => Promise<unknown>): Promise<string> {
  const lines: string[] = [];
  const orig = console.error;
  console.error = (...a: unknown[]) => lines.push(a.join(" "));
  try {
    await fn();
  } finally {
    console.error = orig;
  }
  return lines.join("\n");
}

Deno.test("readCaptionEmbeds: a zero-size dimension is a usage error naming the file and tensor", async () => {
  for (const shape of [[0, 128], [8, 0], [0, 8, 128], [1, 8, 0]]) {
    await withFile({ prompt_embeds: f32(shape) }, async (path) => {
      await assertRejects(
        () => readCaptionEmbeds(path),
        UsageError,
        `${path}: prompt_embeds [${shape.join(", ")}] is empty`,
      );
    });
  }
});

Deno.test('readCaptionEmbeds: "mask" is prompt_attention_mask\'s alias; not both', async () => {
  const mask = { dtype: "I64" as const, shape: [1, 4], data: new BigInt64Array([1n, 1n, 0n, 0n]) };
  await withFile({ prompt_embeds: f32([1, 4, 8]), mask }, async (path) => {
    const e = await readCaptionEmbeds(path);
    assertEquals([...e.mask!], [1, 1, 0, 0]);
    assertEquals(e.shape, [1, 4, 8]);
  });
  await withFile(
    { prompt_embeds: f32([1, 4, 8]), mask, prompt_attention_mask: mask },
    async (path) => {
      await assertRejects(
        () => readCaptionEmbeds(path),
        UsageError,
        'give "prompt_attention_mask" or its alias "mask", not both',
      );
    },
  );
});

Deno.test("readCaptionEmbeds: tensors it does not read are named in a warning", async () => {
  await withFile({ prompt_embeds: f32([1, 4, 8]), attention_mask: f32([1, 4], 1) }, async (p) => {
    const err = await captureStderr(() => readCaptionEmbeds(p));
    assert(err.includes(`warning: ${p}: ignoring tensor "attention_mask"`), err);
  });
  // A misnamed prompt_embeds: the missing tensor is the error, without a warning first.
  await withFile({ embeds: f32([1, 4, 8]) }, async (p) => {
    const err = await captureStderr(() =>
      assertRejects(() => readCaptionEmbeds(p), UsageError, 'missing tensor "prompt_embeds"')
    );
    assertEquals(err, "");
  });
  await withFile({ prompt_embeds: f32([1, 4, 8]), mask: f32([1, 4], 1) }, async (p) => {
    assertEquals(await captureStderr(() => readCaptionEmbeds(p)), "");
  });
  // --calib-embeds reads "latents" from the same file: no warning for them.
  await withFile(
    { prompt_embeds: f32([2, 4, 8]), latents: f32([2, 3, 4, 4]) },
    async (p) => {
      let r: Awaited<ReturnType<typeof readCalibrationEmbeds>> | undefined;
      assertEquals(await captureStderr(async () => r = await readCalibrationEmbeds(p)), "");
      assertEquals(r!.latents!.shape, [2, 3, 4, 4]);
    },
  );
  // A negative mask without negative embeddings would be dropped: refused.
  await withFile(
    { prompt_embeds: f32([1, 4, 8]), negative_prompt_attention_mask: f32([1, 4], 1) },
    async (p) => {
      await assertRejects(() => readCaptionEmbeds(p), UsageError, "needs negative_prompt_embeds");
    },
  );
});

Deno.test("readCaptionEmbeds: NaN in prompt_embeds is refused", async () => {
  const t = f32([1, 4, 8]);
  (t.data as Float32Array)[5] = NaN;
  await withFile({ prompt_embeds: t }, async (p) => {
    await assertRejects(() => readCaptionEmbeds(p), UsageError, "first at flat index 5");
  });
});

Deno.test("readLatents: NaN/Inf, integer dtypes and empty shapes are refused naming the file", async () => {
  const bad = f32([1, 3, 4, 4]);
  (bad.data as Float32Array)[7] = NaN;
  (bad.data as Float32Array)[9] = -Infinity;
  await withFile({ latents: bad }, async (p) => {
    await assertRejects(
      () => readLatents(p),
      UsageError,
      `${p}: latents holds 2 non-finite values (NaN or ±Inf; the first at flat index 7 of 48)`,
    );
  });
  const i64 = { dtype: "I64" as const, shape: [1, 3, 2, 2], data: new BigInt64Array(12) };
  await withFile({ latents: i64 }, async (p) => {
    await assertRejects(() => readLatents(p), UsageError, `${p}: latents must be a float tensor`);
  });
  await withFile({ latents: f32([0, 3, 4, 4]) }, async (p) => {
    await assertRejects(() => readLatents(p), UsageError, "latents [0, 3, 4, 4] is empty");
  });
  await withFile({ latents: f32([1, 3, 4, 4]) }, async (p) => {
    const l = await readLatents(p);
    assertEquals(l.shape, [1, 3, 4, 4]);
    assertEquals(l.data.length, 48);
  });
});

Deno.test("readGenerateInputs: one file given to several flags warns only of what none reads", async () => {
  const record = {
    prompt_embeds: f32([2, 4, 8]),
    pooled_prompt_embeds: f32([2, 6], 0.25),
    latents: f32([2, 3, 4, 4]),
  };
  await withFile(record, async (p) => {
    let r: Awaited<ReturnType<typeof readGenerateInputs>> | undefined;
    const all = {
      captionEmbeds: p,
      pooledEmbeds: p,
      latents: p.replace(/\/in\.safetensors$/, "/./in.safetensors"),
    };
    assertEquals(await captureStderr(async () => r = await readGenerateInputs(all)), "");
    assertEquals([r!.captionEmbeds!.pooled!.length, r!.latents!.shape[0]], [12, 2]);
    // --caption-embeds and --pooled-embeds the same file, without --latents: one warning,
    // naming only its latents.
    const err = await captureStderr(() =>
      readGenerateInputs({ captionEmbeds: p, pooledEmbeds: p })
    );
    assertEquals(
      err,
      `warning: ${p}: ignoring tensor "latents" (read: prompt_embeds, pooled_prompt_embeds)`,
    );
  });
  await withFile({ prompt_embeds: f32([1, 4, 8]) }, async (p) => {
    await assertRejects(
      () => readGenerateInputs({ captionEmbeds: p, pooledEmbeds: p }),
      UsageError,
      `${p}: missing tensor "pooled_prompt_embeds"`,
    );
  });
  // A separate pooled file's other tensors are still named.
  await withFile({ pooled_prompt_embeds: f32([1, 6]), extra: f32([1]) }, async (pooled) => {
    await withFile({ prompt_embeds: f32([1, 4, 8]) }, async (ce) => {
      const err = await captureStderr(() =>
        readGenerateInputs({ captionEmbeds: ce, pooledEmbeds: pooled })
      );
      assert(err.includes(`${pooled}: ignoring tensor "extra"`), err);
    });
  });
  await assertRejects(
    () => readGenerateInputs({ pooledEmbeds: "x.safetensors" }),
    UsageError,
    "--pooled-embeds needs --caption-embeds",
  );
});
