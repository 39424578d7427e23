/**
 * `deno task inspect FILE [--json] [--no-values] [--fail-nonfinite]`: validates a
 * checkpoint fully (header, layout, every byte read, NaN/Inf counted) and lists its
 * tensors and metadata. A bad file gives exit 1 and one line
 * `error: <file>: <field or tensor>: <what>`; a usage mistake exit 2.
 *
 * @module
 */
import { CheckpointError } from "../errors.ts";
import {
  openCheckpoint,
  ShardedSafetensors,
  type TensorReport,
  validateCheckpoint,
} from "../io/safetensors_index.ts";
import { emitJson, info, parseCli, UsageError } from "./common.ts";

/** Usage text of inspect. */
export const INSPECT_USAGE = `deno task inspect FILE [--json] [--no-values] [--fail-nonfinite]
  FILE: a .safetensors file, a .safetensors.index.json (sharded), or a diffusers
  model folder. Validates the header and layout, reads every tensor, counts NaN/Inf
  in float tensors (reported; --fail-nonfinite makes them an error; --no-values skips
  reading the data), and lists tensors and metadata (JSON-valued metadata such as
  webdit.plan is pretty-printed).
  Exit 0: valid; 1: invalid, with one line "error: <file>: <field>: <what>"; 2: usage.`;

/** Escapes control characters so a message stays one line whatever the tensor names hold. */
function oneLine(s: string): string {
  // deno-lint-ignore no-control-regex
  return s.replace(/[\u0000-\u001f\u007f\u2028\u2029]/g, (c) => JSON.stringify(c).slice(1, -1));
}

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[u]}`;
}

/** Parses a metadata value that holds JSON (an object or array), else undefined. */
function jsonValue(s: string): unknown {
  const t = s.trimStart();
  if (!t.startsWith("{") && !t.startsWith("[")) return undefined;
  try {
    return JSON.parse(s);
  } catch {
    return undefined;
  }
}

/** Runs inspect; returns the exit code. */
export async function inspect(args: string[]): Promise<number> {
  const { values, positionals } = parseCli(args, {
    json: { type: "boolean" },
    "no-values": { type: "boolean" },
    "fail-nonfinite": { type: "boolean" },
    help: { type: "boolean", short: "h" },
  }, true);
  if (values.help) {
    info(INSPECT_USAGE);
    return 0;
  }
  if (positionals.length !== 1) {
    throw new UsageError(
      positionals.length ? `expected one FILE, got ${positionals.length}` : "missing FILE",
    );
  }
  const file = positionals[0];
  let reports: TensorReport[];
  let metadata: Record<string, string>;
  let shards: string[] = [];
  try {
    const src = await openCheckpoint(file);
    try {
      if (src instanceof ShardedSafetensors) shards = [...src.shards.keys()];
      metadata = { ...src.metadata };
      reports = await validateCheckpoint(src, {
        values: !values["no-values"],
        failOnNonFinite: values["fail-nonfinite"] ?? false,
      });
    } finally {
      src.close();
    }
  } catch (e) {
    // Every failure is one line: a CheckpointError already reads "<file>: <field>: <what>".
    const msg = oneLine(
      e instanceof CheckpointError
        ? e.message
        : `${file}: internal: ${e instanceof Error ? `${e.name}: ${e.message}` : String(e)}`,
    );
    console.error(`error: ${msg}`);
    if (values.json) emitJson({ file, ok: false, tensors: [], metadata: {}, error: msg });
    return 1;
  }

  const total = reports.reduce((a, r) => a + r.bytes, 0);
  const byDtype = new Map<string, number>();
  for (const r of reports) byDtype.set(r.dtype, (byDtype.get(r.dtype) ?? 0) + 1);
  const nonFinite = reports.filter((r) => (r.nan ?? 0) + (r.inf ?? 0) > 0);
  info(`file:     ${oneLine(file)}${shards.length ? ` (sharded: ${shards.length} shards)` : ""}`);
  info(
    `tensors:  ${reports.length}, ${fmtBytes(total)} (${
      [...byDtype].map(([d, n]) => `${d} ×${n}`).join(", ") || "none"
    })`,
  );
  const keys = Object.keys(metadata);
  info(keys.length ? "metadata:" : "metadata: none");
  for (const k of keys) {
    const v = jsonValue(metadata[k]);
    if (v === undefined) info(`  ${oneLine(k)}: ${oneLine(metadata[k])}`);
    else info(`  ${oneLine(k)}:\n${JSON.stringify(v, null, 2).replace(/^/gm, "    ")}`);
  }
  if (reports.length) {
    const w = Math.min(60, Math.max(...reports.map((r) => oneLine(r.name).length)));
    info(
      `${"name".padEnd(w)}  ${"dtype".padEnd(11)} ${"shape".padEnd(20)} ${"bytes".padStart(12)}`,
    );
    for (const r of reports) {
      const bad = (r.nan ?? 0) + (r.inf ?? 0) > 0 ? `  ! ${r.nan} NaN, ${r.inf} Inf` : "";
      const shard = shards.length ? `  [${r.file.split(/[\\/]/).pop()}]` : "";
      info(
        `${oneLine(r.name).padEnd(w)}  ${r.dtype.padEnd(11)} ${
          `[${r.shape.join(", ")}]`.padEnd(20)
        } ${String(r.bytes).padStart(12)}${bad}${shard}`,
      );
    }
  }
  if (nonFinite.length) info(`warning: ${nonFinite.length} tensor(s) hold NaN/Inf values`);
  info(values["no-values"] ? "ok (header and layout; data not read)" : "ok");
  if (values.json) {
    const plan = metadata["webdit.plan"] === undefined
      ? undefined
      : jsonValue(metadata["webdit.plan"]);
    emitJson({
      file,
      ok: true,
      format: shards.length ? "sharded" : "safetensors",
      ...(shards.length ? { shards } : {}),
      totalBytes: total,
      tensors: reports.map((r) => ({
        name: r.name,
        dtype: r.dtype,
        shape: r.shape,
        bytes: r.bytes,
        ...(shards.length ? { file: r.file } : {}),
        ...(r.nan !== undefined ? { nan: r.nan, inf: r.inf } : {}),
      })),
      metadata,
      ...(plan !== undefined ? { plan } : {}),
      nonFinite: nonFinite.length,
    });
  }
  return 0;
}
