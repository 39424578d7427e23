import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/assert.ts";
import { UsageError } from "./common.ts";
import { checkModelFolder, checkPluginArgs } from "./quantize_plugins.ts";
import { runCli } from "../../tests/cli_helpers.ts";

const FIXTURE = new URL("../../tests/fixtures/pixart_pixel", import.meta.url).pathname;

Deno.test("checkPluginArgs: unknown plugins and bits are usage errors naming the flag and the choices", () => {
  const base = { quantizer: "uniform", wbits: "4" };
  assertEquals(checkPluginArgs(base), {
    quantizer: "uniform",
    wbits: 4,
    rotation: "none",
    attention: "dense",
  });
  const cases: [Record<string, string>, string][] = [
    [{ quantizer: "foo" }, '--quantizer must be one of uniform, tlq, kmeans, got "foo"'],
    [{ wbits: "5" }, "--wbits must be one of 3, 4, 8 for --quantizer uniform, got 5"],
    [{ quantizer: "kmeans", wbits: "8" }, "--wbits must be one of 3, 4 for --quantizer kmeans"],
    [{ rotation: "foo" }, '--rotation must be one of none, hadamard, outlier, adaptive, got "foo"'],
    [{ attention: "foo" }, '--attention must be one of dense, paro, got "foo"'],
    [{ density: "0.5" }, "--density applies to --attention paro, not dense"],
    [{ attention: "dense", "attn-bits": "4" }, "--attn-bits applies to --attention paro"],
  ];
  for (const [extra, msg] of cases) {
    assertThrows(() => checkPluginArgs({ ...base, ...extra }), UsageError, msg);
  }
  const paro = checkPluginArgs({ ...base, attention: "paro", density: "0.5", "attn-bits": "8" });
  assertEquals(paro.attention, "paro");
});

Deno.test("checkModelFolder: a file or a missing path is a usage error naming --model", async () => {
  await checkModelFolder(undefined);
  await checkModelFolder(FIXTURE);
  await assertRejects(
    () => checkModelFolder(`${FIXTURE}/README.md`),
    UsageError,
    "--model must be a model folder (diffusers layout",
  );
  await assertRejects(() => checkModelFolder("/nonexistent/m"), UsageError, "does not exist");
});

Deno.test("quantize: a bad --quantizer, --model file or --out folder exits 2 before quantizing", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_qplug_" });
  try {
    const run = (...args: string[]) =>
      runCli(["quantize", "--wbits", "4", "--abits", "8", ...args]);
    const out = ["--out", `${dir}/q.safetensors`];
    const cases: [string[], string][] = [
      [["--model", FIXTURE, "--quantizer", "foo", ...out], "--quantizer must be one of"],
      [
        ["--model", `${FIXTURE}/README.md`, "--quantizer", "tlq", ...out],
        "--model must be a model folder (diffusers layout",
      ],
      [
        ["--model", FIXTURE, "--quantizer", "tlq", "--out", `${dir}/nodir/q.safetensors`],
        `--out ${dir}/nodir/q.safetensors: the folder ${dir}/nodir does not exist`,
      ],
    ];
    for (const [args, msg] of cases) {
      const r = await run(...args);
      assertEquals(r.code, 2, r.stderr);
      assert(r.stderr.includes(msg) && !r.stderr.includes("quantizing"), r.stderr);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
