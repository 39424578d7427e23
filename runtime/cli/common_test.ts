import { assertEquals, assertRejects, assertThrows } from "../../tests/assert.ts";
import {
  checkDistinctOutputs,
  checkOutputFolder,
  checkWritable,
  joinNegativeValues,
  parseCli,
  UsageError,
} from "./common.ts";

const OPTS = {
  seed: { type: "string" },
  force: { type: "boolean" },
  model: { type: "string", short: "m" },
} as const;

Deno.test("joinNegativeValues: a negative number after a value option is its value", () => {
  assertEquals(joinNegativeValues(["--seed", "-1", "--force"], OPTS), ["--seed=-1", "--force"]);
  assertEquals(joinNegativeValues(["--seed", "-0.5e3"], OPTS), ["--seed=-0.5e3"]);
  assertEquals(joinNegativeValues(["-m", "-.5"], OPTS), ["--model=-.5"]);
  assertEquals(parseCli(["-m", "-.5"], OPTS).values.model, "-.5");
  // Not after a flag, not a word, not past "--".
  assertEquals(joinNegativeValues(["--force", "-1"], OPTS), ["--force", "-1"]);
  assertEquals(joinNegativeValues(["--seed", "-x"], OPTS), ["--seed", "-x"]);
  assertEquals(joinNegativeValues(["--", "--seed", "-1"], OPTS), ["--", "--seed", "-1"]);
  assertEquals(parseCli(["--seed", "-1"], OPTS).values.seed, "-1");
});

Deno.test("checkWritable: the folder must exist; an existing file needs force; a folder is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_common_" });
  try {
    await checkWritable(`${dir}/new.png`, false, "--out");
    await assertRejects(
      () => checkWritable(`${dir}/nodir/x.png`, true, "--out"),
      UsageError,
      `--out ${dir}/nodir/x.png: the folder ${dir}/nodir does not exist`,
    );
    await Deno.writeTextFile(`${dir}/f`, "x");
    await assertRejects(() => checkWritable(`${dir}/f`, false, "--grid"), UsageError, "--force");
    await checkWritable(`${dir}/f`, true, "--grid");
    await assertRejects(
      () => checkWritable(`${dir}/f/x.png`, true, "--out"),
      UsageError,
      `${dir}/f is not a folder`,
    );
    await assertRejects(() => checkWritable(dir, true, "--out"), UsageError, "is a folder");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkOutputFolder: absent parts are fine; a file on the way is not", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_common_" });
  try {
    await checkOutputFolder(`${dir}/a/b/c`, "--out-dir");
    await Deno.writeTextFile(`${dir}/f`, "x");
    await assertRejects(
      () => checkOutputFolder(`${dir}/f/b`, "--out-dir"),
      UsageError,
      `--out-dir ${dir}/f/b: ${dir}/f is not a folder`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("checkDistinctOutputs: two outputs on one file (paths resolved) are refused", () => {
  checkDistinctOutputs([["--out", "a.png"], ["--save-latents", "a.safetensors"]]);
  assertThrows(
    () => checkDistinctOutputs([["--out", "a.png"], ["--save-latents", "./a.png"]]),
    UsageError,
    "--out and --save-latents both name ./a.png",
  );
});
