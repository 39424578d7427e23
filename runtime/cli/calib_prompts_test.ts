import { assertEquals, assertRejects } from "../../tests/assert.ts";
import { CALIBRATION_PROMPTS } from "../quant/calibrate.ts";
import { CAPTION_CALIBRATION_PROMPTS } from "../quant/calibration_run.ts";
import { calibrationPrompts, MORE_CALIBRATION_PROMPTS_FILE } from "./calib_prompts.ts";
import { UsageError } from "./common.ts";

Deno.test("calibrationPrompts: none asked → undefined; built in, past 10 the longer list, a file", async () => {
  assertEquals(await calibrationPrompts(undefined, undefined), undefined);
  assertEquals(await calibrationPrompts(undefined, 3), CALIBRATION_PROMPTS.slice(0, 3));
  // Past the 10 built in: the bundled longer list, which starts with them, no prompt twice.
  const more = (await calibrationPrompts(undefined, 40))!;
  assertEquals(more.length, 40);
  assertEquals(more.slice(0, 10), [...CALIBRATION_PROMPTS]);
  assertEquals(new Set(more).size, 40);
  const all = (await calibrationPrompts(MORE_CALIBRATION_PROMPTS_FILE, undefined))!;
  assertEquals(all.length, 320);
  // None is an evaluation prompt.
  const evalList = await Deno.readTextFile(
    new URL("../../bench/prompts/emoji_fidelity.txt", import.meta.url),
  );
  const evals = new Set(evalList.split("\n").map((l) => l.trim()));
  assertEquals(all.filter((p) => evals.has(p)), []);
  await assertRejects(() => calibrationPrompts(undefined, 321), UsageError, "has 320 prompts");
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/p.txt`, "# mine\nred apple\n\n  rocket  \n");
    assertEquals(await calibrationPrompts(`${dir}/p.txt`, undefined), ["red apple", "rocket"]);
    assertEquals(await calibrationPrompts(`${dir}/p.txt`, 1), ["red apple"]);
    await assertRejects(() => calibrationPrompts(`${dir}/p.txt`, 3), UsageError, "has 2 prompts");
    await assertRejects(() => calibrationPrompts(`${dir}/none.txt`, 1), UsageError, "no such file");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("calibrationPrompts: through a real checkpoint's text encoders, the built-in captions", async () => {
  assertEquals(await calibrationPrompts(undefined, undefined, true), undefined);
  assertEquals(
    await calibrationPrompts(undefined, 3, true),
    CAPTION_CALIBRATION_PROMPTS.slice(0, 3),
  );
  assertEquals(new Set(CAPTION_CALIBRATION_PROMPTS).size, 16); // METHODS.md: ≥ 8, across categories
  await assertRejects(() => calibrationPrompts(undefined, 17, true), UsageError, "16 captions");
});
