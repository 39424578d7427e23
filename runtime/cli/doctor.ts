/**
 * `deno task doctor [--json] [--adapter A] [--no-selfcheck]`: the adapter, fallback or
 * not, features and limits, and a quick check of every kernel against its CPU reference.
 *
 * @module
 */
import { ADAPTER_CHOICES, type AdapterChoice, createRuntime } from "../gpu/device.ts";
import { runSelfChecks, type SelfCheckResult } from "../ops/selfcheck.ts";
import { choiceOption, emitJson, info, parseCli } from "./common.ts";

/** Usage text of doctor. */
export const DOCTOR_USAGE = `deno task doctor [--json] [--adapter auto|gpu|cpu] [--no-selfcheck]
  Prints the WebGPU adapter, its features and limits, and checks each kernel
  against its CPU reference on small shapes.`;

/** Runs doctor; returns the exit code. */
export async function doctor(args: string[]): Promise<number> {
  const { values } = parseCli(args, {
    json: { type: "boolean" },
    adapter: { type: "string" },
    "no-selfcheck": { type: "boolean" },
    help: { type: "boolean", short: "h" },
  });
  if (values.help) {
    info(DOCTOR_USAGE);
    return 0;
  }
  const adapter = choiceOption<AdapterChoice>("adapter", values.adapter, ADAPTER_CHOICES, "auto");
  const rt = await createRuntime({ adapter });
  try {
    const i = rt.info;
    info(`adapter:    ${i.description}${i.fallback ? " (fallback / CPU)" : ""}`);
    info(`vendor:     ${i.vendor || "-"}  architecture: ${i.architecture || "-"}`);
    info(`shader-f16: ${i.f16}  timestamp-query: ${i.timestamps}  dot4I8Packed: ${i.packedDot}`);
    info(`features:   ${i.adapterFeatures.join(", ")}`);
    info(`wgsl:       ${i.wgslFeatures.join(", ")}`);
    info(`limits:`);
    for (const [k, v] of Object.entries(i.limits)) info(`  ${k.padEnd(36)} ${v}`);
    let checks: SelfCheckResult[] = [];
    if (!values["no-selfcheck"]) {
      checks = await runSelfChecks(rt);
      info(`kernel self-check:`);
      const width = Math.max(32, ...checks.map((c) => c.name.length));
      for (const c of checks) {
        info(
          `  ${c.ok ? "ok  " : "FAIL"} ${c.name.padEnd(width)} max err ${
            c.maxError.toExponential(2)
          } (tol ${c.tolerance.toExponential(1)})${c.note ? `  ${c.note}` : ""}`,
        );
      }
    }
    const ok = checks.every((c) => c.ok);
    if (values.json) emitJson({ ...i, selfcheck: checks, ok });
    return ok ? 0 : 1;
  } finally {
    rt.destroy();
  }
}
