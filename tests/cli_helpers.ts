/**
 * Running the command line from tests: `deno run … cli.ts …args` in a child process.
 *
 * @module
 */

/** The repository's cli.ts. */
export const CLI: string = new URL("../cli.ts", import.meta.url).pathname;

/**
 * `deno run` and the flags the child processes of tests get: those of WEBDIT_DENO_FLAGS
 * (space-separated), e.g. `--node-modules-dir=manual` where node_modules is packed and the
 * npm registry is out of reach (the GPU machine). A child does not inherit the test
 * runner's own flags.
 */
export function denoRun(): string[] {
  const extra = Deno.env.get("WEBDIT_DENO_FLAGS")?.trim();
  return ["run", ...(extra ? extra.split(/\s+/) : [])];
}

/** What one run of the command line printed and returned. */
export interface CliRun {
  /** Exit code. */
  code: number;
  /** Standard output. */
  stdout: string;
  /** Standard error. */
  stderr: string;
}

/**
 * Runs `deno run <perms> cli.ts …args` without colours (XDG_RUNTIME_DIR set, as WebGPU on
 * Linux wants), killed after `timeoutMs` so a hang fails the test instead of stalling it.
 */
export async function runCli(
  args: readonly string[],
  o: { perms?: readonly string[]; timeoutMs?: number } = {},
): Promise<CliRun> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [...denoRun(), ...(o.perms ?? ["-A"]), CLI, ...args],
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: Deno.env.get("XDG_RUNTIME_DIR") ?? "/tmp" },
    signal: AbortSignal.timeout(o.timeoutMs ?? 120_000),
  }).output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
