/**
 * The webdit command line: `deno task <command> …` (see the README).
 *
 * Every command prints human text to stderr; with --json the last line of stdout is
 * one JSON object with the results.
 *
 * @module
 */
import { UsageError } from "./runtime/cli/common.ts";
import { WebditError } from "./runtime/errors.ts";

type Command = (args: string[]) => Promise<number>;

const COMMANDS: Record<string, { help: string; load: () => Promise<Command> }> = {
  generate: {
    help: "generate an image from a prompt (or caption embeddings)",
    load: async () => (await import("./runtime/cli/generate.ts")).generate,
  },
  doctor: {
    help: "print the adapter, features and limits; self-check the kernels",
    load: async () => (await import("./runtime/cli/doctor.ts")).doctor,
  },
  quantize: {
    help: "quantize a model's linear layers (uniform / TLQ) into one artifact file",
    load: async () => (await import("./runtime/cli/quantize.ts")).quantize,
  },
  inspect: {
    help: "validate a safetensors checkpoint fully; list tensors, dtypes, shapes, metadata/plan",
    load: async () => (await import("./runtime/cli/inspect.ts")).inspect,
  },
  eval: {
    help: "prompt fidelity of a model; PSNR/SSIM/cosine against a reference model",
    load: async () => (await import("./runtime/cli/eval.ts")).evalCommand,
  },
  serve: {
    help: "serve the HTTP API (OpenAI-compatible images, streaming) and the web playground",
    load: async () => (await import("./runtime/cli/serve.ts")).serve,
  },
};

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([k, v]) => `  ${k.padEnd(10)} ${v.help}`);
  return `webdit — diffusion transformers on WebGPU\n\nusage: deno task <command> [options]   (--help on any command)\n\n${
    lines.join("\n")
  }`;
}

/**
 * Errors shown as one `error: …` line (exit 1) rather than a stack trace: webdit's own,
 * bad values (TypeError, RangeError), the file system's and the network's (Deno.errors:
 * NotFound, PermissionDenied, IsADirectory, AddrInUse…) and failed address look-ups.
 */
function isReportable(e: unknown): e is Error {
  if (e instanceof WebditError || e instanceof TypeError || e instanceof RangeError) return true;
  if (Object.values(Deno.errors).some((C) => e instanceof C)) return true;
  return e instanceof Error && e.message.startsWith("failed to lookup address information");
}

/** Runs the command line and returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const [name, ...rest] = args;
  if (!name || name === "help" || name === "--help" || name === "-h") {
    console.error(usage());
    return name ? 0 : 2;
  }
  const cmd = COMMANDS[name];
  if (!cmd) {
    console.error(`Unknown command "${name}".\n\n${usage()}`);
    return 2;
  }
  try {
    return await (await cmd.load())(rest);
  } catch (e) {
    if (e instanceof UsageError) {
      console.error(`error: ${e.message} (see deno task ${name} --help)`);
      return 2;
    }
    if (isReportable(e)) {
      console.error(`error: ${e.message}`);
      return 1;
    }
    throw e;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
