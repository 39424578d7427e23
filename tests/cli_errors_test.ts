/**
 * The command line's errors across commands: file-system and network errors as one
 * `error:` line, eval's and serve's checks before any work, and eval's --force.
 */
import { assert, assertEquals } from "./assert.ts";
import { outDirImagePaths } from "../runtime/eval/eval_images.ts";
import { type CliRun, runCli } from "./cli_helpers.ts";

const FIXTURE = new URL("./fixtures/pixart_pixel", import.meta.url).pathname;

/** Runs `deno run <perms> cli.ts …args`. */
function cli(args: string[], perms = ["-A"]): Promise<CliRun> {
  return runCli(args, { perms });
}

/** Asserts exit `code` with `msg` in one `error:` line, no stack trace, and no `before` text. */
function assertError(r: CliRun, code: number, msg: string, before?: string): void {
  assertEquals(r.code, code, r.stderr);
  const lines = r.stderr.trim().split("\n");
  assert(lines.at(-1)!.startsWith("error: ") && lines.at(-1)!.includes(msg), r.stderr);
  assert(!/^\s+at /m.test(r.stderr), `stack trace: ${r.stderr}`);
  if (before) assert(!r.stderr.includes(before), `${before} in ${r.stderr}`);
}

Deno.test("cli: a file-system error is one error line, exit 1, no stack trace", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_err_" });
  try {
    // No write permission: the artifact's write fails after quantizing (Deno.errors.NotCapable).
    const r = await cli(
      [
        "quantize",
        ...["--model", FIXTURE, "--quantizer", "uniform", "--wbits", "4", "--abits", "16"],
        ...["--out", `${dir}/q.safetensors`],
      ],
      ["--allow-read", "--allow-env"],
    );
    assertError(r, 1, "Requires write access");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve: a busy --port or an unknown --host fails before loading a model", async () => {
  const busy = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  try {
    const port = String((busy.addr as Deno.NetAddr).port);
    const r = await cli(["serve", "--model", FIXTURE, "--port", port, "--no-warmup"]);
    assertError(r, 1, `cannot listen on --host 127.0.0.1 --port ${port}`, "loaded");
  } finally {
    busy.close();
  }
  const h = await cli(["serve", "--model", FIXTURE, "--host", "999.1.1.1", "--no-warmup"]);
  assertError(h, 2, "--host 999.1.1.1: failed to lookup address information", "loaded");
});

Deno.test("serve: a --sampler a served model cannot run is a usage error naming it", async () => {
  const r = await cli(["serve", "--model", FIXTURE, "--sampler", "flow-euler", "--port", "0"]);
  assertError(r, 2, "--sampler flow-euler: model ", "listening");
  assert(r.stderr.includes("samples with dpm++2m or ddim"), r.stderr);
  assert(!r.stderr.includes("warm"), `warmed up first: ${r.stderr}`);
});

Deno.test("serve: --text-encoder / --vae without an artifact served is a usage error", async () => {
  const r = await cli(["serve", "--model", FIXTURE, "--text-encoder", FIXTURE, "--port", "0"]);
  assertError(r, 2, "--text-encoder applies to the quantized artifacts served", "listening");
  const bad = await cli(["serve", "--model", FIXTURE, "--text-encoder-dtype", "f8", "--port", "0"]);
  assertError(bad, 2, "--text-encoder-dtype", "listening");
});

Deno.test("eval: bad inputs and outputs are usage errors before sampling", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_eval_use_" });
  try {
    const prompts = `${dir}/p.txt`;
    await Deno.writeTextFile(prompts, "red apple\n");
    await Deno.writeTextFile(`${dir}/old.png`, "mine");
    await Deno.mkdir(`${dir}/od/model`, { recursive: true });
    const [img] = outDirImagePaths(`${dir}/od`, ["red apple"], [0], false);
    await Deno.writeTextFile(img, "mine");
    const base = ["eval", "--model", FIXTURE, "--prompts", prompts, "--steps", "1"];
    const cases: [string[], string][] = [
      [["--grid", `${dir}/nodir/g.png`], `--grid ${dir}/nodir/g.png: the folder ${dir}/nodir`],
      [["--prompts", dir], `--prompts ${dir} is not a file`],
      [["--grid", `${dir}/old.png`], "pass --force to overwrite it or choose another --grid"],
      [["--out-dir", `${dir}/od`], `${img} exists; pass --force`],
      [["--out-dir", `${dir}/old.png/x`], `${dir}/old.png is not a folder`],
      [["--reference", `${dir}/nope`], `--reference ${dir}/nope does not exist`],
      [["--fidelity", "on", "--dataset", `${dir}/nope`], `--dataset ${dir}/nope is not a folder`],
    ];
    for (const [args, msg] of cases) assertError(await cli([...base, ...args]), 2, msg, "model [");
    assertEquals(await Deno.readTextFile(`${dir}/old.png`), "mine");
    assertEquals(await Deno.readTextFile(img), "mine");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("eval --out-dir/--grid: writes the listed files; again only with --force", async () => {
  const dir = await Deno.makeTempDir({ prefix: "webdit_cli_eval_force_" });
  try {
    const prompts = `${dir}/p.txt`;
    const both = ["red apple", "happy face with smiling eyes", "red apple"]; // a repeat: own files
    await Deno.writeTextFile(prompts, both.join("\n"));
    const args = [
      ...["eval", "--model", FIXTURE, "--prompts", prompts, "--steps", "1", "--seeds", "2"],
      ...["--fidelity", "off", "--out-dir", `${dir}/od`, "--grid", `${dir}/g.png`, "--json"],
    ];
    const r = await cli(args);
    assertEquals(r.code, 0, r.stderr);
    const listed = outDirImagePaths(`${dir}/od`, both, [0, 1], false);
    const written = (await Array.fromAsync(Deno.readDir(`${dir}/od/model`)))
      .map((e) => `${dir}/od/model/${e.name}`);
    assertEquals(written.sort(), [...listed].sort());
    await Deno.stat(`${dir}/g.png`);
    assertError(await cli(args), 2, "pass --force to overwrite it or choose another --grid");
    const forced = await cli([...args, "--force"]);
    assertEquals(forced.code, 0, forced.stderr);
    assertEquals(JSON.parse(forced.stdout.trim().split("\n").at(-1)!).images, 6);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("deno.json: every task that runs cli.ts names one of its commands", async () => {
  const tasks = JSON.parse(await Deno.readTextFile(new URL("../deno.json", import.meta.url)))
    .tasks as Record<string, string>;
  const commands = Object.entries(tasks).flatMap(([task, line]) => {
    const m = /\bcli\.ts (\S+)/.exec(line);
    return m ? [[task, m[1]]] : [];
  });
  assert(commands.length >= 6, JSON.stringify(commands));
  for (const [task, command] of commands) {
    const r = await cli([command, "--help"]);
    assertEquals(r.code, 0, `deno task ${task}: ${r.stderr}`);
  }
});
